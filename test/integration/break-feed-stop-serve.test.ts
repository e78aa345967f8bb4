import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { spawnServe } from '../helpers/fleet.js';
import { until } from '../helpers/stuck.js';
import { freePort } from '../helpers/oci-tools.js';
import { writeZip } from '../helpers/zip-writer.js';

/**
 * Guarantee: a real server (`node dist/cli/main.js serve`, built) told to stop (SIGTERM) while its
 * advisory feed downloads a slow export exits promptly, logs nothing at error level, and leaves its
 * SQLite database whole: no sync recorded, nothing half written; the next start takes the sync at
 * once and ends with exactly the export's records.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feed-stop-serve-'));
const index = new FakeIndex();
const T = '2026-01-01T00:00:00Z';
const N = 3000;
const records = Array.from({ length: N }, (_, i) => ({
  id: `PYSEC-2026-${String(i).padStart(5, '0')}`,
  modified: T,
  affected: [{ package: { ecosystem: 'PyPI', name: `p${i}` }, versions: ['1.0'] }],
}));
const zip = writeZip(records.map((r) => ({ name: `${r.id}.json`, data: JSON.stringify(r) })));
let slow = true;
/** What all.zip serves (the small export, or the big one of the second test); `sent` once a fast answer is written whole. */
let serving = zip;
let sent: () => void = () => {};
let zipStarted: () => void = () => {};
let hungUp: () => void = () => {};
const feed = createServer((req, res: ServerResponse) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path !== '/PyPI/all.zip') return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/zip', 'content-length': serving.length });
  if (!slow) return void res.end(serving, () => sent());
  // Its first KB, then a byte every 50 ms: a transfer far from its end.
  res.write(zip.subarray(0, 1024));
  let at = 1024;
  const drip = setInterval(() => res.write(zip.subarray(at, ++at)), 50);
  res.on('close', () => (clearInterval(drip), hungUp()));
  zipStarted();
});
let feedUrl = '';
let config = '';

beforeAll(async () => {
  await new Promise<void>((r) => feed.listen(0, '127.0.0.1', () => r()));
  feedUrl = `http://127.0.0.1:${(feed.address() as AddressInfo).port}/`;
  await index.start();
  const port = await freePort();
  config = join(dir, 'airlock.yaml');
  writeFileSync(
    config,
    `listen: 127.0.0.1:${port}
data_dir: ${join(dir, 'data')}
log_level: info
auth:
  admin: open
pypi:
  upstream: ${index.simpleUrl}
advisories:
  sources:
    - { url: "${feedUrl}", ecosystem: PyPI, incremental: false }
  interval: 3600
  poll: 0
  timeout: 600
policy:
  pypi:
    allow:
      - { name: tinylib }
`,
  );
}, 60_000);
afterAll(async () => {
  for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  feed.closeAllConnections();
  await new Promise<void>((r) => feed.close(() => r()));
  await index.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Every server started, killed after the tests if a failure left it running. */
const spawned: ChildProcess[] = [];
/** A server on `data` (the first test's data_dir by default). */
function serve(data = join(dir, 'data')): ReturnType<typeof spawnServe> {
  const cfg = data === join(dir, 'data') ? config : join(dir, 'airlock-2.yaml');
  if (cfg !== config) writeFileSync(cfg, readFileSync(config, 'utf8').replace(`data_dir: ${join(dir, 'data')}`, `data_dir: ${data}`));
  const s = spawnServe(cfg);
  spawned.push(s.proc);
  return s;
}
const errors = (out: string) => out.split('\n').filter((l) => /"level":(50|60)/.test(l) || /Unhandled|UnhandledPromiseRejection|at async|TypeError/.test(l));

describe('break: the real server stopped (SIGTERM) while its feed downloads a slow export', () => {
  it('exits promptly with 0, logs no error, leaves the database whole; the next start syncs at once to exactly the export', async () => {
    const started = new Promise<void>((r) => (zipStarted = r));
    const closed = new Promise<void>((r) => (hungUp = r));
    const first = serve();
    await started;
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    first.proc.kill('SIGTERM');
    const code = await first.exited;
    const took = performance.now() - t0;
    console.log(`the server exited ${took.toFixed(0)} ms after SIGTERM, code ${code}`);
    expect(code).toBe(0);
    expect(took).toBeLessThan(2000);
    await expect(Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), 1000))])).resolves.toBe('closed');
    expect(errors(first.out())).toEqual([]);
    expect(first.out()).toMatch(/advisory feed sync stopped with the feeds/);
    // The database as the stop left it: nothing written, no sync recorded.
    const meta = new SqliteMetaStore(join(dir, 'data', 'airlock.db'));
    try {
      expect(await meta.advisorySyncs({ limit: 5 })).toEqual([]);
      expect(await meta.listAdvisories()).toEqual([]);
      expect(await meta.advisoryGeneration()).toBe(0);
    } finally {
      await meta.close();
    }
    // The next start takes the sync at once (a failed sync recorded would hold it back 5 minutes).
    slow = false;
    const t1 = Date.now();
    const second = serve();
    try {
      expect(await until(() => /advisories changed in the store: applied/.test(second.out()), 30_000), `the next start's sync: ${second.out()}`).toBe(true);
      console.log(`the next start synced and applied in ${Date.now() - t1} ms`);
      expect(second.out()).toMatch(new RegExp(`"mode":"full","records":${N},"changed":${N}.*"msg":"advisory feed synced"`));
      expect(second.out()).toMatch(new RegExp(`"changed":${N},"sources":\\["osv-pypi"\\]`));
    } finally {
      second.proc.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    }
    expect(errors(second.out())).toEqual([]);
    const after = new SqliteMetaStore(join(dir, 'data', 'airlock.db'));
    try {
      expect((await after.listAdvisories()).length).toBe(N);
      expect((await after.advisorySyncs({ limit: 5 })).map((s) => [s.outcome, s.changed])).toEqual([['changed', N]]);
      expect(await after.advisoriesTold()).toBe(await after.advisoryGeneration());
    } finally {
      await after.close();
    }
  }, 90_000);
});

