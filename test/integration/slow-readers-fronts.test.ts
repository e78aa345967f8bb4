// timed: its clients are judged by transfers.send_timeout against real time (vitest.config.ts runs it alone).
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hitMemory } from '../../src/core/hit-body.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha256hex } from '../helpers/fake-hub.js';
import { FakeRegistry, digestOf, makeImage } from '../helpers/fake-registry.js';
import { rawGet, rowsOf } from '../helpers/http.js';
import { sleep, Stuck, until } from '../helpers/stuck.js';
import { safetensors, torchZip, hex, R } from '../helpers/model-files.js';

const MiB = 1 << 20;

/** The one row a request left, once there. */
async function rowOf(a: TestAirlock, id: string, ms = 9000): Promise<any[]> {
  let rows: any[] = [];
  await until(async () => (rows = await rowsOf(a, id)).length > 0, ms);
  await sleep(300);
  return rowsOf(a, id);
}

const CUT = /^connection closed by Airlock: the client took none of the bytes sent to it for 2 s/;

describe('stuck clients on the Hugging Face and OCI front-ends', () => {
  const hub = new FakeHub();
  const reg = new FakeRegistry();
  let a: TestAirlock;
  const weights = safetensors({ w: { dtype: 'U8', shape: [24 * MiB + 777], data_offsets: [0, 24 * MiB + 777] } }, randomBytes(24 * MiB + 777));
  const ckpt = torchZip(hex(R.R10), { '0': randomBytes(20 * MiB) });
  const layer = randomBytes(24 * MiB + 4321);
  const img = makeImage([layer]);
  let commit: string;

  beforeAll(async () => {
    await hub.start();
    await reg.start();
    commit = hub.commit('model', 'acme/big', [
      { path: 'model.safetensors', bytes: weights, lfs: true },
      { path: 'pytorch_model.bin', bytes: ckpt, lfs: true },
    ]);
    reg.push('team/app', img, 'v1');
    a = await startAirlock(`
${hfUpstream(hub)}oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
cache:
  scrub_rate: 0
transfers:
  send_timeout: 2
policy:
  hf:
    allow:
      - repo: acme/big
        refs: { main: "${commit}" }
  oci:
    allow:
      - repository: reg.test/team/app
        digests: ["${img.digest}"]
        tags: { v1: "${img.digest}" }
`);
    for (const [p, b] of [
      ['model.safetensors', weights],
      ['pytorch_model.bin', ckpt],
    ] as const) {
      const r = await rawGet(`${a.url}/hf/acme/big/resolve/main/${p}`);
      expect(r.status).toBe(200);
      expect(r.body.equals(b)).toBe(true);
    }
    const m = await fetch(`${a.url}/v2/team/app/manifests/v1`, { headers: { accept: img.mediaType } });
    expect(m.status).toBe(200);
    const l = await rawGet(`${a.url}/v2/team/app/blobs/${digestOf(layer)}`);
    expect(l.status).toBe(200);
    expect(l.body.equals(layer)).toBe(true);
    await a.airlock.cache.idle();
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await hub.stop();
    await reg.stop();
  });

  const hf = (p: string) => `/hf/acme/big/resolve/main/${p}`;

  it('HF safetensors and pickle checkpoints, OCI layers, whole and ranged: stuck clients are closed, recorded, buffers back', async () => {
    expect(await until(() => hitMemory.lent === 0, 5000)).toBe(true);
    const cases = [
      new Stuck(a.port, hf('model.safetensors')),
      new Stuck(a.port, hf('pytorch_model.bin')),
      new Stuck(a.port, hf('model.safetensors'), { range: 'bytes=-20000000' }),
      new Stuck(a.port, hf('model.safetensors'), { range: 'bytes=1000-', 'if-range': `"${sha256hex(weights)}"` }),
      // If-Range that does not hold: the whole file.
      new Stuck(a.port, hf('model.safetensors'), { range: 'bytes=1000-', 'if-range': '"nope"' }),
      new Stuck(a.port, `/v2/team/app/blobs/${digestOf(layer)}`),
      new Stuck(a.port, `/v2/team/app/blobs/${digestOf(layer)}`, { range: 'bytes=-18000000' }),
      new Stuck(a.port, `/v2/team/app/blobs/${digestOf(layer)}`, { range: 'bytes=3-20000000' }),
    ];
    await sleep(500);
    expect(hitMemory.lent).toBeGreaterThan(0);
    for (const s of cases) {
      const rows = await rowOf(a, s.id);
      expect(rows, s.head()).toHaveLength(1);
      expect(rows[0].decision).toBe('allow');
      expect(rows[0].cache).toBe('hit');
      expect(rows[0].reason).toMatch(CUT);
    }
    expect(await until(() => hitMemory.lent === 0, 3000)).toBe(true);
    for (const s of cases) s.resume();
    await Promise.all(cases.map((s) => s.closed));
    for (const s of cases) expect(s.head()).toMatch(/^HTTP\/1.1 20[06]/);
    expect(cases[2].head()).toMatch(/content-range: bytes \d+-\d+\/\d+/i);
    expect(cases[4].head()).toMatch(/^HTTP\/1.1 200/);
  }, 40_000);

  it('HEAD and a Range on the last chunk to a client that reads nothing: answered, one row (GET), nothing lent', async () => {
    const size = weights.length;
    const heads = [new Stuck(a.port, hf('model.safetensors'), {}, 'HEAD'), new Stuck(a.port, `/v2/team/app/blobs/${digestOf(layer)}`, {}, 'HEAD')];
    const last = new Stuck(a.port, hf('model.safetensors'), { range: `bytes=${size - 5000}-` });
    await sleep(3000);
    expect(hitMemory.lent).toBe(0);
    for (const s of [...heads, last]) s.resume();
    await Promise.all([...heads, last].map((s) => s.closed));
    for (const h of heads) expect(h.head()).toMatch(/^HTTP\/1.1 200/);
    expect(last.head()).toMatch(/^HTTP\/1.1 206/);
    expect(last.body().equals(weights.subarray(size - 5000))).toBe(true);
    const rows = await rowOf(a, last.id);
    expect(rows).toHaveLength(1);
    expect(rows[0].reason ?? null).toBe(null);
    for (const h of heads) expect(await rowsOf(a, h.id)).toHaveLength(0);
  }, 20_000);

  it('keep-alive: a client that reads one response whole, then asks again and stops reading, is closed and recorded', async () => {
    for (const path of [hf('model.safetensors'), `/v2/team/app/blobs/${digestOf(layer)}`]) {
      // The first response is a 1 MiB range: read whole at loopback speed, the whole file let the kernel grow the client's
      // receive buffer (tcp_rmem's max is 32 MiB here) until the paused client's buffers took all of the second response.
      const want = (path.startsWith('/hf') ? weights : layer).subarray(0, MiB);
      const s = connect(a.port, '127.0.0.1');
      s.on('error', () => {});
      const got: Buffer[] = [];
      let n = 0;
      const first = randomUUID();
      const second = randomUUID();
      let h = -1;
      let paused = false;
      const whole = new Promise<void>((r) =>
        s.on('data', (b: Buffer) => {
          got.push(b);
          n += b.length;
          if (h < 0) h = Buffer.concat(got).indexOf('\r\n\r\n');
          if (!paused && h >= 0 && n - h - 4 >= want.length) {
            paused = true;
            s.pause();
            r();
          }
        }),
      );
      const closed = new Promise((r) => s.once('close', r));
      s.write(`GET ${path} HTTP/1.1\r\nHost: airlock\r\nX-Request-Id: ${first}\r\nRange: bytes=0-${MiB - 1}\r\n\r\n`);
      await whole;
      const all = Buffer.concat(got);
      expect(all.subarray(all.indexOf('\r\n\r\n') + 4).equals(want)).toBe(true);
      s.write(`GET ${path} HTTP/1.1\r\nHost: airlock\r\nX-Request-Id: ${second}\r\n\r\n`);
      const rows = await rowOf(a, second);
      expect(rows).toHaveLength(1);
      expect(rows[0].reason).toMatch(CUT);
      expect((await rowsOf(a, first))[0].reason ?? null).toBe(null);
      expect(await until(() => hitMemory.lent === 0, 3000)).toBe(true);
      s.resume();
      await closed;
    }
  }, 40_000);
});

