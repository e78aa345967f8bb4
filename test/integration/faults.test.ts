import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/core/chain.js';
import { scrubStore } from '../../src/core/scrub.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, sha256hex } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FAULTS, FaultProxy, type Fault } from '../helpers/fault-proxy.js';
import { FakeRegistry, digestOf, makeImage } from '../helpers/fake-registry.js';
import { rawGet, records } from '../helpers/http.js';
import { airlockCli } from '../helpers/cli.js';
import { serveProcess } from '../helpers/fleet.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

/**
 * The fault suite: every way an upstream can go wrong on the wire, injected over and over on all
 * three protocols, and the promises that must hold through all of it: no client ever gets a
 * complete success response with wrong bytes, nothing bad is cached, every request is on record,
 * and once the upstream behaves, every artefact pulls correctly.
 */
describe('fault suite: injected upstream faults on PyPI, OCI and Hugging Face', () => {
  const index = new FakeIndex();
  const reg = new FakeRegistry();
  const hub = new FakeHub();
  let pypiProxy: FaultProxy;
  let regProxy: FaultProxy;
  let hubProxy: FaultProxy;
  let cdnProxy: FaultProxy;
  let a: TestAirlock;
  const N = 12;
  const wheels = Array.from({ length: N }, (_, i) => ({ name: `faulty-1.${i}-py3-none-any.whl`, bytes: randomBytes(100_000 + i * 10_000) }));
  const layers = Array.from({ length: N }, (_, i) => randomBytes(120_000 + i * 7_000));
  const image = makeImage(layers);
  // Small images whose manifests are faulted (each names several layers, so it is worth faulting).
  const manifestImages = Array.from({ length: 4 }, () => makeImage(Array.from({ length: 4 }, () => randomBytes(64))));
  const shards = Array.from({ length: N }, (_, i) => ({ path: `data/f${i}.parquet`, bytes: randomBytes(90_000 + i * 5_000) }));
  let commit: string;

  beforeAll(async () => {
    await index.start();
    for (const w of wheels) index.add('faulty', { filename: w.name, bytes: w.bytes });
    pypiProxy = await new FaultProxy(index.base).start();
    pypiProxy.rewrite.set(`127.0.0.1:${index.port}`, pypiProxy.host);

    reg.auth = false;
    reg.redirectBlobs = false;
    await reg.start();
    reg.push('team/app', image, 'v1');
    for (const m of manifestImages) reg.push('team/small', m);
    regProxy = await new FaultProxy(reg.url).start();

    await hub.start();
    commit = hub.commit(
      'dataset',
      'acme/corpus',
      shards.map((s) => ({ ...s, lfs: true })),
    );
    cdnProxy = await new FaultProxy(`http://127.0.0.1:${hub.cdnPort}`).start();
    hubProxy = await new FaultProxy(hub.url, new Map([[`127.0.0.1:${hub.cdnPort}`, cdnProxy.host]])).start();

    a = await startAirlock(`
transfers:
  min_rate: 65536
  rate_window: 0.5
pypi:
  upstream: ${pypiProxy.url}/simple/
  file_hosts: ["${pypiProxy.host}"]
  timeout: 2
oci:
  default_registry: reg.test
  timeout: 2
  registries:
    reg.test:
      url: ${regProxy.url}
hf:
  upstream: ${hubProxy.url}
  file_hosts: ["${cdnProxy.host}"]
  timeout: 2
policy:
  pypi:
    allow:
      - name: faulty
  oci:
    allow:
      - repository: reg.test/team/app
        digests: ["${image.digest}"]
      - repository: reg.test/team/small
        digests: [${manifestImages.map((m) => `"${m.digest}"`).join(', ')}]
  hf:
    allow:
      - repo: acme/corpus
        type: dataset
        commits: ["${commit}"]
`);
  });

  afterAll(async () => {
    await a?.stop();
    for (const p of [pypiProxy, regProxy, hubProxy, cdnProxy]) await p?.stop();
    await index.stop();
    await reg.stop();
    await hub.stop();
  });

  const pypiUrl = (i: number) => `${a.url}/pypi/files/faulty/${wheels[i].name}`;
  const blobUrl = (i: number) => `${a.url}/v2/reg.test/team/app/blobs/${digestOf(layers[i])}`;
  const hfUrl = (i: number) => `${a.url}/hf/datasets/acme/corpus/resolve/${commit}/${shards[i].path}`;
  const manifestUrl = (i: number) => `${a.url}/v2/reg.test/team/small/manifests/${manifestImages[i].digest}`;

  it('through 100+ injected faults: no complete response with wrong bytes, nothing bad cached, every request on record; then every artefact pulls', async () => {
    // The image's manifest is pulled first (its blobs are approved through it).
    const m = await rawGet(`${a.url}/v2/reg.test/team/app/manifests/${image.digest}`, { accept: ACCEPT });
    expect(m.status).toBe(200);
    const before = (await records(a, 'limit=10000')).length;

    type Trial = { proto: string; fault: Fault; url: string; expected: Buffer; headers?: Record<string, string> };
    const trials: Trial[] = [];
    for (let round = 0; round < 4; round++) {
      FAULTS.forEach((fault, k) => {
        const i = (round * FAULTS.length + k) % N;
        pypiProxy.inject(wheels[i].name, fault);
        trials.push({ proto: 'pypi', fault, url: pypiUrl(i), expected: wheels[i].bytes });
        regProxy.inject(digestOf(layers[i]).slice(7), fault);
        trials.push({ proto: 'oci', fault, url: blobUrl(i), expected: layers[i] });
        cdnProxy.inject(sha256hex(shards[i].bytes), fault);
        trials.push({ proto: 'hf', fault, url: hfUrl(i), expected: shards[i].bytes });
      });
      for (const fault of ['flip', 'wrong-file', 'truncate', 'short'] as Fault[]) {
        const i = trials.length % manifestImages.length;
        regProxy.inject(manifestImages[i].digest, fault);
        trials.push({ proto: 'oci-manifest', fault, url: manifestUrl(i), expected: manifestImages[i].manifest, headers: { accept: ACCEPT } });
      }
    }

    const outcomes = { refused: 0, cut: 0, servedCorrect: 0, corruptComplete: 0 };
    // Run them in order, a few at a time (the faults are one-shot and queued per file in order).
    const queue = [...trials];
    const worker = async () => {
      for (let t = queue.shift(); t; t = queue.shift()) {
        const r = await rawGet(t.url, t.headers).catch(() => ({ status: 0, complete: false, body: Buffer.alloc(0), headers: {} }));
        if (r.status >= 200 && r.status < 300 && r.complete) {
          if (r.body.equals(t.expected)) outcomes.servedCorrect++;
          else {
            outcomes.corruptComplete++;
            console.error(`complete corrupted response: ${t.proto} ${t.fault} ${t.url}`);
          }
        } else if (r.status >= 400 || r.status === 0) outcomes.refused++;
        else outcomes.cut++;
      }
    };
    // One worker per protocol file set keeps each file's faults in the order they were queued.
    await Promise.all([worker(), worker(), worker()]);
    const injected = pypiProxy.total() + regProxy.total() + cdnProxy.total();
    expect(injected).toBeGreaterThanOrEqual(100);
    expect(outcomes.corruptComplete).toBe(0);
    // A fault never yields a complete success (a retry from another fault could, but none is queued).
    expect(outcomes.servedCorrect).toBe(0);
    expect(outcomes.refused + outcomes.cut).toBe(trials.length);

    // Nothing bad is cached, nothing is left in the spool, and every request is on record.
    await a.airlock.cache.idle();
    const scrub = await scrubStore(a.airlock.meta, a.airlock.store);
    expect(scrub.corrupt).toEqual([]);
    expect(scrub.missing).toEqual([]);
    expect(readdirSync(join(a.dir, 'data', 'spool'))).toEqual([]);
    // Identical refusals are folded into one row with a count (core/fold.ts): the counts add up to every request.
    const rows = await records(a, 'limit=10000');
    const fresh = rows.slice(0, rows.length - before);
    expect(fresh.reduce((n: number, r: { count?: number }) => n + (r.count ?? 1), 0)).toBeGreaterThanOrEqual(trials.length);
    expect(fresh.every((r: { decision: string }) => r.decision !== 'allow')).toBe(true);

    // The upstream behaves again: every artefact pulls complete and correct, and the chain holds.
    for (let i = 0; i < N; i++) {
      for (const [url, bytes] of [
        [pypiUrl(i), wheels[i].bytes],
        [blobUrl(i), layers[i]],
        [hfUrl(i), shards[i].bytes],
      ] as const) {
        const r = await rawGet(url);
        expect(r.status, url).toBe(200);
        expect(r.complete).toBe(true);
        expect(sha(r.body)).toBe(sha(bytes));
      }
    }
    for (let i = 0; i < manifestImages.length; i++) {
      const r = await rawGet(manifestUrl(i), { accept: ACCEPT });
      expect(r.status).toBe(200);
      expect(r.body.equals(manifestImages[i].manifest)).toBe(true);
    }
    await a.airlock.recorder.flush();
    expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
    console.log(
      `fault suite: ${injected} faults injected (${[...FAULTS].map((f) => `${f} ${(pypiProxy.injected.get(f) ?? 0) + (regProxy.injected.get(f) ?? 0) + (cdnProxy.injected.get(f) ?? 0)}`).join(', ')}); ${outcomes.refused} refused before the first byte, ${outcomes.cut} cut before the end, 0 complete corrupted responses, 0 bad cache entries`,
    );
  }, 180_000);
});