describe('break: the real server stopped (SIGTERM) while its feed reads and writes a big export', () => {
  it('exits promptly with 0, leaves whole batches and no sync row (or the whole sync); the next start ends with exactly the export', async () => {
    const BIG = 20_000;
    const big = Array.from({ length: BIG }, (_, i) => ({ ...records[0], id: `PYSEC-2025-${String(i).padStart(5, '0')}`, details: 'd'.repeat(1000) }));
    serving = writeZip(big.map((r) => ({ name: `${r.id}.json`, data: JSON.stringify(r) })));
    slow = false;
    const data = join(dir, 'data-big');
    const done = new Promise<void>((r) => (sent = r));
    const first = serve(data);
    await done;
    // The export is in; it is read and checked (~1.5 s here), then written in batches (~1 s): the stop
    // comes once the first batch is seen in the database (read beside the server).
    const look = new Database(join(data, 'airlock.db'), { readonly: true });
    try {
      expect(await until(() => (look.prepare('SELECT COUNT(*) AS n FROM advisories').get() as { n: number }).n > 0, 30_000), first.out()).toBe(true);
    } finally {
      look.close();
    }
    const t0 = performance.now();
    first.proc.kill('SIGTERM');
    const code = await first.exited;
    const took = performance.now() - t0;
    const meta = new SqliteMetaStore(join(data, 'airlock.db'));
    let stored = 0;
    let syncs: unknown[] = [];
    try {
      stored = (await meta.listAdvisories()).length;
      syncs = (await meta.advisorySyncs({ limit: 5 })).map((s) => [s.outcome, s.changed]);
    } finally {
      await meta.close();
    }
    console.log(
      `SIGTERM while the export is read and written: exit ${code} in ${took.toFixed(0)} ms; ${stored} records stored, syncs ${JSON.stringify(syncs)}`,
    );
    expect(code).toBe(0);
    expect(took).toBeLessThan(2000);
    expect(errors(first.out())).toEqual([]);
    // Cut short: whole batches and no row; or it had ended: all of it and its row.
    if (syncs.length === 0) expect(stored % 250).toBe(0);
    else expect([stored, syncs]).toEqual([BIG, [['changed', BIG]]]);
    const second = serve(data);
    try {
      expect(await until(() => /airlock listening/.test(second.out()), 30_000), second.out()).toBe(true);
      // Stopped, the sync is taken again at once and applied; else the first pass looks anyway (what was not told).
      if (syncs.length === 0) expect(await until(() => /advisories changed in the store: applied/.test(second.out()), 60_000), second.out()).toBe(true);
      else await new Promise((r) => setTimeout(r, 1500));
      // The hooks are told every record once, as the source's, as one unstopped sync tells them.
      if (syncs.length === 0) expect(second.out()).toMatch(new RegExp(`"changed":${BIG},"sources":\\["osv-pypi"\\]`));
    } finally {
      second.proc.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    }
    expect(errors(second.out())).toEqual([]);
    const after = new SqliteMetaStore(join(data, 'airlock.db'));
    try {
      const ids = (await after.listAdvisories()).map((j) => (JSON.parse(j) as { id: string }).id).sort();
      expect(ids).toEqual(big.map((r) => r.id));
      expect((await after.advisorySyncs({ limit: 5 })).map((s) => [s.outcome, s.changed])).toEqual([['changed', syncs.length ? BIG : BIG - stored]]);
      // Every change told to the hooks by one of the two runs.
      expect(await after.advisoriesTold()).toBe(await after.advisoryGeneration());
    } finally {
      await after.close();
    }
  }, 120_000);
});
