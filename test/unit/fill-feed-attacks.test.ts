import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { AirlockError } from '../../src/core/errors.js';
import { HOLD_BACK, type FillBudget, type FillSpec } from '../../src/core/fill.js';
import { FillBody, tapStats } from '../../src/core/fill-body.js';
import { HashPool } from '../../src/core/hasher.js';
import type { Recorder, RecordRow } from '../../src/core/records.js';
import type { AppEnv } from '../../src/http/send.js';
import { serveBlob } from '../../src/http/serve-blob.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * A cold fill fed per 64 KiB (or per turn) with corked writes, attacked over real HTTP: pieces of
 * odd and TLS sizes in bursts, clients that are fast, slow, stalled, late, ranged, HEAD, or hang
 * up. No client may have the last HOLD_BACK bytes before the digest matched and the pull record
 * was written; each gets the exact bytes or a cut transfer; nothing stalls.
 */

const hashes = new HashPool(2);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

interface Rig {
  url: string;
  cache: BlobCache;
  rows: RecordRow[];
  /** Hold the pull record's write (recordServed) until release(). */
  holdRecord(): () => void;
  /** Make every recordServed fail from now on. */
  failRecord(): void;
  /** Largest bytes any response had queued in Node (writableLength), sampled. */
  maxQueued(): number;
  close(): Promise<void>;
}

