import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { HOLD_BACK, type FillBudget } from '../../src/core/fill.js';
import { BlobCache } from '../../src/core/cache.js';
import { HashPool } from '../../src/core/hasher.js';
import { HitBody } from '../../src/core/hit-body.js';
import { FillBody } from '../../src/core/fill-body.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import type { Recorder, RecordRow } from '../../src/core/records.js';
import type { AppEnv } from '../../src/http/send.js';
import { serveBlob } from '../../src/http/serve-blob.js';
import { withPeerRoute } from '../../src/http/peer.js';
import { PEER_PATH, signPeerRequest } from '../../src/core/peer-stream.js';

/**
 * Attacks from the side on a cold fill's hold-back (fill.ts limitAt): an upstream that lies
 * about its size, sends fewer bytes than it declared, and wrong ones. No client may get the last
 * HOLD_BACK bytes of what it sent before the digest matched.
 */

const hashes = new HashPool(2);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-fill-attacks-'));
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  return { dir, store, meta, cache: new BlobCache(store, meta, hashes, { budget: NO_LIMITS }) };
}

function collect(r: Readable): { data: () => Buffer; done: Promise<Error | null> } {
  const chunks: Buffer[] = [];
  r.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<Error | null>((res) => {
    r.on('end', () => res(null));
    r.on('error', (e) => res(e));
  });
  return { data: () => Buffer.concat(chunks), done };
}

describe('an upstream that lies about the size (no size known up front)', () => {
  for (const extra of [1, HOLD_BACK, 4 * HOLD_BACK]) {
    it(`declares ${extra} bytes more than it sends, of the wrong bytes: no client gets the last HOLD_BACK bytes it sent`, async () => {
      const { cache, meta } = await setup();
      const good = randomBytes(1 << 20);
      const bad = Buffer.from(good);
      bad[10] ^= 1;
      const up = new PassThrough();
      // No size in the index (a PyPI index without sizes, a metadata file): the upstream's Content-Length is a claim.
      const served = await cache.fetch({ sha256: sha(good), open: async () => ({ body: up as Readable, size: bad.length + extra }) });
      const whole = collect(served.body);
      up.write(bad.subarray(0, bad.length >> 1));
      await tick(50);
      // A client joining late (from the spool, or the memory window), and one Range client.
      const late = collect((await cache.fetch({ sha256: sha(good), open: async () => ({ body: new PassThrough(), size: 0 }) })).body);
      const ranged = await cache.fetch(
        { sha256: sha(good), open: async () => ({ body: new PassThrough(), size: 0 }) },
        { kind: 'from', start: bad.length - 10 },
      );
      const range = collect(ranged.body);
      up.write(bad.subarray(bad.length >> 1));
      // The upstream stalls here, its whole (wrong) body sent: nothing may have the last bytes of it.
      await tick(300);
      expect(whole.data().length).toBeLessThanOrEqual(bad.length - HOLD_BACK);
      expect(late.data().length).toBeLessThanOrEqual(bad.length - HOLD_BACK);
      expect(range.data().length).toBe(0);
      up.end();
      expect(await whole.done).toBeInstanceOf(Error);
      expect(await late.done).toBeInstanceOf(Error);
      expect(await range.done).toBeInstanceOf(Error);
      expect(whole.data().length).toBeLessThanOrEqual(bad.length - HOLD_BACK);
      expect(late.data().length).toBeLessThanOrEqual(bad.length - HOLD_BACK);
      expect(await served.committed).toBe(false);
      expect(await meta.getBlob(sha(good))).toBeFalsy();
    });
  }
});

describe('a verified warm hit whose client left before its body started', () => {
  it('reads nothing for nobody: no bytes passed, and no "served" hook (the pull record) is run', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(8 << 20);
    await cache.putSmall(bytes);
    const served = await cache.fetch({ sha256: sha(bytes), open: async () => ({ body: new PassThrough() }) });
    expect(served.body).toBeInstanceOf(HitBody);
    // The client hung up while the hit was being looked up (its response is closed before the body starts).
    const out = new Writable({ write: (_c, _e, cb) => cb() });
    out.destroy();
    await new Promise((r) => out.once('close', r));
    let hooked = false;
    let passed = 0;
    const sent = (served.body as HitBody)
      .holdLast(
        async () => void (hooked = true),
        (n) => (passed += n),
      )
      .sendTo(out)
      .then(
        () => null,
        (e: Error) => e,
      );
    expect(await sent).toBeInstanceOf(Error);
    expect(hooked).toBe(false);
    expect(passed).toBe(0);
  });
});

