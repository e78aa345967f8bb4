import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied, type AdvisoriesChange } from '../../src/advisories/applied.js';
import type { FeedSource } from '../../src/advisories/feed.js';
import { importAdvisories } from '../../src/cli/advisories.js';
import { LivePolicy } from '../../src/core/live-policy.js';
import { createLogger } from '../../src/obs/logger.js';
import { Advisories } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { reloadAdvisories } from '../../src/reload.js';
import type { AdvisoryRow } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { OsvFeedServer, type OsvTestRecord } from '../helpers/osv-feed.js';
import { writeZip, type ZipInput } from '../helpers/zip-writer.js';
import { feedsOver } from '../helpers/advisory-rig.js';

/**
 * Guarantees 2-5 of a feed sync written in batches (a17fcb8), on SQLite: the record is exact
 * (newest copy of each record, changes and sources, count, outcome, mark), a sync cut short leaves
 * whole batches and the next completes it, a change applied while a sync is between batches is not
 * lost, and what a sync refused before is still refused with nothing written.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feedsync-record-'));
const log = createLogger('silent');
const feed = new OsvFeedServer();
let url = '';
let dbs = 0;

const rec = (id: string, modified: string, extra: Record<string, unknown> = {}): OsvTestRecord => ({
  id,
  modified,
  affected: [{ package: { ecosystem: 'PyPI', name: `p-${id.toLowerCase()}` }, versions: ['1.0'] }],
  ...extra,
});
const json = (r: OsvTestRecord, name = `${r.id}.json`): ZipInput => ({ name, data: JSON.stringify(r) });
/** Serve this all.zip from now on (made once, here). */
const serveZip = (entries: ZipInput[]) => {
  const z = writeZip(entries);
  feed.zip = () => z;
  if (!feed.records.has('PyPI')) feed.records.set('PyPI', new Map());
};
const many = (n: number, modified = '2026-03-01T00:00:00Z', from = 0) => Array.from({ length: n }, (_, i) => rec(`PYSEC-2026-${from + i}`, modified));

beforeAll(async () => {
  url = (await feed.start()).url;
});
afterAll(async () => {
  await feed.stop();
  rmSync(dir, { recursive: true, force: true });
});
const stores: SqliteMetaStore[] = [];
afterEach(async () => {
  clearAdvisoriesAppliedHooks();
  feed.records.clear();
  feed.tamper = null;
  for (const s of stores.splice(0)) await s.close();
});

function store(): SqliteMetaStore {
  const m = new SqliteMetaStore(join(dir, `${dbs++}.db`));
  stores.push(m);
  return m;
}
const src = (name: string, incremental = false, ecosystem = 'PyPI'): FeedSource => ({ name, url, ecosystem, incremental });
const stored = async (meta: SqliteMetaStore, id: string) => {
  const m = await meta.advisoriesModified([id]);
  return m.get(id);
};

