import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobCache, type CacheOptions } from '../../src/core/cache.js';
import { AirlockError } from '../../src/core/errors.js';
import type { FillBudget, FillSpec } from '../../src/core/fill.js';
import { HashPool } from '../../src/core/hasher.js';
import { checkPeerRequest, peerProof } from '../../src/core/peer-stream.js';
import { withPeerRoute } from '../../src/http/peer.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import type { LeaseStore } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * Attacks on the fleet lease's end (lease.ts, fill.ts, cache.ts): whatever way a fill ends, its
 * replica holds no lease row afterwards, renews none, and asks no upstream after a cancel; another
 * replica can then take the lease at once. Two BlobCaches share one real SQLite store (and, for
 * peers, real HTTP on loopback through http/peer.ts).
 */

const hashes = new HashPool(2);
const dirs: string[] = [];
const servers: Server[] = [];
const SECRET = Buffer.from('break-lease-fleet-secret-0123456789abcdef');
const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await tick(5);
  }
}

let unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => void unhandled.push(e);
beforeEach(() => {
  unhandled = [];
  process.on('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  await tick(30);
  process.off('unhandledRejection', onUnhandled);
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
  expect(unhandled).toEqual([]);
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

type Op = 'take' | 'renew' | 'release' | 'await' | 'holder';
/** A LeaseStore that records every call by this replica (and when), over the real one. */
function counted(inner: LeaseStore) {
  const calls: { op: Op; at: number; took?: boolean }[] = [];
  const leases: LeaseStore = {
    takeLease: async (s, o, st, a) => {
      const took = await inner.takeLease(s, o, st, a);
      calls.push({ op: 'take', at: Date.now(), took });
      return took;
    },
    renewLease: (s, o) => (calls.push({ op: 'renew', at: Date.now() }), inner.renewLease(s, o)),
    releaseLease: (s, o) => (calls.push({ op: 'release', at: Date.now() }), inner.releaseLease(s, o)),
    awaitRelease: (s, ms, signal) => (calls.push({ op: 'await', at: Date.now() }), inner.awaitRelease(s, ms, signal)),
    leaseHolder: (s) => (calls.push({ op: 'holder', at: Date.now() }), inner.leaseHolder(s)),
  };
  const count = (op: Op, since = 0) => calls.filter((c) => c.op === op && c.at >= since).length;
  return { leases, calls, count };
}

interface Replica {
  cache: BlobCache;
  store: FsBlobStore;
  owner: string;
  count: (op: Op, since?: number) => number;
  calls: { op: Op; at: number; took?: boolean }[];
  peer?: { secret: Buffer; addr?: string };
  url?: string;
}

/** Replicas sharing a metadata store share one blob store too (S3 in a fleet): one directory per metadata store. */
const storeOf = new WeakMap<SqliteMetaStore, string>();
async function sharedStore(meta: SqliteMetaStore): Promise<FsBlobStore> {
  const dir = storeOf.get(meta);
  if (dir) return FsBlobStore.create(dir, { cleanSpool: false });
  const made = mkdtempSync(join(tmpdir(), 'airlock-break-lease-'));
  dirs.push(made);
  storeOf.set(meta, made);
  return FsBlobStore.create(made);
}

async function replica(
  meta: SqliteMetaStore,
  owner: string,
  o: { staleMs?: number; budget?: FillBudget; peer?: boolean; leases?: LeaseStore; opts?: Partial<CacheOptions> } = {},
): Promise<Replica> {
  const store = await sharedStore(meta);
  const c = counted(o.leases ?? meta);
  const peer = o.peer ? { secret: SECRET } : undefined;
  const cache = new BlobCache(store, meta, hashes, {
    budget: o.budget ?? NO_LIMITS,
    fleet: { leases: c.leases, owner, staleMs: o.staleMs ?? 150, peer },
    ...o.opts,
  });
  const r: Replica = { cache, store, owner, count: c.count, calls: c.calls, peer };
  if (peer) {
    const server = createServer(withPeerRoute(peer, cache, { warn: () => {} }, (_q, res) => res.writeHead(404).end()));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    servers.push(server);
    (peer as { addr?: string }).addr = r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  return r;
}

/** An upstream for one blob: counts its opens (and opens after `cut`), each answered as `how` says. */
function upstream(bytes: Buffer, how: 'whole' | 'held' | 'hang' | 'reject' = 'whole') {
  const u = {
    opens: 0,
    openedAt: [] as number[],
    bodies: [] as PassThrough[],
    signals: [] as AbortSignal[],
    open: async (signal: AbortSignal) => {
      u.opens++;
      u.openedAt.push(Date.now());
      u.signals.push(signal);
      if (how === 'reject') throw new AirlockError('UPSTREAM_UNAVAILABLE', 'upstream answered 502');
      if (how === 'hang') await new Promise((_r, rej) => signal.addEventListener('abort', () => rej(new AirlockError('CANCELLED', 'aborted')), { once: true }));
      const body = new PassThrough();
      u.bodies.push(body);
      if (how === 'whole') body.end(bytes);
      else body.write(bytes.subarray(0, 1000));
      return { body: body as Readable, size: bytes.length };
    },
  };
  return u;
}

const spec = (bytes: Buffer, open: FillSpec['open'], extra: Partial<FillSpec> = {}): FillSpec => ({ sha256: sha(bytes), size: bytes.length, open, ...extra });

/** replica-a filling a blob from a held upstream, replica-b streaming that fill as its peer (joined). */
async function peerPair(bHow: Parameters<typeof upstream>[1] = 'whole') {
  const meta = new SqliteMetaStore(':memory:');
  const a = await replica(meta, 'replica-a', { peer: true, staleMs: 1000 });
  const b = await replica(meta, 'replica-b', { peer: true, staleMs: 1000 });
  const bytes = randomBytes(300_000);
  const upA = upstream(bytes, 'held');
  const upB = upstream(bytes, bHow);
  const sa = await a.cache.fetch(spec(bytes, upA.open));
  const sb = await b.cache.fetch(spec(bytes, upB.open));
  return { meta, a, b, bytes, upA, upB, sa, sb };
}

/** replica-a asked for a blob whose lease replica-b holds (stale after `staleMs`): its fetch under way. */
async function behindB(staleMs: number, size: number, how: Parameters<typeof upstream>[1] = 'whole') {
  const meta = new SqliteMetaStore(':memory:');
  const a = await replica(meta, 'replica-a', { staleMs });
  const bytes = randomBytes(size);
  expect(await meta.takeLease(sha(bytes), 'replica-b', staleMs)).toBe(true);
  const up = upstream(bytes, how);
  const s = a.cache.fetch(spec(bytes, up.open)).catch((e: Error) => e);
  return { meta, a, bytes, up, s };
}

async function drain(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/**
 * The guarantee, checked: no lease row of `r` on `sha256`, no renewal for four renewal periods
 * after the end, no upstream open after `cutAt` (when given), and another replica takes the lease at once.
 */
async function released(meta: SqliteMetaStore, r: Replica, sha256: string, up?: { openedAt: number[] }, cutAt?: number): Promise<void> {
  const holder = await meta.leaseHolder(sha256);
  expect(holder?.owner).not.toBe(r.owner);
  const end = Date.now();
  await tick(4 * 50 + 30); // staleMs 150: renewals every 50 ms
  expect(r.count('renew', end)).toBe(0);
  expect((await meta.leaseHolder(sha256))?.owner).not.toBe(r.owner);
  if (up && cutAt !== undefined) expect(up.openedAt.filter((t) => t > cutAt)).toEqual([]);
  if (!holder) {
    expect(await meta.takeLease(sha256, 'replica-z', 60_000)).toBe(true);
    await meta.releaseLease(sha256, 'replica-z');
  }
}

describe('a fill that ends by itself lets its fleet lease go', () => {
  it('committed: no lease, no renewals after, and another replica takes it at once', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const bytes = randomBytes(300_000);
    const up = upstream(bytes, 'held');
    const s = await a.cache.fetch(spec(bytes, up.open));
    // Running long enough to be renewed a few times.
    await until(() => a.count('renew') >= 2);
    expect((await meta.leaseHolder(sha(bytes)))?.owner).toBe('replica-a');
    up.bodies[0].end(bytes.subarray(1000));
    expect((await drain(s.body)).equals(bytes)).toBe(true);
    expect(await s.committed).toBe(true);
    await released(meta, a, sha(bytes));
    expect(up.opens).toBe(1);
  });

  it.each([
    ['the upstream refuses (502)', 'reject'],
    ['the upstream body fails mid-way', 'error'],
    ['the upstream closes early', 'short'],
    ['the digest is wrong', 'digest'],
    ['the upstream declares another size', 'declared'],
    ['the upstream sends more than declared', 'more'],
    ['the upstream sends fewer bytes and ends cleanly', 'fewer'],
  ] as const)('failed (%s): released, no renewals after', async (_what, how) => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const bytes = randomBytes(200_000);
    let opens = 0;
    const open = async (): Promise<{ body: Readable; size: number }> => {
      opens++;
      if (how === 'reject') throw new AirlockError('UPSTREAM_UNAVAILABLE', 'upstream answered 502');
      const body = new PassThrough();
      const size = how === 'declared' ? bytes.length + 1 : bytes.length;
      body.write(bytes.subarray(0, 1000));
      setTimeout(() => {
        if (how === 'error') body.destroy(new Error('connection reset'));
        else if (how === 'short') body.destroy();
        else if (how === 'digest') body.end(Buffer.alloc(bytes.length - 1000));
        else if (how === 'more') body.end(Buffer.concat([bytes.subarray(1000), Buffer.from('x')]));
        else if (how === 'fewer') body.end(bytes.subarray(1000, bytes.length - 1));
        else body.end(bytes.subarray(1000));
      }, 120); // after a renewal or two
      return { body, size };
    };
    const got = await a.cache
      .fetch(spec(bytes, open))
      .then(async (s) => {
        await drain(s.body).catch(() => {});
        return s.committed;
      })
      .catch((e: Error) => e);
    expect(got === false || got instanceof Error).toBe(true);
    await a.cache.idle();
    await released(meta, a, sha(bytes));
    expect(opens).toBe(1);
  });

  it('cut as too slow (transfers.min_rate): released, no renewals after', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a', { budget: { minRate: 1 << 20, windowMs: 100, deadlineMs: 0, abandonMs: 0, finishBytes: 0 } });
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = await a.cache.fetch(spec(bytes, up.open));
    await expect(drain(s.body)).rejects.toThrow();
    expect(await s.committed).toBe(false);
    await released(meta, a, sha(bytes), up);
    expect(up.opens).toBe(1);
  });

  it('abandoned by its last client: released, no renewals after', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a', { budget: { ...NO_LIMITS, abandonMs: 50 } });
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = await a.cache.fetch(spec(bytes, up.open));
    s.body.destroy();
    expect(await s.committed).toBe(false);
    await released(meta, a, sha(bytes), up);
  });

  it('its commit fails (the store refuses the file): released, no renewals after', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    a.store.putFile = async () => {
      await tick(120);
      throw new Error('disk full');
    };
    const bytes = randomBytes(200_000);
    const s = await a.cache.fetch(spec(bytes, upstream(bytes).open));
    await drain(s.body);
    expect(await s.committed).toBe(false);
    await released(meta, a, sha(bytes));
  });

  it("filled elsewhere: the waiting replica never holds the lease, and finds the other's blob", async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const b = await replica(meta, 'replica-b');
    const bytes = randomBytes(200_000);
    const upA = upstream(bytes, 'held');
    const upB = upstream(bytes);
    const sa = await a.cache.fetch(spec(bytes, upA.open));
    const sb = b.cache.fetch(spec(bytes, upB.open));
    await until(() => b.count('await') >= 1);
    await tick(100);
    upA.bodies[0].end(bytes.subarray(1000));
    await drain(sa.body);
    expect(await sa.committed).toBe(true);
    const served = await sb;
    expect(served.cache).toBe('hit');
    expect((await drain(served.body)).equals(bytes)).toBe(true);
    expect(b.calls.filter((c) => c.op === 'take' && c.took)).toEqual([]);
    expect(upB.opens).toBe(0);
    await released(meta, a, sha(bytes));
    await released(meta, b, sha(bytes));
  });
});