describe('fault suite: nobody can starve the mirror', () => {
  const index = new FakeIndex();
  let proxy: FaultProxy;
  let a: TestAirlock;
  const drips = Array.from({ length: 64 }, (_, i) => ({ filename: `drip-1.${i}-py3-none-any.whl`, bytes: randomBytes(300_000) }));
  const bigs = Array.from({ length: 60 }, (_, i) => ({ filename: `big-1.${i}-py3-none-any.whl`, bytes: randomBytes(4 << 20) }));
  const normal = Array.from({ length: 2 }, (_, i) => ({ filename: `normal-1.${i}-py3-none-any.whl`, bytes: randomBytes(80_000) }));

  beforeAll(async () => {
    await index.start();
    for (const f of drips) index.add('drip', f);
    for (const f of bigs) index.add('big', f);
    for (const f of normal) index.add('normal', f);
    proxy = await new FaultProxy(index.base).start();
    proxy.rewrite.set(`127.0.0.1:${index.port}`, proxy.host);
    a = await startAirlock(`
transfers:
  min_rate: 65536
  rate_window: 2
  abandon_after: 0.5
  finish_bytes: 0
  per_client: 16
pypi:
  upstream: ${proxy.url}/simple/
  file_hosts: ["${proxy.host}"]
policy:
  pypi:
    allow: [{ name: drip }, { name: big }, { name: normal }]
`);
    // Pages cached first: the measurements below are of file transfers.
    for (const p of ['drip', 'big', 'normal']) expect((await rawGet(`${a.url}/pypi/simple/${p}/`)).status).toBe(200);
  });

  afterAll(async () => {
    await a?.stop();
    await proxy?.stop();
    await index.stop();
  });

  const url = (project: string, f: { filename: string }) => `${a.url}/pypi/files/${project}/${f.filename}`;

  it('64 dripping downloads from one client: another client is answered at once, and every drip is cut by the rate budget', async () => {
    for (const f of drips) proxy.inject(f.filename, 'drip');
    const t0 = Date.now();
    const dripping = drips.map((f) => rawGet(url('drip', f)).then((r) => ({ ...r, ms: Date.now() - t0 })));
    await new Promise((r) => setTimeout(r, 500));
    const t1 = Date.now();
    const other = await rawGet(url('normal', normal[0]), {}, { localAddress: '127.0.0.2' });
    const otherMs = Date.now() - t1;
    expect(other.status).toBe(200);
    expect(other.complete).toBe(true);
    expect(other.body.equals(normal[0].bytes)).toBe(true);
    expect(otherMs).toBeLessThan(1000);
    const done = await Promise.all(dripping);
    // None completes; the first 16 are cut after one window, the rest wait for the client's own slots (or get a 429).
    expect(done.every((r) => !(r.status === 200 && r.complete))).toBe(true);
    const slowest = Math.max(...done.map((r) => r.ms));
    expect(slowest).toBeLessThan(20_000);
    await a.airlock.cache.idle();
    expect(a.airlock.cache.inflightCount()).toBe(0);
    console.log(
      `starvation: other client's 80 KB pull answered in ${otherMs} ms beside 64 dripping downloads; all 64 cut within ${(slowest / 1000).toFixed(1)} s`,
    );
  }, 60_000);

  it('a client that opens 60 cold pulls and hangs up: its downloads are cancelled, and another client is not held', async () => {
    index.throttle = 4 << 20;
    try {
      const t0 = Date.now();
      const gone = bigs.map((f) => rawGet(url('big', f), {}, { hangUpAfterMs: 300 }));
      await new Promise((r) => setTimeout(r, 400));
      const t1 = Date.now();
      const other = await rawGet(url('normal', normal[1]), {}, { localAddress: '127.0.0.2' });
      const otherMs = Date.now() - t1;
      expect(other.status).toBe(200);
      expect(other.body.equals(normal[1].bytes)).toBe(true);
      // ~220 ms on a quiet machine; the bound leaves room for a loaded one (the finding was 14.7 s).
      expect(otherMs).toBeLessThan(2000);
      await Promise.all(gone);
      // Within the grace (0.5 s) after the hang-up, nothing is downloading for nobody.
      let waited = 0;
      while (a.airlock.cache.inflightCount() > 0 && waited < 3000) {
        await new Promise((r) => setTimeout(r, 50));
        waited += 50;
      }
      const cancelledMs = Date.now() - t0;
      expect(a.airlock.cache.inflightCount()).toBe(0);
      await a.airlock.cache.idle();
      for (const f of bigs) expect(await a.airlock.meta.getBlob(sha(f.bytes))).toBeNull();
      const rows = (await records(a, 'name=big&limit=1000')) as { decision: string; reason: string }[];
      expect(rows).toHaveLength(60);
      expect(rows.every((r) => /client closed the connection early|left while waiting/.test(r.reason))).toBe(true);
      console.log(
        `hang-up: 60 cold pulls abandoned after 0.3 s; another client's pull answered in ${otherMs} ms; no download left running ${(cancelledMs / 1000).toFixed(1)} s after the start`,
      );
    } finally {
      index.throttle = 0;
    }
  }, 60_000);
});

