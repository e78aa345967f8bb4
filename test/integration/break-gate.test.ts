/**
 * Attacks on e82aa80 (the image gate answers a manifest once each layer is verified and read, not
 * after the layer's commit; the client's layer request then joins the committing fill). Real
 * Airlock servers on loopback, a fake registry, real stores; the commit is held (or failed) at
 * each of its steps by wrapping the server's own blob store and index.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { get } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeRegistry, digestOf, makeImage, type Image } from '../helpers/fake-registry.js';
import { rawGet, records } from '../helpers/http.js';
import { debianBase, layerOf } from '../helpers/layers.js';
import { startPostgres } from '../helpers/postgres.js';
import { startS3 } from '../helpers/s3.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
  cleanup = [];
});

async function registry(): Promise<FakeRegistry> {
  const reg = new FakeRegistry();
  await reg.start();
  cleanup.push(() => reg.stop());
  return reg;
}

/** team/ok passes the gate (unjudged allowed), team/bad is refused by it (a Debian image, no advisories imported). */
async function gated(reg: FakeRegistry, pins: { ok?: Image; bad?: Image }, extra = '', opts: { dataDir?: string; keep?: boolean } = {}): Promise<TestAirlock> {
  const allow: string[] = [];
  if (pins.ok) allow.push(`      - repository: reg.test/team/ok\n        digests: ["${pins.ok.digest}"]`);
  if (pins.bad) allow.push(`      - repository: reg.test/team/bad\n        digests: ["${pins.bad.digest}"]`);
  const a = await startAirlock(
    `oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
${extra}
records:
  fold_window_seconds: 0
  refusal_limit: { per_second: 0 }
policy:
  advisories:
    refuse: critical
    images:
      repositories:
        - repository: reg.test/team/ok
          unjudged: allow
        - repository: reg.test/team/bad
          unjudged: refuse
  oci:
    allow:
${allow.join('\n')}
`,
    opts,
  );
  if (!opts.keep) cleanup.push(() => a.stop());
  return a;
}

/** A Debian layer with `mib` MiB of incompressible bytes beside it (large enough to sit in socket buffers). */
function image(mib: number, tag: string): Image {
  return makeImage([layerOf(debianBase({ 'opt/blob.bin': randomBytes(mib << 20), 'etc/motd': `${tag}\n` }), 'none')]);
}

type Step = 'putFile' | 'putChunks' | 'afterPutBlob';

/**
 * Hold the commit of `hex` at one of its steps: before the rename into the store (putFile), after
 * the rename before the chunk list (putChunks), or after the blob row is written (afterPutBlob,
 * before the fill is forgotten). `go()` lets it go; `go(err)` makes that step throw instead.
 */
function holdCommit(a: TestAirlock, hex: string, step: Step) {
  const store = a.airlock.cache.store as unknown as Record<string, (...x: unknown[]) => Promise<unknown>>;
  const meta = a.airlock.cache.meta as unknown as Record<string, (...x: unknown[]) => Promise<unknown>>;
  let go!: (e?: Error) => void;
  const released = new Promise<Error | undefined>((r) => (go = r));
  const state = { reached: false, done: false };
  const wrap = (obj: Record<string, (...x: unknown[]) => Promise<unknown>>, name: string, after: boolean) => {
    const orig = obj[name].bind(obj);
    obj[name] = async (...args: unknown[]) => {
      const sha = typeof args[0] === 'string' ? args[0] : (args[0] as { sha256: string }).sha256;
      // The first commit of the blob only: a later fill's commit goes through.
      if (sha !== hex || state.reached) return orig(...args);
      if (after) await orig(...args);
      state.reached = true;
      const err = await released;
      if (err) throw err;
      const r = after ? undefined : await orig(...args);
      state.done = true;
      return r;
    };
  };
  if (step === 'putFile') wrap(store, 'putFile', false);
  else if (step === 'putChunks') wrap(meta, 'putChunks', false);
  else wrap(meta, 'putBlob', true);
  return { state, go };
}

const until = async (what: () => Promise<boolean> | boolean, ms = 30_000) => {
  const t = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > t) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const spoolFiles = (a: TestAirlock) => readdirSync(a.airlock.cache.store.spoolDir);