describe('break: the record of a batched feed sync is exact', () => {
  it('an all.zip holding one record under two paths stores the newer copy, the newer read first, and counts one change', async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv-pypi')]);
    // Same batch: the newer copy first, an older one (a stale subtree of the export) after it.
    serveZip([
      json(rec('PYSEC-2026-X', '2026-06-01T00:00:00Z', { summary: 'newer' })),
      json(rec('PYSEC-2026-X', '2026-01-01T00:00:00Z'), 'stale/PYSEC-2026-X.json'),
    ]);
    const s = await feeds.syncNow(src('osv-pypi'));
    expect(await stored(meta, 'PYSEC-2026-X')).toBe('2026-06-01T00:00:00Z');
    expect(s).toMatchObject({ outcome: 'changed', changed: 1 });
  });

  it('an all.zip holding one record under two paths, the older read first: one record changed, counted once', async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv-pypi')]);
    serveZip([
      json(rec('PYSEC-2026-X', '2026-01-01T00:00:00Z'), 'stale/PYSEC-2026-X.json'),
      json(rec('PYSEC-2026-X', '2026-06-01T00:00:00Z', { summary: 'newer' })),
    ]);
    const s = await feeds.syncNow(src('osv-pypi'));
    expect(await stored(meta, 'PYSEC-2026-X')).toBe('2026-06-01T00:00:00Z');
    expect(s).toMatchObject({ outcome: 'changed', changed: 1 });
    expect((await meta.advisorySyncs({ limit: 1 }))[0]).toMatchObject({ changed: 1 });
  });

  it("a newer copy written by another writer between a sync's check and its write is not rolled back", async () => {
    const meta = store();
    // Two sources carry the same record: osv.dev itself (newest), and a mirror a little behind.
    const osv = feedsOver(meta, [src('osv')]);
    const mirror = feedsOver(meta, [src('mirror')]);
    await meta.putAdvisories([{ id: 'PYSEC-2026-Y', modified: '2026-01-01T00:00:00Z', record: JSON.stringify(rec('PYSEC-2026-Y', '2026-01-01T00:00:00Z')) }]);
    // The mirror's sync has checked its copy against the stored one; before its write commits, osv's sync (another
    // replica, on PostgreSQL; another process) commits the newest copy.
    const real = meta.recordAdvisorySync.bind(meta);
    let interleave = true;
    Object.assign(meta, {
      recordAdvisorySync: async (...a: Parameters<typeof real>) => {
        if (interleave && a[1].source === 'mirror') {
          interleave = false;
          serveZip([json(rec('PYSEC-2026-Y', '2026-09-01T00:00:00Z', { summary: 'newest' }))]);
          expect(await osv.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: 1 });
        }
        return real(...a);
      },
    });
    serveZip([json(rec('PYSEC-2026-Y', '2026-05-01T00:00:00Z', { summary: 'older' }))]);
    await mirror.syncNow(src('mirror'));
    expect(interleave).toBe(false);
    expect(await stored(meta, 'PYSEC-2026-Y')).toBe('2026-09-01T00:00:00Z');
  });

  it('an import by hand between two batches of a sync: changes and sources are exact, and the sync counts only its own', async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv-pypi')]);
    serveZip(many(600).map((r) => json(r)));
    const real = meta.putAdvisories.bind(meta);
    let calls = 0;
    const hand = { id: 'GHSA-hand-1', modified: '2026-04-01T00:00:00Z', record: JSON.stringify(rec('GHSA-hand-1', '2026-04-01T00:00:00Z')) };
    let between = -1;
    Object.assign(meta, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        const n = await real(...a);
        if (a[1] && ++calls === 1) {
          expect(await real([hand])).toBe(1);
          between = await meta.advisoryGeneration();
        }
        return n;
      },
    });
    const s = await feeds.syncNow(src('osv-pypi'));
    expect(s).toMatchObject({ outcome: 'changed', changed: 600 });
    const all = await meta.advisoryChangesSince(0);
    expect(all.ids).toHaveLength(601);
    expect(all.sources).toEqual(['import', 'osv-pypi']);
    // After the import: only the sync's later batches.
    const later = await meta.advisoryChangesSince(between);
    expect(later.ids).toHaveLength(350);
    expect(later.ids).not.toContain('GHSA-hand-1');
    expect(later.sources).toEqual(['osv-pypi']);
  });

  // An import by hand wrote whatever it read: an old checkout un-withdrew a record, and no incremental sync brought the
  // newer copy back (it is behind the mark). It now leaves out a copy older than the stored one unless --replace.
  it('an import by hand of an older copy does not roll back what a sync stored, and later incremental syncs keep the newest', async () => {
    const meta = store();
    const s = src('osv-pypi', true);
    const feeds = feedsOver(meta, [s]);
    feed.put('PyPI', rec('PYSEC-2026-Z', '2026-06-01T00:00:00Z', { withdrawn: '2026-06-01T00:00:00Z' }), rec('PYSEC-2026-W', '2026-07-01T00:00:00Z'));
    serveZip([...feed.records.get('PyPI')!.values()].map((r) => json(r)));
    expect(await feeds.syncNow(s)).toMatchObject({ mode: 'full', changed: 2 });
    // The operator imports an old checkout (Z before it was withdrawn) beside a record the store does not hold.
    const file = join(dir, `old-${dbs}`);
    mkdirSync(file);
    writeFileSync(join(file, 'Z.json'), JSON.stringify(rec('PYSEC-2026-Z', '2026-02-01T00:00:00Z')));
    writeFileSync(join(file, 'N.json'), JSON.stringify(rec('PYSEC-2026-N', '2026-02-01T00:00:00Z')));
    expect(await importAdvisories(meta, file)).toMatchObject({ read: 2, changed: 1, older: 1 });
    feed.put('PyPI', rec('PYSEC-2026-V', '2026-08-01T00:00:00Z'));
    expect(await feeds.syncNow(s)).toMatchObject({ mode: 'incremental', outcome: 'changed' });
    expect(await stored(meta, 'PYSEC-2026-Z')).toBe('2026-06-01T00:00:00Z');
    expect(await stored(meta, 'PYSEC-2026-N')).toBe('2026-02-01T00:00:00Z');
    // Deliberately, with replace: the older copy is written (and told as the import's change).
    const before = await meta.advisoryGeneration();
    expect(await importAdvisories(meta, file, { replace: true })).toMatchObject({ read: 2, changed: 1, older: 0 });
    expect(await stored(meta, 'PYSEC-2026-Z')).toBe('2026-02-01T00:00:00Z');
    expect(await meta.advisoryChangesSince(before)).toMatchObject({ ids: ['PYSEC-2026-Z'], sources: ['import'] });
  });

  it('a last write that fails keeps the mark: the next (incremental) sync brings the rest, and the counts add up', async () => {
    const meta = store();
    const s = src('osv-pypi', true);
    const feeds = feedsOver(meta, [s]);
    feed.put('PyPI', ...many(10, '2026-01-01T00:00:00Z', 10_000));
    serveZip([...feed.records.get('PyPI')!.values()].map((r) => json(r)));
    expect(await feeds.syncNow(s)).toMatchObject({ mode: 'full', changed: 10, highWater: '2026-01-01T00:00:00.000000000Z' });
    feed.put('PyPI', ...many(300, '2026-02-01T00:00:00Z'));
    const real = meta.recordAdvisorySync.bind(meta);
    let fail = true;
    Object.assign(meta, {
      recordAdvisorySync: (...a: Parameters<typeof real>) =>
        fail && a[0].length ? ((fail = false), Promise.reject(new Error('database is locked'))) : real(...a),
    });
    const failed = await feeds.syncNow(s);
    expect(failed).toMatchObject({ mode: 'incremental', outcome: 'failed', changed: 250, highWater: '2026-01-01T00:00:00.000000000Z' });
    expect((await meta.listAdvisories()).length).toBe(260);
    const next = await feeds.syncNow(s);
    expect(next).toMatchObject({ mode: 'incremental', outcome: 'changed', changed: 50, highWater: '2026-02-01T00:00:00.000000000Z' });
    expect((await meta.listAdvisories()).length).toBe(310);
    expect(await meta.advisoryChangesSince(0)).toMatchObject({ sources: ['osv-pypi'] });
  });
});