async function rig(spec: () => FillSpec): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-feed-attacks-'));
  dirs.push(dir);
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  const cache = new BlobCache(store, meta, hashes, { budget: NO_LIMITS });
  const rows: RecordRow[] = [];
  let gate: Promise<void> = Promise.resolve();
  const recorder = {
    recordServed: async (r: RecordRow) => {
      await gate;
      rows.push(r);
    },
    record: async (r: RecordRow) => void rows.push(r),
    bytesSent: () => {},
    transferStarted: () => () => {},
    firstMismatch: () => true,
    limitRefusal: () => 0,
  } as unknown as Recorder;
  const app = new Hono<AppEnv>();
  app.on(['GET', 'HEAD'], '/f', (c) => {
    const s = spec();
    return serveBlob(
      c,
      cache,
      s,
      {},
      { recorder, base: { ts: 1, client: 'c', ecosystem: 'pypi', name: 'x', sha256: s.sha256 }, rule: 'pypi.allow[0]', label: 'x' },
    );
  });
  const open = new Set<ServerResponse>();
  let maxQueued = 0;
  const sampler = setInterval(() => {
    for (const r of open) maxQueued = Math.max(maxQueued, r.writableLength);
  }, 2);
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve(
      {
        fetch: app.fetch,
        hostname: '127.0.0.1',
        port: 0,
        createServer: ((opts: object, listener: (q: IncomingMessage, r: ServerResponse) => void) =>
          createHttpServer(opts, (q, r) => {
            open.add(r);
            r.once('close', () => open.delete(r));
            listener(q, r);
          })) as unknown as typeof createHttpServer,
      },
      () => resolve(s),
    );
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/f`,
    cache,
    rows,
    holdRecord() {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return release;
    },
    failRecord() {
      gate = Promise.reject(new Error('the record is unwritable'));
      gate.catch(() => {});
    },
    maxQueued: () => maxQueued,
    close: async () => {
      clearInterval(sampler);
      (server as unknown as { closeAllConnections(): void }).closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

type Mode = 'fast' | 'slow' | 'stall' | { hangupAt: number };

interface Client {
  got: () => number;
  data: () => Buffer;
  /** Resolves once the transfer ended (complete: a clean end) or was cut. */
  done: Promise<{ status: number; complete: boolean }>;
}

function client(url: string, mode: Mode, headers: Record<string, string> = {}, method = 'GET'): Client {
  const parts: Buffer[] = [];
  let got = 0;
  const done = new Promise<{ status: number; complete: boolean }>((resolve) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      const status = res.statusCode!;
      let over = false;
      const end = (complete: boolean) => {
        if (over) return;
        over = true;
        resolve({ status, complete });
      };
      res.on('data', (c: Buffer) => {
        parts.push(c);
        got += c.length;
        if (mode === 'slow') {
          res.pause();
          setTimeout(() => res.resume(), 3);
        } else if (typeof mode === 'object' && got >= mode.hangupAt) {
          req.destroy();
          end(false);
        }
      });
      if (mode === 'stall') {
        res.pause();
        // Longer than STALL_MS (2 s): the client is moved to the spool while Node holds its queue.
        setTimeout(() => res.resume(), 2600);
      }
      res.on('end', () => end(res.complete));
      res.on('aborted', () => end(false));
      res.on('error', () => end(false));
      res.on('close', () => end(res.complete));
    });
    req.on('error', () => resolve({ status: 0, complete: false }));
    req.end();
  });
  return { got: () => got, data: () => Buffer.concat(parts), done };
}

/** Write `bytes` in pieces of `sizes` (cycled), `burst` pieces per turn, yielding to the event loop between bursts. */
async function send(up: PassThrough, bytes: Buffer, sizes: number[], burst: number, upTo = bytes.length): Promise<void> {
  let at = 0;
  let i = 0;
  while (at < upTo) {
    for (let k = 0; k < burst && at < upTo; k++) {
      const n = Math.min(sizes[i++ % sizes.length], upTo - at);
      up.write(bytes.subarray(at, at + n));
      at += n;
    }
    await new Promise((r) => setImmediate(r));
    if (up.writableLength > 4 << 20) await new Promise((r) => up.once('drain', r));
  }
}

const PIECES: { name: string; sizes: number[]; burst: number }[] = [
  { name: 'TLS records (16 KiB), 32 a turn', sizes: [16 << 10], burst: 32 },
  { name: 'odd pieces (1, 7 KiB+3, 65 KiB+1, 100 003), 40 a turn', sizes: [1, (7 << 10) + 3, (65 << 10) + 1, 100_003], burst: 40 },
  { name: 'one byte short of the batch (64 KiB - 1), 1 a turn', sizes: [(64 << 10) - 1], burst: 1 },
];

describe('a cold fill fed per batch, over HTTP: the hold-back against every client', () => {
  for (const p of PIECES) {
    for (const sized of [true, false]) {
      it(`wrong bytes, ${p.name}, ${sized ? 'size in the index' : 'no size known'}: no client has the last HOLD_BACK bytes, none ends cleanly`, async () => {
        const good = randomBytes(6 << 20);
        const bad = Buffer.from(good);
        bad[bad.length - 1] ^= 1;
        const up = new PassThrough({ highWaterMark: 1 << 20 });
        const r = await rig(() => ({ sha256: sha(good), ...(sized ? { size: good.length } : {}), open: async () => ({ body: up as Readable }) }));
        try {
          const clients: Client[] = [client(r.url, 'fast'), client(r.url, 'slow'), client(r.url, { hangupAt: 300_000 })];
          await tick(50);
          const sending = send(up, bad, p.sizes, p.burst, bad.length >> 1);
          await sending;
          // Joining mid-fill: a whole client, a range, a HEAD.
          clients.push(client(r.url, 'fast'));
          const range = client(r.url, 'fast', { range: 'bytes=0-99' });
          const head = client(r.url, 'fast', {}, 'HEAD');
          await send(up, bad.subarray(bad.length >> 1), p.sizes, p.burst);
          // Every (wrong) byte sent, the upstream has not ended: wait for the clients to take all they may.
          await tick(400);
          for (const c of clients) expect(c.got()).toBeLessThanOrEqual(bad.length - HOLD_BACK);
          // With the size in the index a range waits for the digest (206); without one it is answered whole (200), held back as one.
          expect(range.got()).toBeLessThanOrEqual(sized ? 0 : bad.length - HOLD_BACK);
          up.end();
          for (const c of clients) expect((await c.done).complete).toBe(false);
          for (const c of clients) expect(c.got()).toBeLessThanOrEqual(bad.length - HOLD_BACK);
          expect((await range.done).complete).toBe(false);
          expect(range.got()).toBeLessThanOrEqual(sized ? 0 : bad.length - HOLD_BACK);
          expect((await head.done).status).toBe(200);
          expect(r.rows.some((x) => x.decision === 'allow' && x.cache !== 'hit' && x.size === good.length && x.reason === undefined)).toBe(false);
        } finally {
          await r.close();
        }
      }, 20_000);
    }
  }

  for (const p of PIECES) {
    it(`right bytes, ${p.name}: the last bytes wait for the pull record; then every client has them exactly`, async () => {
      const good = randomBytes(6 << 20);
      const up = new PassThrough({ highWaterMark: 1 << 20 });
      const r = await rig(() => ({ sha256: sha(good), size: good.length, open: async () => ({ body: up as Readable }) }));
      try {
        const release = r.holdRecord();
        const clients: Client[] = [client(r.url, 'fast'), client(r.url, 'slow'), client(r.url, 'fast')];
        const gone = client(r.url, { hangupAt: 1 << 20 });
        await tick(50);
        await send(up, good, p.sizes, p.burst, good.length >> 1);
        clients.push(client(r.url, 'fast'));
        await send(up, good.subarray(good.length >> 1), p.sizes, p.burst);
        up.end();
        await tick(600);
        // Verified, but the record is not written: nobody has the last bytes.
        for (const c of clients) expect(c.got()).toBeLessThanOrEqual(good.length - HOLD_BACK);
        release();
        for (const c of clients) expect(await c.done).toEqual({ status: 200, complete: true });
        for (const c of clients) expect(c.data().equals(good)).toBe(true);
        expect((await gone.done).complete).toBe(false);
      } finally {
        await r.close();
      }
    }, 20_000);
  }
});

describe('clients that stall, are slow, or many, over HTTP', () => {
  it('a stalled client (moved to the spool after 2 s) and many slow ones: exact bytes, no stall, Node queues bounded', async () => {
    const good = randomBytes(16 << 20);
    const up = new PassThrough({ highWaterMark: 1 << 20 });
    const r = await rig(() => ({ sha256: sha(good), size: good.length, open: async () => ({ body: up as Readable }) }));
    const moved = tapStats.toSpool;
    try {
      const clients: Client[] = [client(r.url, 'stall'), ...Array.from({ length: 12 }, () => client(r.url, 'slow')), client(r.url, 'fast')];
      await tick(50);
      await send(up, good, [16 << 10], 32);
      up.end();
      const results = await Promise.race([Promise.all(clients.map((c) => c.done)), tick(15_000).then(() => null)]);
      expect(results).not.toBeNull();
      for (const res of results!) expect(res).toEqual({ status: 200, complete: true });
      for (const c of clients) expect(c.data().equals(good)).toBe(true);
      // A client in memory: up to the 128 KiB socket queue plus one piece; moved to the spool, one 256 KiB read more.
      expect(tapStats.toSpool).toBeGreaterThan(moved);
      expect(r.maxQueued()).toBeLessThanOrEqual((128 << 10) + (256 << 10) + (64 << 10));
    } finally {
      await r.close();
    }
  }, 30_000);
});

describe('an upstream over TLS (16 KiB records)', () => {
  it('right and wrong bytes: exact bytes after verification, or a cut transfer without the last HOLD_BACK bytes', async () => {
    const d = mkdtempSync(join(tmpdir(), 'airlock-feed-tls-'));
    dirs.push(d);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(d, 'k.pem'),
        '-out',
        join(d, 'c.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const good = randomBytes(8 << 20);
    const bad = Buffer.from(good);
    bad[bad.length - 10] ^= 1;
    let hold: Promise<void> = Promise.resolve();
    const tls = createHttpsServer({ key: readFileSync(join(d, 'k.pem')), cert: readFileSync(join(d, 'c.pem')) }, (q, res) => {
      const body = q.url === '/bad' ? bad : good;
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, body.length - 1));
      // The last byte waits: every other byte is in, the fill cannot have verified.
      void hold.then(() => res.end(body.subarray(body.length - 1)));
    });
    await new Promise<void>((res) => tls.listen(0, '127.0.0.1', res));
    const ca = readFileSync(join(d, 'c.pem'));
    const tport = (tls.address() as AddressInfo).port;
    const open = (path: string) => async () =>
      new Promise<{ body: Readable; size: number }>((resolve, reject) => {
        httpsRequest({ host: '127.0.0.1', port: tport, path, ca }, (res) => resolve({ body: res, size: Number(res.headers['content-length']) }))
          .on('error', reject)
          .end();
      });
    let path = '/good';
    const r = await rig(() => ({ sha256: sha(good), open: open(path) }));
    try {
      for (const which of ['/bad', '/good']) {
        path = which;
        let release!: () => void;
        hold = new Promise((res) => (release = res));
        const clients = [client(r.url, 'fast'), client(r.url, 'slow'), client(r.url, 'fast')];
        await tick(800);
        for (const c of clients) expect(c.got()).toBeLessThanOrEqual(good.length - HOLD_BACK);
        release();
        for (const c of clients) {
          const res = await c.done;
          if (which === '/bad') {
            expect(res.complete).toBe(false);
            expect(c.got()).toBeLessThanOrEqual(good.length - HOLD_BACK);
          } else {
            expect(res).toEqual({ status: 200, complete: true });
            expect(c.data().equals(good)).toBe(true);
          }
        }
      }
    } finally {
      await r.close();
      tls.close();
    }
  }, 30_000);
});

describe('an inspected file (a model file, a dataset tar) and a record that cannot be written, over HTTP', () => {
  for (const verdict of ['allow', 'refuse'] as const) {
    it(`every byte in and verified, the verdict pending (then ${verdict}): nobody has the last HOLD_BACK bytes; then exact bytes or a cut`, async () => {
      const good = randomBytes(4 << 20);
      const up = new PassThrough({ highWaterMark: 1 << 20 });
      let decide!: (ok: boolean) => void;
      const decided = new Promise<boolean>((r) => (decide = r));
      let released = false;
      const r = await rig(() => ({
        sha256: sha(good),
        size: good.length,
        open: async () => ({ body: up as Readable }),
        inspect: {
          judge: async (file, release) => {
            // Nothing before the release (the part that could run code is judged first).
            await file.read(0, 1 << 20);
            released = true;
            release();
            if (!(await decided)) throw new AirlockError('CONTENT_REFUSED', 'refused by the test inspector');
          },
        },
      }));
      try {
        const early = client(r.url, 'fast');
        await tick(50);
        await send(up, good, [16 << 10], 32, 512 << 10);
        await tick(200);
        // Half a MiB in, not released: nothing at all.
        expect(released).toBe(false);
        expect(early.got()).toBe(0);
        const clients = [early, client(r.url, 'slow')];
        await send(up, good.subarray(512 << 10), [(7 << 10) + 3], 40);
        up.end();
        await tick(600);
        expect(released).toBe(true);
        for (const c of clients) expect(c.got()).toBeLessThanOrEqual(good.length - HOLD_BACK);
        decide(verdict === 'allow');
        for (const c of clients) {
          const res = await c.done;
          if (verdict === 'allow') {
            expect(res).toEqual({ status: 200, complete: true });
            expect(c.data().equals(good)).toBe(true);
          } else {
            expect(res.complete).toBe(false);
            expect(c.got()).toBeLessThanOrEqual(good.length - HOLD_BACK);
          }
        }
      } finally {
        await r.close();
      }
    }, 20_000);
  }

  it('a pull record that cannot be written: the transfer is cut without the last HOLD_BACK bytes', async () => {
    const good = randomBytes(3 << 20);
    const up = new PassThrough({ highWaterMark: 1 << 20 });
    const r = await rig(() => ({ sha256: sha(good), size: good.length, open: async () => ({ body: up as Readable }) }));
    try {
      r.failRecord();
      const clients = [client(r.url, 'fast'), client(r.url, 'slow')];
      await tick(50);
      await send(up, good, [(64 << 10) - 1], 3);
      up.end();
      for (const c of clients) {
        expect((await c.done).complete).toBe(false);
        expect(c.got()).toBeLessThanOrEqual(good.length - HOLD_BACK);
      }
    } finally {
      await r.close();
    }
  }, 20_000);
});

describe('stuck clients in memory (a socket that takes nothing)', () => {
  it('each queues at most 128 KiB plus one piece in Node, holds nobody (a fast client finishes), and is moved to the spool after the stall', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-feed-stuck-'));
    dirs.push(dir);
    const cache = new BlobCache(await FsBlobStore.create(dir), new SqliteMetaStore(':memory:'), hashes, { budget: NO_LIMITS });
    const good = randomBytes(8 << 20);
    const up = new PassThrough({ highWaterMark: 1 << 20 });
    const spec = { sha256: sha(good), size: good.length, open: async () => ({ body: up as Readable }) };
    const moved = tapStats.toSpool;
    // Sockets whose kernel took nothing: the first write never completes, every later one is queued.
    const stuck = Array.from({ length: 12 }, () => new Writable({ highWaterMark: 16 << 10, write: () => {} }));
    const sends = await Promise.all(
      stuck.map(async (w) => {
        const served = await cache.fetch(spec);
        return { sent: (served.body as FillBody).sendTo(w).catch(() => {}) };
      }),
    );
    const parts: Buffer[] = [];
    const fast = new Writable({
      highWaterMark: 16 << 10,
      write(c: Buffer, _e, cb) {
        parts.push(Buffer.from(c));
        setImmediate(cb);
      },
    });
    const done = (await cache.fetch(spec)).body as FillBody;
    // As http/send.ts: the response is ended once the body is handed over, and complete once flushed.
    const fastDone = done.sendTo(fast).then(() => new Promise<boolean>((r) => fast.end(() => r(true))));
    await send(up, good, [(64 << 10) - 1, 16 << 10, 3], 8);
    up.end();
    expect(await Promise.race([fastDone, tick(9000).then(() => false)])).toBe(true);
    expect(Buffer.concat(parts).equals(good)).toBe(true);
    for (const w of stuck) expect(w.writableLength).toBeLessThanOrEqual((128 << 10) + (64 << 10));
    // Past the stall they are moved to the spool, and still queue no more (they wait for 'drain').
    await tick(2300);
    expect(tapStats.toSpool - moved).toBe(stuck.length);
    for (const w of stuck) expect(w.writableLength).toBeLessThanOrEqual((128 << 10) + (64 << 10));
    stuck.forEach((w) => w.destroy());
    await Promise.all(sends.map((x) => x.sent));
  }, 20_000);
});

describe('files around the hold-back size', () => {
  for (const n of [1, 1000, HOLD_BACK, HOLD_BACK + 1, 2 * HOLD_BACK + 7]) {
    it(`${n} bytes: nothing past size - HOLD_BACK before the record; then exact bytes`, async () => {
      const good = randomBytes(n);
      const up = new PassThrough();
      const r = await rig(() => ({ sha256: sha(good), size: good.length, open: async () => ({ body: up as Readable }) }));
      try {
        const release = r.holdRecord();
        const clients = [client(r.url, 'fast'), client(r.url, 'slow')];
        await tick(50);
        await send(up, good, [7], 1000);
        up.end();
        await tick(300);
        for (const c of clients) expect(c.got()).toBeLessThanOrEqual(Math.max(0, n - HOLD_BACK));
        release();
        for (const c of clients) expect(await c.done).toEqual({ status: 200, complete: true });
        for (const c of clients) expect(c.data().equals(good)).toBe(true);
      } finally {
        await r.close();
      }
    });
  }
});

describe('a warm hit whose last chunk is small (1 MiB chunks)', () => {
  for (const n of [(1 << 20) + 1, (2 << 20) + 1000]) {
    it(`${n} bytes: nothing past size - HOLD_BACK before the pull record; then exact bytes`, async () => {
      const good = randomBytes(n);
      const r = await rig(() => ({ sha256: sha(good), size: good.length, open: async () => ({ body: new PassThrough() as Readable }) }));
      try {
        await r.cache.putSmall(good);
        const release = r.holdRecord();
        const c = client(r.url, 'fast');
        await tick(300);
        expect(c.got()).toBeLessThanOrEqual(n - HOLD_BACK);
        release();
        expect(await c.done).toEqual({ status: 200, complete: true });
        expect(c.data().equals(good)).toBe(true);
      } finally {
        await r.close();
      }
    });
  }
});
