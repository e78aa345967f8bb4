import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { writeZip } from '../helpers/zip-writer.js';
import { dripExport, feedsOver, recordingLog, wholeExport } from '../helpers/advisory-rig.js';

/**
 * Guarantee: stopping the feeds (a server's shutdown, SIGTERM) cuts a sync under way short instead
 * of waiting for it: the export's download is abandoned (its connection closed) and the writes stop
 * at the next batch. What is kept is whole batches; the high-water mark stays where it was (the
 * next sync takes the export again); the sync is not recorded (a rolling restart is no failure), so
 * the source stays due and the next start takes it at once; nothing is logged at error level and no
 * promise is left rejected unhandled.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feedsync-stop-'));
let url = '';
let dbs = 0;
/** How the next all.zip is answered. */
let answer: (res: ServerResponse) => void = (res) => void res.writeHead(404).end();
/** An incremental sync's files (modified_id.csv, each record's .json), when set; each answered after `slow` ms. */
let incremental: { csv: string; records: Map<string, object>; slow: number; asked: number; open: number } | null = null;
const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path === '/PyPI/all.zip') return answer(res);
  const inc = incremental;
  if (inc && path === '/PyPI/modified_id.csv') return void res.writeHead(200).end(inc.csv);
  const r = inc?.records.get(decodeURIComponent(path).replace(/^\/PyPI\/(.*)\.json$/, '$1'));
  if (!inc || !r) return void res.writeHead(404).end();
  inc.asked++;
  inc.open++;
  const t = setTimeout(() => res.writeHead(200).end(JSON.stringify(r)), inc.slow);
  res.on('close', () => (clearTimeout(t), inc.open--));
});

const rec = (i: number, modified: string) => ({
  id: `PYSEC-2026-${String(i).padStart(5, '0')}`,
  modified,
  affected: [{ package: { ecosystem: 'PyPI', name: `p${i}` }, versions: ['1.0'] }],
});
const zipOf = (n: number, modified: string) =>
  writeZip(Array.from({ length: n }, (_, i) => ({ name: `${rec(i, modified).id}.json`, data: JSON.stringify(rec(i, modified)) })));

const slowly = (zip: Buffer) => {
  const d = dripExport(zip);
  answer = d.respond;
  return d;
};

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => void unhandled.push(e);
beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});
const stores: SqliteMetaStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});
function store(): SqliteMetaStore {
  const m = new SqliteMetaStore(join(dir, `${dbs++}.db`));
  stores.push(m);
  return m;
}
const src = (): FeedSource => ({ name: 'osv-pypi', url, ecosystem: 'PyPI', incremental: false });
const T1 = '2026-01-01T00:00:00Z';
const T2 = '2026-03-01T00:00:00Z';