/** Files of the blob store or its spool this process still holds open (a spool file removed while open shows as "(deleted)"). */
const openFiles = (a: TestAirlock): string[] => {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let to: string;
    try {
      to = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (to.startsWith(a.airlock.cache.store.spoolDir) || (to.startsWith(a.dir) && !/\.db(-wal|-shm)?$/.test(to))) out.push(to);
  }
  return out;
};
/**
 * openFiles once the closes under way are over: a fill's spool descriptor is closed without being
 * awaited as its commit ends (Fill.maybeClose), so it may still be open for a moment after idle().
 */
async function openFilesSettled(a: TestAirlock): Promise<string[]> {
  const t = Date.now() + 5000;
  let left = openFiles(a);
  while (left.length && Date.now() < t) {
    await new Promise((r) => setTimeout(r, 25));
    left = openFiles(a);
  }
  return left;
}
const upstreamFetches = (reg: FakeRegistry, d: string) => reg.count(`blob:${d}`);

describe('the image gate answers at verification; the layer request joins the committing fill', () => {
  for (const step of ['putFile', 'putChunks', 'afterPutBlob'] as Step[]) {
    it(`a layer asked for while the commit waits at ${step}: whole GET, ranges and HEAD get exactly the verified bytes; one upstream fetch; nothing left behind`, async () => {
      const reg = await registry();
      const img = image(4, step);
      reg.push('team/ok', img);
      const a = await gated(reg, { ok: img });
      const layer = img.layers[0];
      const ld = digestOf(layer);
      const hex = ld.slice(7);
      const hold = holdCommit(a, hex, step);
      const m = await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } });
      expect(m.status).toBe(200);
      expect(Buffer.from(await m.arrayBuffer()).equals(img.manifest)).toBe(true);
      // Judged and stored for verified bytes before the commit is over.
      expect(await a.airlock.meta.inventories.getInventory(img.digest)).not.toBeNull();
      expect(await a.airlock.meta.inventories.getLayerFacts(hex)).not.toBeNull();
      await until(() => hold.state.reached);
      expect(hold.state.done).toBe(false);
      const base = `${a.url}/v2/team/ok/blobs/${ld}`;
      const head = await fetch(base, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(layer.length));
      const [whole, whole2, r1, r2, r3] = await Promise.all([
        rawGet(base),
        rawGet(base),
        rawGet(base, { range: 'bytes=0-9' }),
        rawGet(base, { range: `bytes=${layer.length - 100}-` }),
        rawGet(base, { range: 'bytes=-5000' }),
      ]);
      for (const w of [whole, whole2]) {
        expect(w.status).toBe(200);
        expect(w.complete).toBe(true);
        expect(w.body.equals(layer)).toBe(true);
      }
      expect([r1.status, r2.status, r3.status]).toEqual([206, 206, 206]);
      expect(r1.body.equals(layer.subarray(0, 10))).toBe(true);
      expect(r2.body.equals(layer.subarray(layer.length - 100))).toBe(true);
      expect(r3.body.equals(layer.subarray(layer.length - 5000))).toBe(true);
      expect(r2.headers['content-range']).toBe(`bytes ${layer.length - 100}-${layer.length - 1}/${layer.length}`);
      expect(hold.state.done).toBe(false);
      hold.go();
      await a.airlock.cache.idle();
      expect(hold.state.done).toBe(true);
      expect(a.airlock.cache.inflightCount()).toBe(0);
      expect(spoolFiles(a)).toEqual([]);
      expect(await openFilesSettled(a)).toEqual([]);
      expect(await a.airlock.cache.cachedSize(hex)).toBe(layer.length);
      const hit = await rawGet(base);
      expect(hit.headers['x-airlock-cache']).toBe('hit');
      expect(hit.body.equals(layer)).toBe(true);
      expect(upstreamFetches(reg, ld)).toBe(1);
      // Every transfer on record as served.
      const rows = (await records(a)).filter((r: { sha256?: string; filename?: string }) => r.sha256 === hex && r.filename === 'blob');
      expect(rows.map((r: { decision: string }) => r.decision)).toEqual(Array(6).fill('allow'));
    }, 120_000);
  }

  it('a layer request arriving while the gate is still filling the layer (before verification) waits for the verdict and gets the verified bytes', async () => {
    const reg = await registry();
    const img = image(4, 'early');
    reg.push('team/ok', img);
    const a = await gated(reg, { ok: img });
    const layer = img.layers[0];
    const ld = digestOf(layer);
    reg.throttle = 8 << 20; // ~0.6 s for the layer
    try {
      const m = fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } });
      await until(() => a.airlock.cache.inflightCount() > 0);
      const base = `${a.url}/v2/team/ok/blobs/${ld}`;
      const [mr, w, r, h] = await Promise.all([m, rawGet(base), rawGet(base, { range: 'bytes=100-199' }), fetch(base, { method: 'HEAD' })]);
      expect(mr.status).toBe(200);
      expect(w.status).toBe(200);
      expect(w.body.equals(layer)).toBe(true);
      expect(r.status).toBe(206);
      expect(r.body.equals(layer.subarray(100, 200))).toBe(true);
      expect(h.status).toBe(200);
      expect(h.headers.get('content-length')).toBe(String(layer.length));
    } finally {
      reg.throttle = 0;
    }
    await a.airlock.cache.idle();
    expect(upstreamFetches(reg, ld)).toBe(1);
    expect(spoolFiles(a)).toEqual([]);
    expect(await openFilesSettled(a)).toEqual([]);
  }, 120_000);

  it('the commit FAILS (the store throws, as on a full disk) after the manifest was answered: a client reading across the failure gets every byte; the next request fetches again; nothing leaks', async () => {
    const reg = await registry();
    const img = image(12, 'fails');
    reg.push('team/ok', img);
    const a = await gated(reg, { ok: img });
    const layer = img.layers[0];
    const ld = digestOf(layer);
    const hex = ld.slice(7);
    const hold = holdCommit(a, hex, 'putFile');
    expect((await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } })).status).toBe(200);
    await until(() => hold.state.reached);
    // A client that reads its first bytes, then stops reading while the commit fails.
    const base = `${a.url}/v2/team/ok/blobs/${ld}`;
    const got: Buffer[] = [];
    let resume!: () => void;
    const done = new Promise<{ status: number; complete: boolean }>((resolve, reject) => {
      get(base, (res) => {
        res.once('data', (c: Buffer) => {
          got.push(c);
          res.pause();
          resume = () => {
            res.on('data', (d: Buffer) => got.push(d));
            res.resume();
          };
        });
        res.on('end', () => resolve({ status: res.statusCode!, complete: res.complete }));
        res.on('aborted', () => resolve({ status: res.statusCode!, complete: false }));
      }).on('error', reject);
    });
    await until(() => got.length > 0);
    hold.go(Object.assign(new Error('ENOSPC: no space left on device, rename'), { code: 'ENOSPC' }));
    await until(() => a.airlock.cache.inflightCount() === 0);
    resume();
    const r = await done;
    expect(r.status).toBe(200);
    expect(r.complete).toBe(true);
    expect(Buffer.concat(got).equals(layer)).toBe(true);
    // The facts were read from verified bytes: kept, and the image stays judged.
    expect(await a.airlock.meta.inventories.getLayerFacts(hex)).not.toBeNull();
    // The next request fetches it again (or finds it filled again by the background judge's warming, which also saw the commit fail).
    const again = await rawGet(base);
    expect(again.status).toBe(200);
    expect(again.body.equals(layer)).toBe(true);
    await a.airlock.backgroundJudged();
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(hex)).toBe(layer.length);
    expect(upstreamFetches(reg, ld)).toBe(2);
    expect(spoolFiles(a)).toEqual([]);
    expect(await openFilesSettled(a)).toEqual([]);
  }, 120_000);

  it('a store that keeps failing every commit of the layer: every client still gets the verified bytes, and no spool file or descriptor is left behind', async () => {
    const reg = await registry();
    const img = image(6, 'broken-store');
    reg.push('team/ok', img);
    const a = await gated(reg, { ok: img });
    const layer = img.layers[0];
    const ld = digestOf(layer);
    const hex = ld.slice(7);
    const store = a.airlock.cache.store as unknown as { putFile: (sha: string, path: string) => Promise<void> };
    const orig = store.putFile.bind(store);
    let failures = 0;
    store.putFile = async (sha, path) => {
      if (sha !== hex) return orig(sha, path);
      failures++;
      await new Promise((r) => setTimeout(r, 200));
      throw Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
    };
    expect((await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } })).status).toBe(200);
    const base = `${a.url}/v2/team/ok/blobs/${ld}`;
    for (let i = 0; i < 3; i++) {
      const [w, r] = await Promise.all([rawGet(base), rawGet(base, { range: 'bytes=7-1006' })]);
      expect(w.status).toBe(200);
      expect(w.complete && w.body.equals(layer)).toBe(true);
      expect(r.status).toBe(206);
      expect(r.body.equals(layer.subarray(7, 1007))).toBe(true);
    }
    await a.airlock.backgroundJudged();
    await a.airlock.cache.idle();
    expect(failures).toBeGreaterThanOrEqual(2);
    expect(await a.airlock.cache.cachedSize(hex)).toBeUndefined();
    expect(a.airlock.cache.inflightCount()).toBe(0);
    expect(spoolFiles(a)).toEqual([]);
    expect(await openFilesSettled(a)).toEqual([]);
  }, 120_000);

  it('a blob too large to keep (cache.max_file_share) that the gate read: the joined client gets the verified bytes, the spool is left clean', async () => {
    const reg = await registry();
    const img = image(6, 'large');
    reg.push('team/ok', img);
    const a = await gated(reg, { ok: img }, 'cache:\n  max_bytes: 4194304\n');
    const layer = img.layers[0];
    const ld = digestOf(layer);
    const hold = holdCommit(a, ld.slice(7), 'putFile');
    expect((await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } })).status).toBe(200);
    const base = `${a.url}/v2/team/ok/blobs/${ld}`;
    await until(() => hold.state.reached);
    const [w, r] = await Promise.all([rawGet(base), rawGet(base, { range: 'bytes=5-104' })]);
    expect(w.body.equals(layer)).toBe(true);
    expect(r.body.equals(layer.subarray(5, 105))).toBe(true);
    hold.go();
    await a.airlock.cache.idle();
    expect(spoolFiles(a)).toEqual([]);
    expect(await openFilesSettled(a)).toEqual([]);
    expect(a.airlock.cache.inflightCount()).toBe(0);
    const after = await rawGet(base);
    expect(after.body.equals(layer)).toBe(true);
  }, 120_000);

  it('a refused image: its manifest and layer are refused (error format, rows) even while the layer commit is still under way', async () => {
    const reg = await registry();
    const img = image(2, 'refused');
    reg.push('team/bad', img);
    const a = await gated(reg, { bad: img });
    const ld = digestOf(img.layers[0]);
    const hold = holdCommit(a, ld.slice(7), 'putFile');
    const m = await fetch(`${a.url}/v2/team/bad/manifests/${img.digest}`, { headers: { accept: ACCEPT } });
    expect(m.status).toBe(403);
    expect(((await m.json()) as { errors: { code: string }[] }).errors[0].code).toBe('DENIED');
    await until(() => hold.state.reached);
    for (const [method, headers] of [
      ['GET', {}],
      ['HEAD', {}],
      ['GET', { range: 'bytes=0-9' }],
    ] as const) {
      expect((await fetch(`${a.url}/v2/team/bad/blobs/${ld}`, { method, headers })).status, `${method} ${JSON.stringify(headers)}`).toBe(403);
    }
    hold.go();
    await a.airlock.cache.idle();
    const rows = (await records(a)).filter((r: { name?: string }) => r.name === 'reg.test/team/bad');
    expect(rows.filter((r: { decision: string; code?: string }) => r.decision === 'deny' && r.code === 'unjudged').length).toBe(4);
    expect(rows.some((r: { decision: string }) => r.decision === 'allow')).toBe(false);
  }, 120_000);

  it('a tampered layer: no facts, no inventory, no manifest, no layer bytes, nothing in the cache or the spool', async () => {
    const reg = await registry();
    const img = image(2, 'tampered');
    reg.push('team/ok', img);
    const ld = digestOf(img.layers[0]);
    reg.tamper.add(ld);
    const a = await gated(reg, { ok: img });
    const m = await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } });
    expect(m.status).toBeGreaterThanOrEqual(500);
    expect(((await m.json()) as { errors: unknown[] }).errors.length).toBe(1);
    const b = await rawGet(`${a.url}/v2/team/ok/blobs/${ld}`);
    expect(b.status).toBeGreaterThanOrEqual(500);
    expect(b.body.includes(img.layers[0].subarray(0, 512))).toBe(false);
    await a.airlock.cache.idle();
    expect(await a.airlock.meta.inventories.getLayerFacts(ld.slice(7))).toBeNull();
    expect(await a.airlock.meta.inventories.getInventory(img.digest)).toBeNull();
    expect(await a.airlock.cache.cachedSize(ld.slice(7))).toBeUndefined();
    expect(spoolFiles(a)).toEqual([]);
    expect(await openFilesSettled(a)).toEqual([]);
    const rows = (await records(a)).filter((r: { name?: string }) => r.name === 'reg.test/team/ok');
    expect(rows.some((r: { decision: string }) => r.decision === 'allow')).toBe(false);
    expect(rows.length).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('a server stop while a layer commit is held waits for the commit: the layer is in the cache after a restart', async () => {
    const reg = await registry();
    const img = image(2, 'stop');
    reg.push('team/ok', img);
    const a = await gated(reg, { ok: img }, '', { keep: true });
    const ld = digestOf(img.layers[0]);
    const hex = ld.slice(7);
    const hold = holdCommit(a, hex, 'putFile');
    expect((await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } })).status).toBe(200);
    await until(() => hold.state.reached);
    let stopped = false;
    const stopping = a.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 500));
    expect(stopped).toBe(false);
    hold.go();
    await stopping;
    const b = await gated(reg, { ok: img }, '', { dataDir: `${a.dir}/data` });
    expect(await b.airlock.cache.cachedSize(hex)).toBe(img.layers[0].length);
    const before = upstreamFetches(reg, ld);
    const m = await fetch(`${b.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } });
    expect(m.status).toBe(200);
    const w = await rawGet(`${b.url}/v2/team/ok/blobs/${ld}`);
    expect(w.headers['x-airlock-cache']).toBe('hit');
    expect(w.body.equals(img.layers[0])).toBe(true);
    expect(upstreamFetches(reg, ld)).toBe(before);
  }, 120_000);
});

describe('a fill cancelled while its spool file is being created (cache.shutdown: the server stops, `image check` ends)', () => {
  it('leaves no spool file and no open descriptor once shutdown() resolves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-break-gate-'));
    const store = await FsBlobStore.create(dir);
    const meta = new SqliteMetaStore(':memory:');
    const hashes = new HashPool(1);
    cleanup.push(async () => {
      await hashes.close();
      await meta.close();
    });
    const cache = new BlobCache(store, meta, hashes);
    const bytes = randomBytes(1 << 20);
    const hex = createHash('sha256').update(bytes).digest('hex');
    let opened = 0;
    // An upstream that honours the fill's abort signal, as the real ones (HTTP requests) do.
    const open = async (signal: AbortSignal) => {
      if (signal.aborted) throw new Error('aborted');
      opened++;
      return { body: Readable.from([bytes]), size: bytes.length };
    };
    // What the image gate, the background judge and `image check` call: a kept fill nobody reads.
    const ensured = cache.ensure({ sha256: hex, size: bytes.length, open, keep: true });
    ensured.catch(() => {});
    // The fill is registered and its spool file's open() is under way in the thread pool (not yet done).
    while (cache.inflightCount() === 0) await Promise.resolve();
    await cache.shutdown();
    await expect(ensured).rejects.toThrow(/cancelled/);
    // Whatever was under way when shutdown() resolved has had time to land.
    await new Promise((r) => setTimeout(r, 200));
    expect(opened).toBe(0);
    expect(await meta.getBlob(hex)).toBeNull();
    expect(readdirSync(store.spoolDir)).toEqual([]);
    const held = readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/self/fd/${fd}`)];
      } catch {
        return [];
      }
    });
    expect(held.filter((p) => p.startsWith(store.spoolDir))).toEqual([]);
  });
});