describe('a fill cancelled by shutdown at any moment lets its fleet lease go and asks no upstream after', () => {
  // Delays after fetch() at which shutdown() is called: before the spool file exists, before the
  // lease is asked for, while the upstream is opened, while it streams.
  // (At 0 ms, in the same turn as fetch(): the case below.)
  it.each([1, 2, 3, 5, 8, 13, 30, 80])('shutdown %i ms after the fetch', async (delay) => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = a.cache.fetch(spec(bytes, up.open)).catch((e: Error) => e);
    if (delay > 0) await tick(delay);
    const cutAt = Date.now();
    await a.cache.shutdown();
    const got = await Promise.race([s, tick(500).then(() => 'pending' as const)]);
    expect(got).not.toBe('pending');
    if (got !== 'pending' && !(got instanceof Error)) await drain(got.body).catch(() => {});
    await released(meta, a, sha(bytes), up, cutAt);
    for (const sig of up.signals) expect(sig.aborted).toBe(true);
  });

  it('shutdown right after fetch() was called (its fill not yet created): no fill starts after shutdown resolved', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = a.cache.fetch(spec(bytes, up.open)).catch((e: Error) => e);
    await a.cache.shutdown();
    const cutAt = Date.now();
    try {
      await tick(100);
      expect(up.opens).toBe(0);
      expect(a.cache.inflightCount()).toBe(0);
      await released(meta, a, sha(bytes), up, cutAt);
      expect(await s).toBeInstanceOf(Error);
    } finally {
      await a.cache.shutdown();
    }
  });

  it('shutdown while the upstream is being opened: the open is aborted, the lease released', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'hang');
    const s = a.cache.fetch(spec(bytes, up.open)).catch((e: Error) => e);
    await until(() => up.opens === 1);
    await until(() => a.count('renew') >= 1);
    const cutAt = Date.now();
    await a.cache.shutdown();
    expect(await s).toBeInstanceOf(Error);
    expect(up.signals[0].aborted).toBe(true);
    await released(meta, a, sha(bytes), up, cutAt);
  });

  it('shutdown during the commit (the store slow to take the file): released once shutdown resolves, renewals stop', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    let putting!: () => void;
    const put = new Promise<void>((r) => (putting = r));
    const realPut = a.store.putFile.bind(a.store);
    a.store.putFile = async (s, p) => {
      putting();
      await tick(150);
      return realPut(s, p);
    };
    const bytes = randomBytes(200_000);
    const up = upstream(bytes);
    const s = await a.cache.fetch(spec(bytes, up.open));
    await drain(s.body);
    await put;
    const cutAt = Date.now();
    await a.cache.shutdown();
    expect(await s.committed).toBe(true);
    await released(meta, a, sha(bytes), up, cutAt);
    expect(up.opens).toBe(1);
  });

  it.each([0, 20, 60, 200])("shutdown while it waits for another replica's lease, which is let go %i ms later: never taken", async (later) => {
    const { meta, a, bytes, up, s } = await behindB(60_000, 10_000);
    await until(() => a.count('await') >= 1);
    const cutAt = Date.now();
    await a.cache.shutdown();
    expect(await s).toBeInstanceOf(Error);
    await tick(later);
    await meta.releaseLease(sha(bytes), 'replica-b');
    await tick(150); // awaitRelease polls every 50 ms
    expect(await meta.leaseHolder(sha(bytes))).toBeNull();
    expect(a.calls.filter((c) => c.op === 'take' && c.took)).toEqual([]);
    await released(meta, a, sha(bytes), up, cutAt);
    expect(up.opens).toBe(0);
  });

  it("shutdown while it waits for a dead replica's lease, which goes stale after the cancel: not taken over", async () => {
    const { meta, a, bytes, up, s } = await behindB(200, 10_000);
    await until(() => a.count('await') >= 1);
    const cutAt = Date.now();
    await a.cache.shutdown();
    expect(await s).toBeInstanceOf(Error);
    await tick(400); // replica-b's lease is stale now
    expect((await meta.leaseHolder(sha(bytes)))?.owner).toBe('replica-b');
    expect(a.calls.filter((c) => c.op === 'take' && c.took)).toEqual([]);
    expect(up.opens).toBe(0);
    await released(meta, a, sha(bytes), up, cutAt);
  });

  it.each([0, 5, 30, 120])(
    "after taking over a dead replica's lease, shutdown %i ms later: released, and the dead replica's late release or renewal changes nothing",
    async (delay) => {
      const { meta, a, bytes, up, s } = await behindB(150, 200_000, 'held');
      await until(() => a.calls.some((c) => c.op === 'take' && c.took));
      expect((await meta.leaseHolder(sha(bytes)))?.owner).toBe('replica-a');
      await tick(delay);
      // The "dead" replica wakes up: its renewal and release must not touch replica-a's row.
      await meta.renewLease(sha(bytes), 'replica-b');
      const cutAt = Date.now();
      await a.cache.shutdown();
      await meta.releaseLease(sha(bytes), 'replica-b');
      const got = await s;
      if (!(got instanceof Error)) await drain(got.body).catch(() => {});
      await released(meta, a, sha(bytes), up, cutAt);
      expect(up.opens).toBeLessThanOrEqual(1);
    },
  );

  it('two replicas: one waits, the other fills; both shut down at once: no lease left, nothing opened after', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const a = await replica(meta, 'replica-a');
    const b = await replica(meta, 'replica-b');
    const bytes = randomBytes(200_000);
    const upA = upstream(bytes, 'held');
    const upB = upstream(bytes, 'held');
    const sa = a.cache.fetch(spec(bytes, upA.open)).catch((e: Error) => e);
    await until(() => upA.opens === 1);
    const sb = b.cache.fetch(spec(bytes, upB.open)).catch((e: Error) => e);
    await until(() => b.count('await') >= 1);
    const cutAt = Date.now();
    await Promise.all([a.cache.shutdown(), b.cache.shutdown()]);
    for (const s of [await sa, await sb]) if (!(s instanceof Error)) await drain(s.body).catch(() => {});
    await tick(150);
    await released(meta, a, sha(bytes), upA, cutAt);
    await released(meta, b, sha(bytes), upB, cutAt);
    expect(upB.opens).toBe(0);
    expect(b.calls.filter((c) => c.op === 'take' && c.took)).toEqual([]);
  });

  it('a lease store whose release answers late (a database over the network): released once shutdown resolves', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const slow: LeaseStore = {
      takeLease: (...a) => meta.takeLease(...a),
      renewLease: (...a) => meta.renewLease(...a),
      releaseLease: async (...a) => {
        await tick(40);
        return meta.releaseLease(...a);
      },
      awaitRelease: (...a) => meta.awaitRelease(...a),
      leaseHolder: (...a) => meta.leaseHolder(...a),
    };
    const a = await replica(meta, 'replica-a', { leases: slow });
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = await a.cache.fetch(spec(bytes, up.open));
    await a.cache.shutdown();
    // What server.close() does next is close the stores: the lease must be gone by now.
    expect(await meta.leaseHolder(sha(bytes))).toBeNull();
    await drain(s.body).catch(() => {});
  });
});