describe('fault suite: a busy upstream host is not a failing one', () => {
  const index = new FakeIndex();
  let proxy: FaultProxy;
  let a: TestAirlock;
  // 70 large files (over transfers.small_bytes, shrunk here to keep the test's memory small) and small ones, on one host.
  const larges = Array.from({ length: 70 }, (_, i) => ({ filename: `large-1.${i}-py3-none-any.whl`, bytes: randomBytes(512 * 1024) }));
  const smalls = Array.from({ length: 2 }, (_, i) => ({ filename: `small-1.${i}-py3-none-any.whl`, bytes: randomBytes(20_000) }));
  const others = Array.from({ length: 2 }, (_, i) => ({ filename: `other-1.${i}-py3-none-any.whl`, bytes: randomBytes(20_000) }));

  beforeAll(async () => {
    await index.start();
    for (const f of larges) index.add('large', f);
    for (const f of smalls) index.add('small', f);
    for (const f of others) index.add('other', f);
    proxy = await new FaultProxy(index.base).start();
    proxy.rewrite.set(`127.0.0.1:${index.port}`, proxy.host);
    a = await startAirlock(`
transfers:
  min_rate: 32768
  rate_window: 4
  abandon_after: 0.5
  finish_bytes: 0
  small_bytes: 100000
pypi:
  upstream: ${proxy.url}/simple/
  file_hosts: ["${proxy.host}"]
  timeout: 2
policy:
  pypi:
    allow: [{ name: large }, { name: small }, { name: other }]
`);
    for (const p of ['large', 'small']) expect((await rawGet(`${a.url}/pypi/simple/${p}/`)).status).toBe(200);
  });

  afterAll(async () => {
    await a?.stop();
    await proxy?.stop();
    await index.stop();
  });

  const url = (project: string, f: { filename: string }) => `${a.url}/pypi/files/${project}/${f.filename}`;

  /**
   * 70 cold pulls of large files from 70 client addresses (so transfers.per_client does not
   * apply) fill the host's connections; another client asks for a page not yet cached and a small
   * file on the same host. The finding: no answer for 58 s, then 502, then the breaker opened.
   */
  async function underLoad(variant: string, small: { filename: string }, other: { filename: string }): Promise<void> {
    const t0 = Date.now();
    const load = larges.map((f, i) => rawGet(url('large', f), {}, { localAddress: `127.0.1.${i + 1}`, hangUpAfterMs: 6000 }));
    const queued = async (cls: string) =>
      (await a.airlock.metrics.upstreamQueued.get()).values.find((v) => v.labels.host === proxy.host && v.labels.class === cls)?.value;
    const held = async (cls: string) =>
      (await a.airlock.metrics.upstreamConnections.get()).values.find((v) => v.labels.host === proxy.host && v.labels.class === cls)?.value;
    // Once all 70 have reached the host: its large connections are all taken, the rest wait their turn.
    for (let i = 0; i < 60 && ((await held('large')) ?? 0) + ((await queued('large')) ?? 0) < 70; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await held('large')).toBe(48);
    expect(await queued('large')).toBe(22);
    const timed = async (u: string) => {
      const t = Date.now();
      const r = await rawGet(u, {}, { localAddress: '127.0.0.2' });
      return { ...r, ms: Date.now() - t };
    };
    const page = await timed(`${a.url}/pypi/simple/other/`);
    expect(page.status).toBe(200);
    expect(page.ms).toBeLessThan(1000);
    const file = await timed(url('small', small));
    expect(file.status).toBe(200);
    expect(file.body.equals(smalls.find((s) => s.filename === small.filename)!.bytes)).toBe(true);
    expect(file.ms).toBeLessThan(1000);
    const second = await timed(url('other', other));
    expect(second.status).toBe(200);
    expect(second.ms).toBeLessThan(1000);
    const done = await Promise.all(load);
    // Nothing failed for being made to wait: no large pull was answered with an error status.
    expect(done.filter((r) => r.status >= 400)).toEqual([]);
    let waited = 0;
    while (a.airlock.cache.inflightCount() > 0 && waited < 5000) {
      await new Promise((r) => setTimeout(r, 50));
      waited += 50;
    }
    expect(a.airlock.cache.inflightCount()).toBe(0);
    // The host answered everything it was asked: its breaker is closed.
    expect(a.airlock.failingUpstreams()).toEqual([]);
    const waits = (await a.airlock.metrics.upstreamQueueWait.get()).values.find(
      (v) => v.labels.host === proxy.host && v.labels.class === 'small' && v.metricName === 'airlock_upstream_queue_seconds_count',
    );
    expect(waits?.value).toBeGreaterThan(0);
    console.log(
      `busy host (${variant}): 70 large pulls from 70 clients, 48 downloading and 22 queued; another client's page in ${page.ms} ms, small file in ${file.ms} ms and ${second.ms} ms; breaker closed; all cleaned up ${((Date.now() - t0) / 1000).toFixed(1)} s after the start`,
    );
  }

  it('70 slow (64 KiB/s) large downloads from 70 clients: another client gets a page and a small file within 1 s, the breaker stays closed', async () => {
    index.throttle = 64 * 1024;
    try {
      await underLoad('slow', smalls[0], others[0]);
    } finally {
      index.throttle = 0;
    }
  }, 30_000);

  it('70 dripping large downloads from 70 clients: the same', async () => {
    for (const f of larges) proxy.inject(f.filename, 'drip');
    try {
      await underLoad('drip', smalls[1], others[1]);
    } finally {
      proxy.clear();
    }
  }, 30_000);
});