describe('break: a sync cut short leaves whole batches, and every change is applied and told', () => {
  it('a store error at each batch in turn: only whole batches, each failure records what it wrote, the next sync completes, the hooks hear every id', async () => {
    const told = new Set<string>();
    onAdvisoriesApplied(async (c: AdvisoriesChange) => void c.changedIds.forEach((id) => told.add(id)));
    const meta = store();
    const live = new LivePolicy(new Policy({}), new Advisories(), 'v' as never);
    const feeds = feedsOver(meta, [src('osv-pypi')], { apply: () => reloadAdvisories(meta, live, log) });
    feeds.start(0);
    await feeds.stop();
    serveZip(many(1100).map((r) => json(r)));
    const real = meta.putAdvisories.bind(meta);
    let written = 0;
    for (const failAt of [2, 1, 3]) {
      let calls = 0;
      Object.assign(meta, {
        putAdvisories: (...a: Parameters<typeof real>) => (++calls === failAt ? Promise.reject(new Error('SQLITE_FULL')) : real(...a)),
      });
      const before = (await meta.listAdvisories()).length;
      const s = await feeds.syncNow(src('osv-pypi'));
      const after = (await meta.listAdvisories()).length;
      expect(s.outcome).toBe('failed');
      expect(after - before).toBe(s.changed);
      // Whole batches of 250 in the zip's order: the stored ids are a prefix of the export.
      expect(after % 250).toBe(0);
      written = after;
      await feeds.notice();
      expect(live.advisories.size).toBe(written);
    }
    Object.assign(meta, { putAdvisories: real });
    expect(await feeds.syncNow(src('osv-pypi'))).toMatchObject({ outcome: 'changed', changed: 1100 - written });
    await feeds.notice();
    expect(live.advisories.size).toBe(1100);
    expect(told.size).toBe(1100);
  });

  it("a stop of the feeds while a sync is between batches ends it with whole batches, the sync not recorded, and the next start tells what wasn't told", async () => {
    const meta = store();
    const told: string[] = [];
    onAdvisoriesApplied(async (c) => void told.push(...c.changedIds));
    serveZip(many(1000).map((r) => json(r)));
    const feeds = feedsOver(meta, [src('osv-pypi')]);
    const real = meta.putAdvisories.bind(meta);
    let stopping: Promise<void> | undefined;
    Object.assign(meta, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        const n = await real(...a);
        stopping ??= feeds.stop();
        return n;
      },
    });
    feeds.start(0);
    await new Promise((r) => setTimeout(r, 50));
    await feeds.tick();
    await stopping;
    // The stop cuts the sync short after the batch it came in (break-feedsync-stop.test.ts): not recorded, its batch kept.
    expect(await meta.advisorySyncs({ limit: 1 })).toEqual([]);
    expect((await meta.listAdvisories()).length).toBe(250);
    // The stop came before the sync's notice. A new start from what was told: the source is still due, so its first
    // pass syncs the rest at once, and what it tells covers the batch written before the stop as well.
    const again = feedsOver(meta, [src('osv-pypi')]);
    again.start(await meta.advisoriesTold());
    await again.tick();
    await again.notice();
    expect((await meta.advisorySyncs({ limit: 5 })).map((x) => [x.outcome, x.changed])).toEqual([['changed', 750]]);
    await again.stop();
    expect(new Set(told).size).toBe(1000);
  });
});