describe('a whole warm hit read as a stream (a store without positioned reads: S3), rotted at rest', () => {
  it('no client gets the last HOLD_BACK bytes before the whole digest is checked, whatever size its last stream chunk has', async () => {
    const { cache: plain, store, meta } = await setup();
    // 1 MiB + 1 byte: the file's last stream chunk is one byte.
    const bytes = randomBytes((1 << 20) + 1);
    await plain.putSmall(bytes);
    const hex = sha(bytes);
    const rotted = Buffer.from(bytes);
    rotted[100] ^= 1;
    chmodSync(store.pathOf(hex), 0o644);
    writeFileSync(store.pathOf(hex), rotted);
    const s3like = Object.create(store) as FsBlobStore;
    (s3like as { openRandom?: unknown }).openRandom = undefined;
    const cache = new BlobCache(s3like, meta, hashes, { budget: NO_LIMITS });
    const rows: RecordRow[] = [];
    const recorder = {
      recordServed: async (r: RecordRow) => void rows.push(r),
      record: async (r: RecordRow) => void rows.push(r),
      bytesSent: () => {},
      transferStarted: () => () => {},
      firstMismatch: () => true,
    } as unknown as Recorder;
    const app = new Hono<AppEnv>();
    app.get('/x', (c) =>
      serveBlob(
        c,
        cache,
        { sha256: hex, open: async () => ({ body: new PassThrough() }) },
        {},
        { recorder, base: { ts: 1, client: 'c', ecosystem: 'pypi', name: 'x', sha256: hex }, rule: 'pypi.allow[0]', label: 'x' },
      ),
    );
    const res = await app.request('/x');
    expect(res.headers.get('x-airlock-cache')).toBe('hit');
    let got = 0;
    let failed = false;
    try {
      for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) got += c.length;
    } catch {
      failed = true;
    }
    expect(failed).toBe(true);
    expect(got).toBeLessThanOrEqual(bytes.length - HOLD_BACK);
    expect(rows.some((r) => r.decision === 'allow')).toBe(false);
  });
});

