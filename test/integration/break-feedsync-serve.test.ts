import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeIndex } from '../helpers/fake-index.js';
import { freePort } from '../helpers/oci-tools.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { writeZip } from '../helpers/zip-writer.js';

/**
 * The real server (`node dist/cli/main.js serve`, built) with advisories.sources pulling PyPI files
 * while a big full sync runs on its event loop: 20,000 records, 200 of them ~100 KB listing
 * thousands of versions. The first sync is refused (a corrupt all.zip) so that pulls are timed
 * before the sync as well as during it, and the sound export is served for the retry.
 */
const wheel = (v: string) => `tinylib-${v}-py3-none-any.whl`;
const T = '2026-01-01T00:00:00Z';
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feedsync-serve-'));
const feed = new OsvFeedServer();
const index = new FakeIndex();
let server: ChildProcess;
let out = '';
let url = '';

beforeAll(async () => {
  const versions = Array.from({ length: 6000 }, (_, v) => `${v >> 6}.${v & 63}`);
  const records = [
    ...Array.from({ length: 19_800 }, (_, i) => ({
      id: `PYSEC-2026-${i}`,
      modified: T,
      details: 'd'.repeat(1500),
      affected: [{ package: { ecosystem: 'PyPI', name: `pkg${i}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.2.3' }] }] }],
    })),
    ...Array.from({ length: 200 }, (_, i) => ({
      id: `PYSEC-2025-${i}`,
      modified: T,
      affected: [{ package: { ecosystem: 'PyPI', name: `wide${i}` }, versions }],
    })),
  ];
  const zip = writeZip(records.map((r) => ({ name: `${r.id}.json`, data: JSON.stringify(r) })));
  feed.put('PyPI', records[0]);
  feed.zip = () => zip;
  feed.tamper = (z) => z.subarray(0, 100);
  for (let v = 0; v < 40; v++) index.add('tinylib', { filename: wheel(`1.${v}`), bytes: Buffer.from(`tinylib 1.${v} `.repeat(2000)) });
  await Promise.all([feed.start(), index.start()]);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const config = join(dir, 'airlock.yaml');
  writeFileSync(
    config,
    `listen: 127.0.0.1:${port}
data_dir: ${join(dir, 'data')}
log_level: info
auth:
  admin: open
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
advisories:
  sources:
    - { url: "${feed.url}", ecosystem: PyPI, incremental: false }
  interval: 5
  poll: 0
  max_bytes: 268435456
policy:
  pypi:
    allow:
      - { name: tinylib }
`,
  );
  // As `npm start` and the Dockerfile run it (docs/performance.md).
  server = spawn(process.execPath, ['--max-semi-space-size=4', join(process.cwd(), 'dist', 'cli', 'main.js'), 'serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432:glibc.malloc.arena_max=1' },
  });
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; ; i++) {
    if (/advisory feed sync failed/.test(out)) break;
    if (i > 300) throw new Error(`the server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 60_000);
afterAll(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  await Promise.all([feed.stop(), index.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function pull(v: number): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}/pypi/files/tinylib/${wheel(`1.${v}`)}`);
  expect(res.status).toBe(200);
  await res.arrayBuffer();
  return performance.now() - t0;
}

describe('break: the real server pulling PyPI files while a big full sync runs', () => {
  it('no pull waits long while the sync is fetched, checked, written and applied', async () => {
    // Before: every file once (a fill), then from the cache.
    const before: number[] = [];
    for (let v = 0; v < 20; v++) before.push(await pull(v));
    for (let v = 0; v < 20; v++) before.push(await pull(v));
    // The server's own longest event-loop delay (prom-client's, reset by each scrape): from here to the end.
    const lagMax = async () => Number(/^airlock_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(await (await fetch(`${url}/-/metrics`)).text())![1]) * 1000;
    await lagMax();
    // The sound export from now on: the retry (5 s after the failure) takes it.
    feed.tamper = null;
    const during: number[] = [];
    let v = 20;
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline) {
      during.push(await pull(v++ % 40));
      // Until the change is applied (the advisories re-read), after the sync.
      if (/advisories changed in the store: applied/.test(out) && /advisories reloaded/.test(out)) break;
    }
    await new Promise((r) => setTimeout(r, 500));
    const lag = await lagMax();
    expect(out).toMatch(/"mode":"full","records":20000,"changed":20000.*"msg":"advisory feed synced"/);
    expect(out).toMatch(/"advisories":20000.*"msg":"advisories reloaded"/);
    const worst = (xs: number[]) => Math.max(...xs).toFixed(0);
    const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)].toFixed(0);
    console.log(
      `pulls before the sync: worst ${worst(before)} ms; during it (${during.length}): worst ${worst(during)} ms, p99 ${p99(during)} ms; the server's longest event-loop delay ${lag.toFixed(0)} ms`,
    );
    // Measured on 2 cores shared with other work: the server's longest delay 67-95 ms (once 128, once 218 under a
    // load of 5), against 113-257 ms before break-feedsync's fixes (parsed records held until written; the notice's
    // reads in one stretch with the sync's last write); 1.5-2 s before a17fcb8. Pulls add the test process's own
    // stalls (it serves the export and the index). Both bounded loosely: a guard against a stretch of the old kind.
    expect(lag).toBeLessThan(250);
    expect(Math.max(...during)).toBeLessThan(750);
  }, 60_000);
});