describe('break: a change applied while a sync is between batches', () => {
  it('a SIGHUP (notice) during the sync does not leave the policy in force without its last batches once the sync is noticed', async () => {
    const meta = store();
    const live = new LivePolicy(new Policy({}), new Advisories(), 'v' as never);
    const N = 6000;
    // The export's last batches hold the ids the policy's reader pages through first (it reads in id order).
    serveZip(Array.from({ length: N }, (_, i) => json(rec(`PYSEC-2026-${String(N - i).padStart(5, '0')}`, '2026-03-01T00:00:00Z'))));
    const feeds = feedsOver(meta, [src('osv-pypi')], { apply: () => reloadAdvisories(meta, live, log) });
    // The server's SIGHUP handler: notice what changed (server.ts reloadAdvisories). Sent when the sync has two batches left.
    const real = meta.putAdvisories.bind(meta);
    let calls = 0;
    let sighup: Promise<unknown> | undefined;
    Object.assign(meta, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        const n = await real(...a);
        if (++calls === N / 250 - 2) sighup = feeds.notice();
        return n;
      },
    });
    // One pass of the schedule (advisories.poll 0: a change is applied after this replica's syncs and on demand): the sync, then its notice.
    await feeds.tick();
    await sighup;
    expect((await meta.advisorySyncs({ limit: 1 }))[0]).toMatchObject({ outcome: 'changed', changed: N });
    expect(live.advisories.size).toBe(N);
  });
});

describe('break: what a sync refused before is still refused, with nothing written', () => {
  const N = 700;
  async function refused(setUp: () => void, error: RegExp, o: { maxBytes?: number; incremental?: boolean } = {}) {
    const meta = store();
    const s = src('osv-pypi', o.incremental ?? false);
    const feeds = feedsOver(meta, [s], { maxBytes: o.maxBytes });
    if (o.incremental) {
      feed.put('PyPI', rec('PYSEC-2026-BASE', '2026-01-01T00:00:00Z'));
      serveZip([json(rec('PYSEC-2026-BASE', '2026-01-01T00:00:00Z'))]);
      expect(await feeds.syncNow(s)).toMatchObject({ mode: 'full', changed: 1 });
    }
    const gen = await meta.advisoryGeneration();
    const n = (await meta.listAdvisories()).length;
    setUp();
    const r = await feeds.syncNow(s);
    expect(r).toMatchObject({ outcome: 'failed', changed: 0 });
    expect(r.error).toMatch(error);
    expect(await meta.advisoryGeneration()).toBe(gen);
    expect((await meta.listAdvisories()).length).toBe(n);
    expect((await meta.advisorySyncs({ limit: 1 }))[0]).toMatchObject({ outcome: 'failed', changed: 0, generation: 0 });
  }
  const good = () => many(N).map((r) => json(r));

  it('a corrupt entry at the end of a many-batch all.zip', async () => {
    await refused(() => {
      const entries = good();
      entries.push(json(rec('PYSEC-2026-LAST', '2026-03-01T00:00:00Z')));
      const z = Buffer.from(writeZip(entries, { stored: true }));
      // Flip a byte in the last entry's data: its CRC no longer matches.
      const at = z.lastIndexOf(Buffer.from('"PYSEC-2026-LAST"'));
      z[at + 3] ^= 0x01;
      serveZip([]);
      feed.zip = () => z;
    }, /fails its CRC check/);
  });
  it('a record that is not OSV at the end', async () => {
    await refused(
      () =>
        serveZip([...good(), { name: 'PYSEC-2026-BAD.json', data: JSON.stringify({ id: 'PYSEC-2026-BAD', modified: '2026-03-01T00:00:00Z', affected: 'x' }) }]),
      /"affected" is not an array/,
    );
  });
  it('a record modified in the future at the end', async () => {
    await refused(() => serveZip([...good(), json(rec('PYSEC-2099-1', '2099-01-01T00:00:00Z'))]), /modified in the future/);
  });
  it('an export over advisories.max_bytes', async () => {
    await refused(() => serveZip(good()), /exceeds \d+ bytes/, { maxBytes: 64 << 10 });
  });
  it('an incremental sync with one bad record among hundreds changed', async () => {
    await refused(
      () => {
        feed.put('PyPI', ...many(N, '2026-03-01T00:00:00Z'));
        feed.put('PyPI', { id: 'PYSEC-2026-BAD', modified: '2026-03-02T00:00:00Z', affected: [{ package: { name: 7 } }] });
      },
      /"affected" package is not an object of strings/,
      { incremental: true },
    );
  });
});