describe('a client stuck in the last bytes of its transfer', () => {
  const reg = new FakeRegistry();
  let a: TestAirlock;
  const layer = randomBytes(24 * MiB + 4321);
  const img = makeImage([layer]);
  beforeAll(async () => {
    await reg.start();
    reg.push('team/app', img, 'v1');
    a = await startAirlock(`
oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
cache:
  scrub_rate: 0
transfers:
  send_timeout: 2
policy:
  oci:
    allow:
      - repository: reg.test/team/app
        tags: { v1: "${img.digest}" }
`);
    await fetch(`${a.url}/v2/team/app/manifests/v1`, { headers: { accept: img.mediaType } });
    expect((await rawGet(`${a.url}/v2/team/app/blobs/${digestOf(layer)}`)).body.equals(layer)).toBe(true);
    await a.airlock.cache.idle();
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  it('is closed by Airlock after send_timeout and keeps the served row committed before its last bytes (the one exception to the closed-by-Airlock row)', async () => {
    const p = `/v2/team/app/blobs/${digestOf(layer)}`;
    // How much a client that reads nothing takes in (loopback's socket buffers): what it has once cut.
    const probe = new Stuck(a.port, p);
    await sleep(3500);
    probe.resume();
    await probe.closed;
    const k = probe.body().length;
    expect(k).toBeLessThan(layer.length - 2 * MiB);
    // Ranges whose last chunk holds the point where such a client sticks: mid-chunk, 256 KiB before the
    // range's end. Airlock has committed the served row before it wrote that chunk (the last bytes wait
    // for it), then the client takes none of it for send_timeout and Airlock closes the connection.
    const start = (((MiB / 2 - (k % MiB)) % MiB) + MiB) % MiB;
    const len = k + (256 << 10);
    const clients = Array.from({ length: 3 }, () => new Stuck(a.port, p, { range: `bytes=${start}-${start + len - 1}` }));
    await sleep(4000);
    for (const c of clients) c.resume();
    await Promise.all(clients.map((c) => c.closed));
    for (const c of clients) {
      expect(c.head()).toMatch(/^HTTP\/1.1 206/);
      // Cut: the client never had the whole range.
      expect(c.body().length).toBeLessThan(len);
      // Its row was committed before the chunk holding its last bytes was written (no client has
      // those before the record does), and the record is append-only: one row, served, no second
      // one for the cut (it would count the pull twice). The cut is in the server's log.
      const rows = await rowsOf(a, c.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ decision: 'allow', cache: 'hit' });
      expect(rows[0].reason ?? '').not.toMatch(CUT);
    }
  }, 60_000);
});