describe('a fill streamed from another replica (peer) lets no lease behind', () => {
  it.each([0, 30, 100])('streaming from the filler, shut down %i ms into the stream: never takes the lease, asks no upstream', async (delay) => {
    const { meta, a, b, bytes, upA, upB, sa, sb } = await peerPair();
    expect(sb.cache).toBe('join');
    await tick(delay);
    const cutAt = Date.now();
    await b.cache.shutdown();
    await drain(sb.body).catch(() => {});
    expect((await meta.leaseHolder(sha(bytes)))?.owner).toBe('replica-a');
    upA.bodies[0].end(bytes.subarray(1000));
    expect((await drain(sa.body)).equals(bytes)).toBe(true);
    expect(await sa.committed).toBe(true);
    await released(meta, a, sha(bytes), upA);
    await released(meta, b, sha(bytes), upB, cutAt);
    expect(upB.opens).toBe(0);
    expect(b.calls.filter((c) => c.op === 'take' && c.took)).toEqual([]);
  });

  it('the filler shuts down mid-stream: the peer takes the lease over, fills from upstream, and lets it go at its commit', async () => {
    const { meta, a, b, bytes, upA, upB, sa, sb } = await peerPair();
    expect(sb.cache).toBe('join');
    const got = drain(sb.body);
    await a.cache.shutdown();
    await drain(sa.body).catch(() => {});
    expect((await got).equals(bytes)).toBe(true);
    expect(await sb.committed).toBe(true);
    expect(upB.opens).toBe(1);
    await released(meta, a, sha(bytes), upA);
    await released(meta, b, sha(bytes), upB);
  });

  it('the filler shuts down mid-stream, and the peer too once it took the lease over: released, nothing opened after', async () => {
    const { meta, a, b, bytes, upA, upB, sa, sb } = await peerPair('held');
    const got = drain(sb.body).catch((e: Error) => e);
    await a.cache.shutdown();
    await drain(sa.body).catch(() => {});
    await until(() => upB.opens === 1);
    expect((await meta.leaseHolder(sha(bytes)))?.owner).toBe('replica-b');
    const cutAt = Date.now();
    await b.cache.shutdown();
    expect(await got).toBeInstanceOf(Error);
    await released(meta, b, sha(bytes), upB, cutAt);
    expect(upB.signals[0].aborted).toBe(true);
  });

  /** A "filler" that holds the lease and answers its route when `answer()` is called (at once with `now`), then streams 1000 bytes and stalls. */
  async function slowFiller(meta: SqliteMetaStore, bytes: Buffer, now: boolean) {
    const f = { asked: 0, closed: 0, answer: () => {} };
    const answered = new Promise<void>((r) => (f.answer = r));
    if (now) f.answer();
    const server = createServer((req, res) => {
      f.asked++;
      const ok = checkPeerRequest(SECRET, req.url!, req.headers['x-airlock-fleet'] as string);
      if (!('nonce' in ok)) return res.writeHead(401).end();
      res.on('close', () => f.closed++);
      void answered.then(() => {
        res.writeHead(200, {
          'x-airlock-size': bytes.length,
          'content-length': bytes.length,
          'x-airlock-fleet-proof': peerProof(SECRET, ok.nonce, sha(bytes), 0, bytes.length),
        });
        res.write(bytes.subarray(0, 1000));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    expect(await meta.takeLease(sha(bytes), 'replica-a', 60_000, addr)).toBe(true);
    return f;
  }

  it('shut down while it asks the lease store who holds the lease: the filling replica is not asked after the cancel', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const bytes = randomBytes(300_000);
    const f = await slowFiller(meta, bytes, true);
    // The store answers "who holds it" after 40 ms (a database over the network).
    const slowHolder: LeaseStore = {
      takeLease: (...a) => meta.takeLease(...a),
      renewLease: (...a) => meta.renewLease(...a),
      releaseLease: (...a) => meta.releaseLease(...a),
      awaitRelease: (...a) => meta.awaitRelease(...a),
      leaseHolder: async (s) => (await tick(40), meta.leaseHolder(s)),
    };
    const b = await replica(meta, 'replica-b', { peer: true, staleMs: 60_000, leases: slowHolder });
    const upB = upstream(bytes);
    const sb = b.cache.fetch(spec(bytes, upB.open)).catch((e: Error) => e);
    await until(() => b.count('holder') >= 1);
    const cutAt = Date.now();
    await b.cache.shutdown();
    await tick(300);
    expect(f.asked).toBe(0);
    expect(await Promise.race([sb, tick(1).then(() => 'pending')])).toBeInstanceOf(Error);
    expect(upB.opens).toBe(0);
    await released(meta, b, sha(bytes), upB, cutAt);
    expect(f.closed).toBe(f.asked);
  });

  it('shut down while its request to the filling replica is unanswered: that request is closed once answered, no lease, no upstream', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const bytes = randomBytes(300_000);
    const f = await slowFiller(meta, bytes, false);
    const b = await replica(meta, 'replica-b', { peer: true, staleMs: 60_000 });
    const upB = upstream(bytes);
    const sb = b.cache.fetch(spec(bytes, upB.open)).catch((e: Error) => e);
    await until(() => f.asked >= 1);
    const cutAt = Date.now();
    await b.cache.shutdown();
    await tick(50);
    f.answer();
    await tick(200);
    expect(await Promise.race([sb, tick(1).then(() => 'pending')])).toBeInstanceOf(Error);
    expect(b.calls.filter((c) => c.op === 'take' && c.took)).toEqual([]);
    expect(upB.opens).toBe(0);
    await released(meta, b, sha(bytes), upB, cutAt);
    expect(f.asked).toBe(1);
    // The cancelled fill does not keep reading (or holding open) the filler's answer.
    await until(() => f.closed === 1, 2000);
  });
});