describe('break: stopping the feeds cuts a sync under way short', () => {
  it('during the download: stop() returns within ~1 s, the connection is closed, nothing is written or recorded; the next start syncs at once', async () => {
    const meta = store();
    const { log, lines } = recordingLog();
    const feeds = feedsOver(meta, [src()], { log, timeoutMs: 15_000 });
    const zip = zipOf(300, T1);
    const slow = slowly(zip);
    const pass = feeds.tick();
    await slow.started;
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await feeds.stop();
    const took = performance.now() - t0;
    await pass;
    console.log(`stop() during the download: ${took.toFixed(0)} ms`);
    expect(took).toBeLessThan(1000);
    // The upstream saw its client hang up (not a download left running behind the stop).
    await expect(Promise.race([slow.closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), 1000))])).resolves.toBe('closed');
    expect(await meta.listAdvisories()).toEqual([]);
    expect(await meta.advisoryGeneration()).toBe(0);
    expect(await meta.advisorySyncs({ limit: 5 })).toEqual([]);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(lines.some((l) => l.level === 'info' && /stopped/.test(l.msg))).toBe(true);
    // The next start's first pass takes the sync again, whole (a failed sync recorded would hold it back 5 minutes).
    answer = wholeExport(zip);
    const next = feedsOver(meta, [src()]);
    await next.tick();
    expect((await meta.advisorySyncs({ limit: 5 })).map((x) => [x.outcome, x.changed, x.highWater])).toEqual([
      ['changed', 300, '2026-01-01T00:00:00.000000000Z'],
    ]);
    expect((await meta.listAdvisories()).length).toBe(300);
    expect(unhandled).toEqual([]);
  }, 60_000);

  it('during an incremental sync: stop() returns within ~1 s, the record requests under way are abandoned and no more are made; the next sync completes', async () => {
    const meta = store();
    const { log, lines } = recordingLog();
    const source: FeedSource = { ...src(), incremental: true };
    // A full sync set the mark at T1 two hours ago; 200 records changed since, each served in 500 ms, 4 at a time (50 s in all).
    const ago = Date.now() - 7_200_000;
    const mark = '2026-01-01T00:00:00.000000000Z';
    await meta.recordAdvisorySync([], {
      source: 'osv-pypi',
      startedAt: ago,
      finishedAt: ago,
      outcome: 'unchanged',
      mode: 'full',
      changed: 0,
      highWater: mark,
      error: null,
    });
    const changed = Array.from({ length: 200 }, (_, i) => rec(i, T2));
    incremental = {
      csv: changed.map((r) => `${r.modified},${r.id}\n`).join(''),
      records: new Map(changed.map((r) => [r.id, r])),
      slow: 500,
      asked: 0,
      open: 0,
    };
    try {
      const feeds = feedsOver(meta, [source], { log });
      const pass = feeds.tick();
      await new Promise((r) => setTimeout(r, 1200));
      const t0 = performance.now();
      await feeds.stop();
      const took = performance.now() - t0;
      await pass;
      const asked = incremental.asked;
      expect(asked).toBeGreaterThan(0);
      expect(took).toBeLessThan(1000);
      await new Promise((r) => setTimeout(r, 700));
      expect(incremental.asked).toBe(asked);
      expect(incremental.open).toBe(0);
      expect(await meta.listAdvisories()).toEqual([]);
      // Nothing recorded past the earlier sync: its mark holds.
      expect((await meta.advisorySyncs({ limit: 5 })).map((x) => [x.outcome, x.highWater])).toEqual([['unchanged', mark]]);
      expect(lines.filter((l) => l.level === 'error')).toEqual([]);
      incremental.slow = 0;
      expect(await feedsOver(meta, [source]).syncNow(source)).toMatchObject({ mode: 'incremental', outcome: 'changed', changed: 200 });
      expect(unhandled).toEqual([]);
    } finally {
      incremental = null;
    }
  }, 60_000);

  it('between write batches: stop() returns after at most one more batch, only whole batches are kept, the mark stays; the next sync completes', async () => {
    const meta = store();
    const { log, lines } = recordingLog();
    // A first sync, two hours ago (the next is due), set the mark at T1.
    const ago = Date.now() - 7_200_000;
    const older = Array.from({ length: 10 }, (_, i) => rec(i, T1)).map((r) => ({ id: r.id, modified: r.modified, record: JSON.stringify(r) }));
    const mark = '2026-01-01T00:00:00.000000000Z';
    await meta.recordAdvisorySync(older, {
      source: 'osv-pypi',
      startedAt: ago,
      finishedAt: ago,
      outcome: 'changed',
      mode: 'full',
      changed: 0,
      highWater: mark,
      error: null,
    });
    // 2,000 records newer (8 batches of 250).
    answer = wholeExport(zipOf(2000, T2));
    const feeds = feedsOver(meta, [src()], { log });
    const real = meta.putAdvisories.bind(meta);
    const realLast = meta.recordAdvisorySync.bind(meta);
    let batches = 0;
    let afterStop = 0;
    let stopping: Promise<void> | undefined;
    let lastWritten = false;
    Object.assign(meta, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        if (stopping) afterStop++;
        const n = await real(...a);
        // The stop comes once two batches are written.
        if (++batches === 2) stopping = feeds.stop();
        return n;
      },
      recordAdvisorySync: async (...a: Parameters<typeof realLast>) => {
        if (a[0].length) lastWritten = true;
        return realLast(...a);
      },
    });
    await feeds.tick();
    await stopping;
    expect(batches).toBeGreaterThanOrEqual(2);
    expect(afterStop).toBeLessThanOrEqual(1);
    expect(lastWritten).toBe(false);
    const stored = (await meta.listAdvisories()).map((j) => JSON.parse(j) as { id: string; modified: string });
    const changed = stored.filter((r) => r.modified === T2).length;
    // Whole batches: the first 250 x k records of the export, each as the export has it.
    expect(changed % 250).toBe(0);
    expect(changed).toBe(batches * 250);
    // Only the earlier sync is recorded; the batches written are told as the source's.
    const syncs = await meta.advisorySyncs({ limit: 5 });
    expect(syncs).toHaveLength(1);
    expect(syncs[0]).toMatchObject({ outcome: 'changed', highWater: mark });
    expect((await meta.advisoryChangesSince(1)).sources).toEqual(['osv-pypi']);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    // The next sync (the next start's) takes the export again from the mark, and completes.
    Object.assign(meta, { putAdvisories: real, recordAdvisorySync: realLast });
    const next = await feedsOver(meta, [src()]).syncNow(src());
    expect(next).toMatchObject({ outcome: 'changed', changed: 2000 - changed, highWater: '2026-03-01T00:00:00.000000000Z' });
    expect((await meta.listAdvisories()).length).toBe(2000);
    expect(unhandled).toEqual([]);
  }, 60_000);
});
