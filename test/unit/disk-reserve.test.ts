import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BlobCache, type CacheOptions } from '../../src/core/cache.js';
import { DiskReserve, freeBytesAt } from '../../src/core/disk-reserve.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

const hashes = new HashPool(1);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const KB = 1000;

/** Bytes of every file under dir (blobs, spool, the "record"): a disk of `capacity` holding only them. */
const used = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? used(join(dir, e.name)) : statSync(join(dir, e.name)).size), 0);

/** A cache over a simulated disk of `capacity` bytes with a reserve of `reserve`. */
async function setup(capacity: number, reserve: number, opts: CacheOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-reserve-'));
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  const disk = new DiskReserve(reserve, async () => capacity - used(dir));
  const refused: number[] = [];
  const evicted: string[] = [];
  const cache = new BlobCache(store, meta, hashes, {
    ...opts,
    disk,
    onDiskRefused: (_sha, short) => refused.push(short),
    onEvict: (_n, _b, _s, why) => evicted.push(why),
  });
  return { dir, store, meta, disk, cache, refused, evicted };
}

const upstream = (bytes: Buffer) => async (): Promise<{ body: Readable; size: number }> => {
  const body = new PassThrough();
  body.end(bytes);
  return { body, size: bytes.length };
};

async function pull(cache: BlobCache, bytes: Buffer): Promise<string> {
  const s = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: upstream(bytes) });
  const got: Buffer[] = [];
  for await (const c of s.body) got.push(c as Buffer);
  expect(Buffer.concat(got).equals(bytes)).toBe(true);
  await s.committed;
  return s.cache;
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('disk reserve (cache.min_free_bytes)', () => {
  it('a new fill that would take the disk below the reserve evicts the least recently used blobs first, then is filled', async () => {
    const { cache, meta, refused, evicted } = await setup(2000 * KB, 500 * KB);
    const [a, b, c, d] = [0, 1, 2, 3].map(() => randomBytes(400 * KB));
    for (const f of [a, b, c]) {
      expect(await pull(cache, f)).toBe('miss');
      await tick();
    }
    // a used again: b is now the least recently used. 1200 KB used, 800 KB free: d needs 400 KB above the 500 KB reserve.
    expect(await pull(cache, a)).toBe('hit');
    await tick();
    expect(await pull(cache, d)).toBe('miss');
    expect(await meta.getBlob(sha(b))).toBeNull();
    for (const kept of [a, c, d]) expect(await meta.getBlob(sha(kept))).not.toBeNull();
    expect(refused).toEqual([]);
    expect(evicted).toEqual(['min_free_bytes']);
  });

  it('with nothing evictable a new fill is refused (DISK_RESERVE, 503) and a warm hit is still served', async () => {
    const { cache, meta, dir, disk, refused } = await setup(2000 * KB, 500 * KB);
    const warm = randomBytes(300 * KB);
    expect(await pull(cache, warm)).toBe('miss');
    // The warm blob is being read (never evicted while read); the rest of the disk is taken by others.
    const held = await cache.fetch({ sha256: sha(warm), size: warm.length, open: upstream(warm) });
    expect(held.cache).toBe('hit');
    writeFileSync(join(dir, 'other'), Buffer.alloc(1300 * KB));
    const cold = randomBytes(100 * KB);
    const err = await cache.fetch({ sha256: sha(cold), size: cold.length, open: upstream(cold) }).then(
      () => null,
      (e: { code: string; status: number; message: string }) => e,
    );
    expect(err?.code).toBe('DISK_RESERVE');
    expect(err?.status).toBe(503);
    expect(err?.message).toMatch(/cache\.min_free_bytes/);
    expect(refused).toEqual([200 * KB]);
    expect(await meta.getBlob(sha(cold))).toBeNull();
    expect(await meta.getBlob(sha(warm))).not.toBeNull();
    expect(disk.warning()).toMatch(/below cache\.min_free_bytes \(400000 of 500000 bytes free\)/);
    held.body.destroy();
    // Another read of the warm blob is served (a hit writes nothing).
    expect(await pull(cache, warm)).toBe('hit');
  });

  it('when the record (another file on the disk) grows into the reserve, the cache gives way, least recently used first; the record is untouched', async () => {
    const { cache, meta, dir, disk } = await setup(2000 * KB, 500 * KB, { maxBytes: 10_000 * KB });
    const files = [0, 1, 2, 3].map(() => randomBytes(300 * KB));
    for (const f of files) {
      await pull(cache, f);
      await tick();
    }
    await cache.checkDisk();
    expect(disk.warning()).toBeNull();
    // 1200 KB of blobs, then a 550 KB "record": 250 KB free, 250 KB short of the reserve (300 KB evicted with the slack).
    const record = join(dir, 'airlock.db');
    writeFileSync(record, Buffer.alloc(550 * KB));
    await cache.checkDisk();
    expect(await meta.getBlob(sha(files[0]))).toBeNull();
    for (const kept of files.slice(1)) expect(await meta.getBlob(sha(kept))).not.toBeNull();
    expect(existsSync(record) && statSync(record).size).toBe(550 * KB);
    expect(disk.warning()).toBeNull();
  });

  it('when eviction cannot restore the reserve, warm blobs are kept and new fills refused, until the record is down to its own reserve: then the cache gives it all it can', async () => {
    const { cache, meta, dir, disk, evicted } = await setup(2000 * KB, 800 * KB);
    const [a, b] = [0, 1].map(() => randomBytes(300 * KB));
    for (const f of [a, b]) await pull(cache, f);
    const held = await cache.fetch({ sha256: sha(b), size: b.length, open: upstream(b) });
    // 400 KB free, 400 KB short; only a (300 KB) could be evicted: that would not do, so nothing is.
    const record = join(dir, 'airlock.db');
    writeFileSync(record, Buffer.alloc(1000 * KB));
    await cache.checkDisk();
    const cold = randomBytes(100 * KB);
    await expect(cache.fetch({ sha256: sha(cold), size: cold.length, open: upstream(cold) })).rejects.toMatchObject({ code: 'DISK_RESERVE' });
    expect(evicted).toEqual([]);
    expect(await pull(cache, a)).toBe('hit');
    expect(disk.warning()).toMatch(/below cache\.min_free_bytes \(400000 of 800000 bytes free\)/);
    // The record grows to 150 KB free, under its own reserve (200 KB): a goes; b, being read, stays.
    writeFileSync(record, Buffer.alloc(1250 * KB));
    await disk.free();
    expect(disk.warning()).toMatch(/down to the record's own reserve \(150000 bytes free/);
    await cache.checkDisk();
    expect(evicted).toEqual(['min_free_bytes']);
    expect(await meta.getBlob(sha(a))).toBeNull();
    expect(await meta.getBlob(sha(b))).not.toBeNull();
    expect(statSync(record).size).toBe(1250 * KB);
    expect(disk.warning()).toMatch(/\(450000 of 800000 bytes free\)/);
    held.body.destroy();
  });

  it('fills under way count against the reserve with the bytes they have yet to write', async () => {
    const { cache, refused } = await setup(2000 * KB, 500 * KB);
    const big = randomBytes(1400 * KB);
    const body = new PassThrough();
    const first = await cache.fetch({ sha256: sha(big), size: big.length, open: async () => ({ body, size: big.length }) });
    body.write(big.subarray(0, 100 * KB));
    // 1900 KB free now, but 1300 KB of them are the first fill's: a second 200 KB fill would leave 400 KB.
    const next = randomBytes(200 * KB);
    await expect(cache.fetch({ sha256: sha(next), size: next.length, open: upstream(next) })).rejects.toMatchObject({ code: 'DISK_RESERVE' });
    expect(refused.length).toBe(1);
    body.end(big.subarray(100 * KB));
    const got: Buffer[] = [];
    for await (const c of first.body) got.push(c as Buffer);
    expect(Buffer.concat(got).equals(big)).toBe(true);
    expect(await first.committed).toBe(true);
  });

  it('measures a real filesystem with statfs', async () => {
    const free = await freeBytesAt(tmpdir())();
    expect(free).toBeGreaterThan(0);
    expect(Number.isSafeInteger(free)).toBe(true);
  });
});
