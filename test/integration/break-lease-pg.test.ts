import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { AirlockError } from '../../src/core/errors.js';
import type { FillBudget, FillSpec } from '../../src/core/fill.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * The fleet lease's end on a real PostgreSQL 15 (break-lease.test.ts does the same on SQLite): its
 * calls answer over the network, so a release not waited for, or a take answered after a cancel,
 * shows here. Each replica has a store of its own (its own pool), as separate processes would.
 */
const hashes = new HashPool(1);
const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
let pgsrv: TestPostgres;
let seq = 0;
const dirs: string[] = [];
const opened: PgMetaStore[] = [];

beforeAll(async () => {
  pgsrv = await startPostgres();
}, 60_000);
afterAll(async () => {
  for (const s of opened) await s.close().catch(() => {});
  await pgsrv?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Two replicas' stores on one fresh schema, and one blob directory they share. */
async function fleet() {
  const schema = `lease_${process.pid}_${seq++}`;
  const metaA = await PgMetaStore.open(pgsrv.url, { schema });
  const metaB = await PgMetaStore.open(pgsrv.url, { schema });
  opened.push(metaA, metaB);
  const dir = mkdtempSync(join(tmpdir(), 'airlock-break-lease-pg-'));
  dirs.push(dir);
  const cacheOf = async (meta: PgMetaStore, owner: string, staleMs = 600) =>
    new BlobCache(await FsBlobStore.create(dir, { cleanSpool: false }), meta, hashes, { budget: NO_LIMITS, fleet: { leases: meta, owner, staleMs } });
  return { metaA, metaB, a: await cacheOf(metaA, 'replica-a'), b: await cacheOf(metaB, 'replica-b') };
}

function upstream(bytes: Buffer, how: 'whole' | 'held' | 'reject' = 'whole') {
  const u = {
    opens: 0,
    bodies: [] as PassThrough[],
    open: async (): Promise<{ body: Readable; size: number }> => {
      u.opens++;
      if (how === 'reject') throw new AirlockError('UPSTREAM_UNAVAILABLE', 'upstream answered 502');
      const body = new PassThrough();
      u.bodies.push(body);
      if (how === 'whole') body.end(bytes);
      else body.write(bytes.subarray(0, 1000));
      return { body, size: bytes.length };
    },
  };
  return u;
}
const spec = (bytes: Buffer, open: FillSpec['open']): FillSpec => ({ sha256: sha(bytes), size: bytes.length, open });
async function drain(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('the fleet lease on PostgreSQL is gone when its fill is', () => {
  it('committed: once `committed` resolves, another replica takes the lease at once', async () => {
    const { metaB, a } = await fleet();
    const bytes = randomBytes(200_000);
    const s = await a.fetch(spec(bytes, upstream(bytes).open));
    await drain(s.body);
    expect(await s.committed).toBe(true);
    expect(await metaB.leaseHolder(sha(bytes))).toBeNull();
    expect(await metaB.takeLease(sha(bytes), 'replica-b', 60_000)).toBe(true);
  });

  it('failed (502): once the fill is over, another replica takes the lease at once', async () => {
    const { metaB, a } = await fleet();
    const bytes = randomBytes(200_000);
    await expect(a.fetch(spec(bytes, upstream(bytes, 'reject').open))).rejects.toThrow(/502/);
    await a.idle();
    expect(await metaB.leaseHolder(sha(bytes))).toBeNull();
    expect(await metaB.takeLease(sha(bytes), 'replica-b', 60_000)).toBe(true);
  });

  it('cancelled by shutdown mid-stream: the lease row is gone once shutdown resolves, and after the store is closed', async () => {
    const { metaA, metaB, a } = await fleet();
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = await a.fetch(spec(bytes, up.open));
    expect((await metaB.leaseHolder(sha(bytes)))?.owner).toBe('replica-a');
    await a.shutdown();
    // Resolved: the row is gone, whatever the database's latency (the release is not left on the wire).
    const atShutdown = await metaB.leaseHolder(sha(bytes));
    await metaA.close();
    await drain(s.body).catch(() => {});
    await tick(100);
    expect(await metaB.leaseHolder(sha(bytes))).toBeNull();
    expect(atShutdown).toBeNull();
    expect(await metaB.takeLease(sha(bytes), 'replica-b', 60_000)).toBe(true);
  });

  it.each([0, 1, 2, 4, 8])('cancelled %i ms after the fetch (the take may be on the wire): no lease left, nothing opened after', async (delay) => {
    const { metaB, a } = await fleet();
    const bytes = randomBytes(200_000);
    const up = upstream(bytes, 'held');
    const s = a.fetch(spec(bytes, up.open)).catch((e: Error) => e);
    await tick(delay);
    await a.shutdown();
    const opensAtCut = up.opens;
    try {
      const got = await Promise.race([s, tick(1000).then(() => 'pending' as const)]);
      if (got !== 'pending' && !(got instanceof Error)) got.body.destroy();
      await tick(300); // two renewal periods (staleMs 600)
      expect(await metaB.leaseHolder(sha(bytes))).toBeNull();
      expect(up.opens).toBe(opensAtCut);
    } finally {
      await a.shutdown();
    }
  });

  it("cancelled while it waits (LISTEN) for another replica's lease, released 0-100 ms later: never taken, nothing opened", async () => {
    const { metaB, a } = await fleet();
    for (const later of [0, 30, 100]) {
      const bytes = randomBytes(10_000);
      expect(await metaB.takeLease(sha(bytes), 'replica-b', 60_000)).toBe(true);
      const up = upstream(bytes);
      const s = a.fetch(spec(bytes, up.open)).catch((e: Error) => e);
      await tick(100);
      await a.shutdown();
      expect(await s).toBeInstanceOf(Error);
      await tick(later);
      await metaB.releaseLease(sha(bytes), 'replica-b');
      await tick(300);
      expect(await metaB.leaseHolder(sha(bytes))).toBeNull();
      expect(up.opens).toBe(0);
    }
  });

  it("a failed fill's release does not take the lease of the same replica's next fill of the blob", async () => {
    const { metaB, a } = await fleet();
    const bytes = randomBytes(200_000);
    const bad = upstream(bytes, 'reject');
    await expect(a.fetch(spec(bytes, bad.open))).rejects.toThrow(/502/);
    // Retried at once: the second fill holds the lease while it runs.
    const up = upstream(bytes, 'held');
    const s = await a.fetch(spec(bytes, up.open));
    await tick(100);
    expect((await metaB.leaseHolder(sha(bytes)))?.owner).toBe('replica-a');
    up.bodies[0].end(bytes.subarray(1000));
    await drain(s.body);
    expect(await s.committed).toBe(true);
  });
});