describe('a slow (not stuck) leader on a fill other clients wait for', () => {
  it('does not pace the upstream for the others: a fast client that joined late is not held to the slow one', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(8 << 20);
    const up = new PassThrough({ highWaterMark: 64 << 10 });
    const spec = { sha256: sha(bytes), size: bytes.length, open: async () => ({ body: up as Readable, size: bytes.length }) };
    const lead = await cache.fetch(spec);
    // The leader takes its first 3 MiB at once, then 64 KiB each 500 ms: blocked after every write, never
    // for the stall (STALL_MS), so it is never moved to the spool by the timer.
    let leadGot = 0;
    const slow = new Writable({
      highWaterMark: 64 << 10,
      write(chunk: Buffer, _e, cb) {
        leadGot += chunk.length;
        if (leadGot < 3 << 20) cb();
        else setTimeout(cb, 500);
      },
    });
    const leading = (lead.body as FillBody).sendTo(slow).catch(() => {});
    void (async () => {
      for (let at = 0; at < bytes.length; at += 64 << 10) if (!up.write(bytes.subarray(at, at + (64 << 10)))) await new Promise((r) => up.once('drain', r));
      up.end();
    })();
    while (leadGot < 3 << 20) await tick(20);
    // A fast client joins now (from the spool: its first byte left the window long ago).
    const late = await cache.fetch(spec);
    const parts: Buffer[] = [];
    const fast = new Writable({
      write(chunk: Buffer, _e, cb) {
        parts.push(Buffer.from(chunk));
        cb();
      },
    });
    const t0 = Date.now();
    const done = (late.body as FillBody).sendTo(fast).then(() => true);
    // The slow client alone would take ~40 s for the rest; the fast one should not wait for it (generous bound).
    const finished = await Promise.race([done, new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
    expect(finished).toBe(true);
    expect(Buffer.concat(parts).equals(bytes)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(15_000);
    slow.destroy();
    await leading;
    expect(await lead.committed).toBe(true);
  }, 30_000);
});

describe("the fleet's internal route (http/peer.ts) from the side", () => {
  const SECRET = Buffer.from('attack-test-fleet-secret-0123456789abcdef');
  async function route(cache: BlobCache) {
    const server = createServer(
      withPeerRoute({ secret: SECRET }, cache, { warn: () => {} }, (_req, res) => {
        res.writeHead(404).end();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    /** A request to `path` (as it is: not normalised), signed for `signed` (default: the same path), with `method`: status and what came before it ended or was cut. */
    const ask = (path: string, o: { signed?: string; method?: string; waitMs?: number } = {}) =>
      new Promise<{ status: number; body: Buffer; complete: boolean }>((resolve, reject) => {
        const headers = { 'x-airlock-fleet': signPeerRequest(SECRET, o.signed ?? path).header };
        const parts: Buffer[] = [];
        let status = 0;
        let complete = false;
        const done = () => resolve({ status, body: Buffer.concat(parts), complete });
        // A held fill sends its head with its first byte: what came within waitMs, then hang up.
        if (o.waitMs) setTimeout(() => (done(), req.destroy()), o.waitMs);
        const req = httpRequest({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers }, (res) => {
          status = res.statusCode!;
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => ((complete = res.complete), done()));
          res.on('error', done);
          res.on('aborted', done);
        });
        req.on('error', (e) => (o.waitMs ? done() : reject(e)));
        req.end();
      });
    return { server, ask };
  }

  it('streams an in-flight fill held back like a client (a size-lying upstream included), nothing else, and only to a signed GET', async () => {
    const { cache } = await setup();
    const stored = randomBytes(200_000);
    await cache.putSmall(stored);
    const good = randomBytes(1 << 20);
    const bad = Buffer.from(good);
    bad[5] ^= 1;
    const up = new PassThrough();
    const served = await cache.fetch({ sha256: sha(good), open: async () => ({ body: up as Readable, size: bad.length + HOLD_BACK }) });
    served.body.on('error', () => {}).resume();
    up.write(bad);
    await tick(100);
    const { server, ask } = await route(cache);
    try {
      const p = `${PEER_PATH}${sha(good)}?from=0`;
      // Its upstream sent every (wrong) byte and stalls: the route sends no more than a client gets.
      const streamed = await ask(p, { waitMs: 400 });
      expect(streamed.status).toBe(200);
      expect(streamed.complete).toBe(false);
      expect(streamed.body.length).toBeLessThanOrEqual(bad.length - HOLD_BACK);
      // From an offset inside the held-back tail: nothing of it.
      const tail = await ask(`${PEER_PATH}${sha(good)}?from=${bad.length - 1000}`, { waitMs: 300 });
      expect(tail.body.length).toBe(0);
      expect(tail.complete).toBe(false);
      // A committed blob is not a fill: not readable here.
      const blob = await ask(`${PEER_PATH}${sha(stored)}?from=0`);
      expect(blob.status).toBe(404);
      expect(blob.body.equals(stored)).toBe(false);
      // A signature is for one method, path and query.
      expect((await ask(p, { method: 'POST' })).status).toBe(400);
      expect((await ask(`${p}&from=1`, { signed: p })).status).toBe(401);
      expect((await ask(`${PEER_PATH}${sha(good)}?from=1`, { signed: p })).status).toBe(401);
      expect((await ask(`${PEER_PATH}../../${sha(good)}?from=0`)).status).toBe(400);
      up.end();
      expect(await served.committed).toBe(false);
    } finally {
      server.close();
    }
  });
});

describe('clients that hang up mid-transfer', () => {
  /** A socket-like sink that takes `open` bytes at once, then holds its write callbacks (its buffer fills). */
  const sink = (open: number) => {
    let got = 0;
    const w = new Writable({
      highWaterMark: 64 << 10,
      write(chunk: Buffer, _e, cb) {
        got += chunk.length;
        if (got < open) cb();
      },
    });
    return { w, got: () => got };
  };

  it('do not stall the client left, and leave no listener, tap or reader behind; once all are gone the fill is abandoned and leaves nothing', async () => {
    const { dir, store } = await setup();
    const meta = new SqliteMetaStore(':memory:');
    const cache = new BlobCache(store, meta, hashes, { budget: { ...NO_LIMITS, abandonMs: 200 } });
    const bytes = randomBytes(8 << 20);
    const up = new PassThrough({ highWaterMark: 64 << 10 });
    const spec = { sha256: sha(bytes), size: bytes.length, open: async () => ({ body: up as Readable, size: bytes.length }) };
    // The upstream sends 6 MiB of the 8, then stalls (the fill is not nearly done: it is abandoned, not finished).
    const feeding = (async () => {
      for (let at = 0; at < 6 << 20; at += 64 << 10) if (!up.write(bytes.subarray(at, at + (64 << 10)))) await new Promise((r) => up.once('drain', r));
    })();
    // A leader that blocks at 1 MiB (holding the upstream), a follower stuck at 256 KiB, one that reads on.
    const a = sink(1 << 20);
    const b = sink(256 << 10);
    const c = sink(Infinity);
    const bodies = await Promise.all([a, b, c].map(() => cache.fetch(spec)));
    const fill = cache.inflight.get(spec.sha256)!;
    const sends = bodies.map((s, i) =>
      (s.body as FillBody).sendTo([a, b, c][i].w).then(
        () => null,
        (e: Error) => e,
      ),
    );
    while (a.got() < 1 << 20 || b.got() < 256 << 10) await tick(10);
    a.w.destroy();
    b.w.destroy();
    // The one left goes on to 4 MiB without them.
    while (c.got() < 4 << 20) await tick(10);
    expect((await sends[0])?.message).toMatch(/went away/);
    expect((await sends[1])?.message).toMatch(/went away/);
    expect(fill.listenerCount('progress')).toBe(1); // c's feed only (no observer, no judge)
    c.w.destroy();
    expect((await sends[2])?.message).toMatch(/went away/);
    expect(fill.listenerCount('progress')).toBe(0);
    // Nobody reads it now: abandoned after the grace, its spool file removed, nothing left in flight.
    expect(await fill.committed).toBe(false);
    expect(fill.error?.message).toMatch(/no client was waiting/);
    await feeding;
    expect(cache.inflightCount()).toBe(0);
    expect(readdirSync(join(dir, store.spoolDir.slice(dir.length + 1)))).toEqual([]);
  }, 30_000);
});