describe('fault suite: a full disk fails closed', () => {
  const index = new FakeIndex();
  let a: TestAirlock;
  let mnt: string;
  const warm = { filename: 'disk-1.0-py3-none-any.whl', bytes: randomBytes(1 << 20) };
  const cold = { filename: 'disk-2.0-py3-none-any.whl', bytes: randomBytes(2 << 20) };
  const later = { filename: 'disk-3.0-py3-none-any.whl', bytes: randomBytes(1 << 20) };

  beforeAll(async () => {
    // A small tmpfs as the data directory (CI runs as root).
    mnt = mkdtempSync(join(tmpdir(), 'airlock-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt]);
    await index.start();
    for (const f of [warm, cold, later]) index.add('disk', f);
    // No free-space reserve here: this is the disk filled to the last byte (the reserve is the next suite).
    a = await startAirlock(
      `cache:\n  min_free_bytes: 0\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow: [{ name: disk }]\n`,
      { dataDir: join(mnt, 'data') },
    );
  });

  afterAll(async () => {
    await a?.stop();
    await index.stop();
    if (mnt) execFileSync('umount', ['-l', mnt]);
  });

  const url = (f: { filename: string }) => `${a.url}/pypi/files/disk/${f.filename}`;

  it('with no space left nothing is served off the record or cached half-written; health turns red, then recovers', async () => {
    const w = await rawGet(url(warm));
    expect(w.complete && w.body.equals(warm.bytes)).toBe(true);
    await a.airlock.recorder.flush();
    // Fill the disk to the last byte.
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    const block = Buffer.alloc(1 << 16);
    try {
      for (;;) writeSync(fd, block);
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    try {
      for (;;) writeSync(fd, block.subarray(0, 512));
    } catch {
      /* every byte taken */
    }
    closeSync(fd);
    const rowsBefore = (await a.airlock.meta.listPulls({ limit: 1000 })).length;

    // Warm: either its record is written and it is served, or it is withheld; never served off the record.
    const w2 = await rawGet(url(warm));
    await a.airlock.recorder.flush().catch(() => {});
    const rowsAfterWarm = (await a.airlock.meta.listPulls({ limit: 1000 })).length;
    if (w2.status === 200 && w2.complete) expect(rowsAfterWarm).toBe(rowsBefore + 1);
    // Cold: the spool cannot be written; nothing is cached, nothing half-written is left.
    const c = await rawGet(url(cold));
    expect(c.status === 200 && c.complete).toBe(false);
    await a.airlock.cache.idle();
    expect(await a.airlock.meta.getBlob(sha(cold.bytes))).toBeNull();
    expect(readdirSync(join(mnt, 'data', 'spool'))).toEqual([]);
    const health = await fetch(`${a.url}/-/healthz`);
    const warmServed = w2.status === 200 && w2.complete;
    console.log(
      `full disk: warm pull ${warmServed ? 'served (its record written)' : `withheld (status ${w2.status}, ${w2.body.length} of ${warm.bytes.length} bytes)`}; cold pull ${c.status} ${c.complete ? 'complete' : 'refused or cut'}; health ${health.status}`,
    );
    if (a.airlock.recorder.health()) expect(health.status).toBe(503);

    // Space again: pulls work, health is green once a record is written, the chain holds.
    rmSync(filler);
    const l = await rawGet(url(later));
    expect(l.status).toBe(200);
    expect(l.complete && l.body.equals(later.bytes)).toBe(true);
    const c2 = await rawGet(url(cold));
    expect(c2.complete && c2.body.equals(cold.bytes)).toBe(true);
    await a.airlock.recorder.flush();
    expect((await fetch(`${a.url}/-/healthz`)).status).toBe(200);
    expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
  }, 60_000);
});

describe('fault suite: disk pressure in order (cache.min_free_bytes): cache first, then new fills refused, the record last', () => {
  const index = new FakeIndex();
  let a: TestAirlock;
  let mnt: string;
  const MiB = 1 << 20;
  const RESERVE = 12 * MiB;
  const wheel = (name: string, size: number) => ({ filename: `${name}-1.0-py3-none-any.whl`, bytes: randomBytes(size) });
  const old = [0, 1, 2, 3].map((i) => wheel(`old${i}`, 2 * MiB));
  const fresh = wheel('fresh', 3 * MiB);
  const warm = wheel('warm', 1 * MiB);
  const cold = wheel('cold', 2 * MiB);
  const reg = new FakeRegistry();
  const layer = randomBytes(2 * MiB);
  const image = makeImage([layer]);
  const free = () => {
    const s = statfsSync(mnt);
    return s.bavail * s.bsize;
  };
  /** Take the disk down to `left` free bytes with a file that is neither cache nor record (replacing the last one). */
  const fillTo = (left: number) => {
    rmSync(join(mnt, 'filler'), { force: true });
    writeFileSync(join(mnt, 'filler'), Buffer.alloc(free() - left));
  };

  beforeAll(async () => {
    mnt = mkdtempSync(join(tmpdir(), 'airlock-reserve-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mnt]);
    await index.start();
    for (const f of [...old, fresh, warm, cold]) index.add(f.filename.split('-')[0], f);
    const names = [...old, fresh, warm, cold].map((f) => `{ name: ${f.filename.split('-')[0]} }`).join(', ');
    reg.auth = false;
    reg.redirectBlobs = false;
    await reg.start();
    reg.push('team/app', image, 'v1');
    a = await startAirlock(
      `cache:\n  min_free_bytes: ${RESERVE}\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\n` +
        `oci:\n  default_registry: reg.test\n  registries:\n    reg.test:\n      url: ${reg.url}\n` +
        `policy:\n  pypi:\n    allow: [${names}]\n  oci:\n    allow: [{ repository: reg.test/team/app, digests: ["${image.digest}"] }]\n`,
      { dataDir: join(mnt, 'data') },
    );
  });

  afterAll(async () => {
    await a?.stop();
    await index.stop();
    await reg.stop();
    if (mnt) execFileSync('umount', ['-l', mnt]);
  });

  const url = (f: { filename: string }) => `${a.url}/pypi/files/${f.filename.split('-')[0]}/${f.filename}`;
  const cached = async (f: { bytes: Buffer }) => (await a.airlock.meta.getBlob(sha(f.bytes))) !== null;
  const pull = async (f: { bytes: Buffer; filename: string }) => {
    const r = await rawGet(url(f));
    expect(r.status, f.filename).toBe(200);
    expect(r.complete && sha(r.body) === sha(f.bytes)).toBe(true);
    return r.headers['x-airlock-cache'];
  };

  it('a full disk with a cache to evict keeps serving new fills: the least recently used blobs are evicted, the new one is served verified', async () => {
    for (const f of old) {
      expect(await pull(f)).toBe('miss');
      await new Promise((r) => setTimeout(r, 5));
    }
    await a.airlock.cache.idle();
    // old[0] used again: old[1] and old[2] are now the least recently used.
    expect(await pull(old[0])).toBe('hit');
    await a.airlock.cache.flushUses();
    // 1 MiB above the reserve: the 3 MiB wheel needs 2 MiB more (the cache frees 2 MiB and a tenth of the reserve).
    fillTo(RESERVE + MiB);
    expect(await pull(fresh)).toBe('miss');
    await a.airlock.cache.idle();
    expect(await cached(fresh)).toBe(true);
    expect([await cached(old[1]), await cached(old[2])]).toEqual([false, false]);
    expect([await cached(old[0]), await cached(old[3])]).toEqual([true, true]);
    expect(free()).toBeGreaterThanOrEqual(RESERVE);
    const rows = await records(a, 'limit=10');
    expect(rows[0]).toMatchObject({ name: 'fresh', decision: 'allow' });
    expect(await (await fetch(`${a.url}/-/metrics`)).text()).toMatch(/^airlock_cache_evictions_total 2$/m);
  }, 60_000);

  it('a full disk with nothing evictable refuses a new fill (503, a disk_reserve row, a metric) and still serves a warm hit; the record is written throughout', async () => {
    expect(await pull(warm)).toBe('miss');
    expect((await rawGet(`${a.url}/v2/reg.test/team/app/manifests/${image.digest}`, { accept: ACCEPT })).status).toBe(200);
    await a.airlock.cache.idle();
    // 4.5 MiB free: the 2 MiB wheel would need 9.5 MiB more, and the cache holds 8 (old[0], old[3], fresh, warm).
    // Above the record's own reserve (3 MiB), so the cache is not given up for nothing.
    fillTo(RESERVE - 7.5 * MiB);
    const c = await rawGet(url(cold));
    expect(c.status).toBe(503);
    expect(c.body.toString()).toMatch(/cache\.min_free_bytes/);
    expect(await cached(cold)).toBe(false);
    expect(readdirSync(join(mnt, 'data', 'spool'))).toEqual([]);
    // Warm hits are still served, each with its row.
    expect(await pull(warm)).toBe('hit');
    expect(await pull(old[3])).toBe('hit');
    const rows = await records(a, 'limit=10');
    expect(rows[2]).toMatchObject({ name: 'cold', decision: 'error', code: 'disk_reserve' });
    expect(rows[1]).toMatchObject({ name: 'warm', decision: 'allow', cache: 'hit' });
    expect(rows[0]).toMatchObject({ name: 'old3', decision: 'allow', cache: 'hit' });
    for (const f of [old[0], old[3], fresh, warm]) expect(await cached(f)).toBe(true);
    // The same on OCI, in its own error format.
    const blob = await rawGet(`${a.url}/v2/reg.test/team/app/blobs/${digestOf(layer)}`);
    expect(blob.status).toBe(503);
    expect(JSON.parse(blob.body.toString()).errors[0].message).toMatch(/cache\.min_free_bytes/);
    expect((await records(a, 'limit=1'))[0]).toMatchObject({ ecosystem: 'oci', decision: 'error', code: 'disk_reserve' });
    expect(await (await fetch(`${a.url}/-/metrics`)).text()).toMatch(/^airlock_fills_refused_disk_total 2$/m);
    const ready = await (await fetch(`${a.url}/-/readyz`)).json();
    expect(ready.status).toBe('ready');
    expect(ready.warnings.join('\n')).toMatch(/below cache\.min_free_bytes/);
    // Space again: the cold wheel fills, readiness is clear once measured.
    rmSync(join(mnt, 'filler'));
    expect(await pull(cold)).toBe('miss');
    expect((await (await fetch(`${a.url}/-/readyz`)).json()).warnings).toBeUndefined();
    await a.airlock.recorder.flush();
    expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
  }, 60_000);
});

describe('fault suite: kill -9 during fills and a burst', () => {
  const index = new FakeIndex();
  let dir: string;
  let config: string;
  const files = Array.from({ length: 5 }, (_, i) => ({ filename: `crash-1.${i}-py3-none-any.whl`, bytes: randomBytes(4 << 20) }));
  const hot = { filename: 'crash-2.0-py3-none-any.whl', bytes: randomBytes(1 << 20) };

  const serve = (file = config) => serveProcess(file);

  beforeAll(async () => {
    await index.start();
    for (const f of [...files, hot]) index.add('crash', f);
    dir = mkdtempSync(join(tmpdir(), 'airlock-crash-'));
    config = join(dir, 'airlock.yaml');
    writeFileSync(
      config,
      `listen: 127.0.0.1:0\ndata_dir: ${join(dir, 'data')}\nauth: { admin: open }\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow: [{ name: crash }]\n`,
    );
  });

  afterAll(async () => {
    await index.stop();
  });

  it('leaves no bad blob and a chain that verifies; every file pulls correctly after the restart', async () => {
    const at = (port: number, f: { filename: string }) => `http://127.0.0.1:${port}/pypi/files/crash/${f.filename}`;
    const first = await serve();
    try {
      expect((await rawGet(at(first.port, hot))).complete).toBe(true);
      index.throttle = 2 << 20;
      // Five cold fills under way, and a burst of warm pulls with their records being written.
      const inflight = [
        ...files.map((f) => rawGet(at(first.port, f)).catch(() => null)),
        ...Array.from({ length: 40 }, () => rawGet(at(first.port, hot)).catch(() => null)),
      ];
      await new Promise((r) => setTimeout(r, 800));
      first.proc.kill('SIGKILL');
      await Promise.all(inflight);
    } finally {
      index.throttle = 0;
      first.proc.kill('SIGKILL');
    }
    const second = await serve();
    try {
      expect(readdirSync(join(dir, 'data', 'spool'))).toEqual([]);
      const store = await airlockCli(['store', 'verify', '--config', config]);
      expect(store.stdout).toMatch(/0 do not match their digest, 0 missing/);
      expect(store.code).toBe(0);
      const audit = await airlockCli(['audit', 'verify', '--config', config]);
      expect(audit.code).toBe(0);
      for (const f of [...files, hot]) {
        const r = await rawGet(at(second.port, f));
        expect(r.status).toBe(200);
        expect(r.complete && r.body.equals(f.bytes)).toBe(true);
      }
    } finally {
      second.proc.kill('SIGTERM');
      await once(second.proc, 'exit');
    }
  }, 90_000);

  it('on SIGTERM stops accepting, lets a transfer finish within the grace, cuts one that would not, and exits cleanly', async () => {
    const run = async (grace: number) => {
      const file = join(dir, `grace-${grace}.yaml`);
      writeFileSync(
        file,
        `listen: 127.0.0.1:0\ndata_dir: ${join(dir, `grace-${grace}`)}\nshutdown_grace: ${grace}\nauth: { admin: open }\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow: [{ name: crash }]\n`,
      );
      const srv = await serve(file);
      const u = `http://127.0.0.1:${srv.port}/pypi/files/crash/${files[0].filename}`;
      expect((await rawGet(`http://127.0.0.1:${srv.port}/-/readyz`)).status).toBe(200);
      index.throttle = 4 << 20; // 4 MiB: about 1 s
      try {
        const transfer = rawGet(u);
        await new Promise((r) => setTimeout(r, 300));
        srv.proc.kill('SIGTERM');
        // Once the signal is handled, new connections are refused (polled: a loaded machine takes a moment).
        let late = 'answered';
        for (let i = 0; i < 60 && late === 'answered'; i++) {
          late = await rawGet(`http://127.0.0.1:${srv.port}/-/healthz`).then(
            () => 'answered',
            () => 'refused',
          );
          if (late === 'answered') await new Promise((r) => setTimeout(r, 50));
        }
        const r = await transfer;
        const [code] = await once(srv.proc, 'exit');
        return { r, late, code, spool: readdirSync(join(dir, `grace-${grace}`, 'spool')) };
      } finally {
        index.throttle = 0;
      }
    };
    const patient = await run(5);
    expect(patient.late).toBe('refused');
    expect(patient.r.complete && patient.r.body.equals(files[0].bytes)).toBe(true);
    expect(patient.code).toBe(0);
    const hasty = await run(0.2);
    expect(hasty.r.complete).toBe(false);
    expect(hasty.code).toBe(0);
    expect(hasty.spool).toEqual([]);
  }, 60_000);
});