describe('a fleet (PostgreSQL, shared S3 store, peers): the gate answers on one replica while its commit is under way, the layer is asked of another', () => {
  for (const fails of [false, true])
    it(`the other replica streams the committing fill, verifies it, and serves exactly the layer; a range waits for its digest${fails ? "; the filler's commit then FAILS: the next request fills again" : '; one upstream fetch; committed once'}`, async () => {
      const reg = await registry();
      const img = image(4, 'fleet');
      reg.push('team/ok', img);
      const [pg, s3] = await Promise.all([startPostgres(), startS3()]);
      cleanup.push(() => pg.stop());
      cleanup.push(() => s3.stop());
      process.env.BREAK_GATE_PG = pg.url;
      process.env.BREAK_GATE_S3_ID = s3.credentials.accessKeyId;
      process.env.BREAK_GATE_S3_SECRET = s3.credentials.secretAccessKey;
      process.env.BREAK_GATE_FLEET = 'break-gate-fleet-secret-0123456789abcdef';
      const storage = `storage:
  meta: postgres
  postgres_url_env: BREAK_GATE_PG
  lease_stale: 2
  peers: { secret_env: BREAK_GATE_FLEET }
  blobs: s3
  s3: { endpoint: "${s3.endpoint}", bucket: ${s3.bucket}, path_style: true, access_key_env: BREAK_GATE_S3_ID, secret_key_env: BREAK_GATE_S3_SECRET }`;
      const layer = img.layers[0];
      const ld = digestOf(layer);
      const hex = ld.slice(7);
      // Replica a fills and verifies the layer (its background judge, or the gate) and holds its commit to the shared store.
      const a = await gated(reg, { ok: img }, storage);
      const hold = holdCommit(a, hex, 'putFile');
      expect((await fetch(`${a.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } })).status).toBe(200);
      await until(() => hold.state.reached);
      const b = await gated(reg, { ok: img }, storage);
      // b judges from the facts a stored (shared), and serves the layer from a's committing fill, verified by b.
      expect((await fetch(`${b.url}/v2/team/ok/manifests/${img.digest}`, { headers: { accept: ACCEPT } })).status).toBe(200);
      expect(await b.airlock.meta.getBlob(hex)).toBeNull();
      const base = `${b.url}/v2/team/ok/blobs/${ld}`;
      const [w, r, h] = await Promise.all([rawGet(base), rawGet(base, { range: 'bytes=1000-1999' }), fetch(base, { method: 'HEAD' })]);
      expect(w.status).toBe(200);
      expect(w.complete && w.body.equals(layer)).toBe(true);
      expect(w.headers['x-airlock-cache']).toBe('join');
      expect(r.status).toBe(206);
      expect(r.body.equals(layer.subarray(1000, 2000))).toBe(true);
      expect(h.headers.get('content-length')).toBe(String(layer.length));
      expect(hold.state.done).toBe(false);
      expect(await b.airlock.meta.getBlob(hex)).toBeNull();
      hold.go(fails ? Object.assign(new Error('SlowDown: the S3 store refused the upload'), { code: 'SlowDown' }) : undefined);
      await a.airlock.cache.idle();
      if (fails) {
        await b.airlock.cache.idle();
        expect(await b.airlock.meta.getBlob(hex)).toBeNull();
        const again = await rawGet(base);
        expect(again.body.equals(layer)).toBe(true);
      }
      await until(async () => (await b.airlock.cache.cachedSize(hex)) === layer.length);
      await b.airlock.backgroundJudged();
      await b.airlock.cache.idle();
      const hit = await rawGet(base);
      expect(hit.headers['x-airlock-cache']).toBe('hit');
      expect(hit.body.equals(layer)).toBe(true);
      expect(upstreamFetches(reg, ld)).toBe(fails ? 2 : 1);
      for (const x of [a, b]) {
        expect(spoolFiles(x)).toEqual([]);
        expect(x.airlock.cache.inflightCount()).toBe(0);
      }
      const rows = (await records(b)).filter((row: { sha256?: string; filename?: string }) => row.sha256 === hex && row.filename === 'blob');
      expect(rows.filter((row: { decision: string }) => row.decision === 'allow').length).toBe(fails ? 4 : 3);
    }, 180_000);
});
