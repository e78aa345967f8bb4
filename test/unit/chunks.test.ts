import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { verifiedStoreBytes } from '../../src/core/cache-hit.js';
import { ChunkHasher, makeChunkList, usableChunks, verifyingRange } from '../../src/core/chunks.js';
import { HashPool } from '../../src/core/hasher.js';
import { scrubStore } from '../../src/core/scrub.js';
import { quarantineExcess } from '../../src/storage/blob-store.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const CS = 1000;

/** Chunk digests computed the slow, obvious way. */
function listOf(bytes: Buffer, cs = CS) {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += cs)
    parts.push(
      createHash('sha256')
        .update(bytes.subarray(i, i + cs))
        .digest(),
    );
  return makeChunkList(sha(bytes), bytes.length, Buffer.concat(parts), cs);
}

/** Run bytes of the aligned span through a verifying range, fed in odd-sized pieces. */
async function through(bytes: Buffer, stored: Buffer, r: { start: number; end: number }) {
  const rots: string[] = [];
  const list = listOf(bytes);
  const v = verifyingRange(sha(bytes), bytes.length, list, r, async (_got, e) => void rots.push(e.message));
  const start = Math.floor(r.start / CS) * CS;
  const end = Math.min(stored.length, (Math.floor(r.end / CS) + 1) * CS);
  const span = stored.subarray(start, end);
  const pieces: Buffer[] = [];
  for (let i = 0; i < span.length; i += 333) pieces.push(span.subarray(i, i + 333));
  const out: Buffer[] = [];
  let error: Error | null = null;
  try {
    for await (const b of Readable.from(pieces).pipe(v)) out.push(b as Buffer);
  } catch (e) {
    error = e as Error;
  }
  return { body: Buffer.concat(out), error, rots };
}

describe('chunk digests', () => {
  it('ChunkHasher gives the whole digest and one digest per chunk, however the bytes are split', () => {
    const bytes = randomBytes(3500);
    const h = new ChunkHasher(CS);
    for (let i = 0; i < bytes.length; i += 777) h.update(bytes.subarray(i, i + 777));
    const { digest, digests } = h.digest();
    expect(digest).toBe(sha(bytes));
    expect(digests.equals(listOf(bytes).digests)).toBe(true);
    expect(digests.length).toBe(4 * 32);
  });

  it('the hash workers compute the same chunk list as the fill writes the spool file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-chunks-'));
    const bytes = randomBytes((1 << 20) * 2 + 12345);
    const path = join(dir, 'spool');
    writeFileSync(path, bytes);
    const pool = new HashPool(1);
    const job = pool.start(path);
    job.progress(1 << 20);
    const { digest, chunks } = await job.finish(bytes.length);
    await pool.close();
    const h = new ChunkHasher();
    h.update(bytes);
    expect(digest).toBe(sha(bytes));
    expect(chunks.equals(h.digest().digests)).toBe(true);
  });

  it('a list is used only when whole and bound to its blob: altered, cut short or moved to another blob, it counts as none', () => {
    const bytes = randomBytes(3500);
    const list = listOf(bytes);
    expect(usableChunks(list, sha(bytes), bytes.length)).toBe(list);
    const altered = Buffer.from(list.digests);
    altered[40] ^= 1;
    expect(usableChunks({ ...list, digests: altered }, sha(bytes), bytes.length)).toBeNull();
    expect(usableChunks({ ...list, digests: list.digests.subarray(0, 96) }, sha(bytes), bytes.length)).toBeNull();
    expect(usableChunks(list, sha(randomBytes(10)), bytes.length)).toBeNull();
    expect(usableChunks(list, sha(bytes), bytes.length + 1)).toBeNull();
    expect(usableChunks(null, sha(bytes), bytes.length)).toBeNull();
  });

  it('a verifying range passes exactly the bytes asked for, from sound chunks', async () => {
    const bytes = randomBytes(3500);
    for (const r of [
      { start: 0, end: 0 },
      { start: 0, end: 3499 },
      { start: 999, end: 1000 },
      { start: 1500, end: 2999 },
      { start: 3400, end: 3499 },
      { start: 3000, end: 3000 },
    ]) {
      const got = await through(bytes, bytes, r);
      expect(got.error, JSON.stringify(r)).toBeNull();
      expect(got.body.equals(bytes.subarray(r.start, r.end + 1)), JSON.stringify(r)).toBe(true);
    }
  });

  it('a rotted chunk fails the stream before any of its bytes go out, and the blob is reported once', async () => {
    const bytes = randomBytes(3500);
    for (const at of [0, 1500, 3499]) {
      const stored = Buffer.from(bytes);
      stored[at] ^= 1;
      const got = await through(bytes, stored, { start: 0, end: 3499 });
      expect(got.error?.message).toMatch(/has a chunk at byte \d+ that hashes to/);
      expect(got.rots).toHaveLength(1);
      // At most the whole chunks before the rotted one went out (buffered ones are dropped with the error), and they are right.
      expect(got.body.length).toBeLessThanOrEqual(Math.floor(at / CS) * CS);
      expect(got.body.length % CS).toBe(0);
      expect(got.body.equals(bytes.subarray(0, got.body.length))).toBe(true);
    }
    // A file cut short fails too (its last chunk never completes).
    const short = await through(bytes, bytes.subarray(0, 3200), { start: 3100, end: 3499 });
    expect(short.error?.message).toMatch(/short of its recorded 3500 bytes/);
    expect(short.body.length).toBe(0);
  });
});

describe('quarantine limits', () => {
  it('removes what is older than the age limit, then the oldest until the rest fit', () => {
    const day = 86_400_000;
    const now = 10 * day;
    const e = (at: number, size: number) => ({ at, size });
    const limits = { maxBytes: 3000, maxAgeMs: 7 * day };
    expect(quarantineExcess([e(now - 8 * day, 10), e(now - 1, 1000)], limits, now)).toEqual([e(now - 8 * day, 10)]);
    expect(quarantineExcess([e(now - 3, 1500), e(now - 1, 1000), e(now - 2, 1000)], limits, now)).toEqual([e(now - 3, 1500)]);
    expect(quarantineExcess([e(now - 1, 5000)], limits, now)).toEqual([e(now - 1, 5000)]);
    expect(quarantineExcess([e(now - 1, 3000)], limits, now)).toEqual([]);
  });
});

describe('the cache and the scrub keep chunk lists', () => {
  const setup = async (maxBytes = 0) => {
    const store = await FsBlobStore.create(mkdtempSync(join(tmpdir(), 'airlock-chunks-')));
    const meta = new SqliteMetaStore(':memory:');
    return { store, meta, cache: new BlobCache(store, meta, new HashPool(1), { maxBytes }) };
  };
  const pull = async (cache: BlobCache, bytes: Buffer) => {
    const s = await cache.fetch({
      sha256: sha(bytes),
      size: bytes.length,
      open: async () => {
        const body = new PassThrough();
        body.end(bytes);
        return { body, size: bytes.length };
      },
    });
    const out: Buffer[] = [];
    for await (const b of s.body) out.push(b as Buffer);
    return { body: Buffer.concat(out), committed: await s.committed };
  };

  it('a fill writes the chunk list with the blob, bound to it', async () => {
    const { cache, meta } = await setup();
    const bytes = randomBytes((1 << 20) + 5);
    expect((await pull(cache, bytes)).committed).toBe(true);
    const list = usableChunks(await meta.getChunks(sha(bytes)), sha(bytes), bytes.length);
    expect(list?.digests.length).toBe(64);
  });

  it('the scrub writes the chunk list of a verified blob that has none', async () => {
    const { cache, meta } = await setup();
    const bytes = randomBytes(5000);
    await pull(cache, bytes);
    await meta.deleteBlob(sha(bytes));
    await meta.putBlob({ sha256: sha(bytes), size: bytes.length, createdAt: 1 });
    expect(await meta.getChunks(sha(bytes))).toBeNull();
    const r = await scrubStore(meta, cache.store);
    expect(r).toMatchObject({ checked: 1, listed: 1, corrupt: [] });
    expect(usableChunks(await meta.getChunks(sha(bytes)), sha(bytes), bytes.length)).not.toBeNull();
    expect((await scrubStore(meta, cache.store)).listed).toBe(0);
  });

  it('a file larger than half of max_bytes is served whole and verified, but not kept: the cache is not flushed', async () => {
    const { cache, meta } = await setup(1_000_000);
    const small = [randomBytes(200_000), randomBytes(200_000), randomBytes(200_000)];
    for (const b of small) expect((await pull(cache, b)).committed).toBe(true);
    const large = randomBytes(600_000);
    const got = await pull(cache, large);
    expect(got.body.equals(large)).toBe(true);
    expect(got.committed).toBe(false);
    expect(await meta.getBlob(sha(large))).toBeNull();
    for (const b of small) expect(await meta.getBlob(sha(b))).not.toBeNull();
    expect(await cache.store.stat(sha(large))).toBeNull();
    // Half or less is kept, evicting the least recently used as before.
    const half = randomBytes(500_000);
    expect((await pull(cache, half)).committed).toBe(true);
    await cache.evict();
    expect(await meta.getBlob(sha(half))).not.toBeNull();
    expect((await meta.blobTotals()).bytes).toBeLessThanOrEqual(900_000);
  });

  it('cache.fileBytes hands out only verified bytes: a rotted chunk is never read, the blob is quarantined and forgotten', async () => {
    const { cache, meta, store } = await setup();
    const bytes = randomBytes(3 * (1 << 20) + 17);
    await pull(cache, bytes);
    const good = await cache.fileBytes(sha(bytes));
    expect((await good!.read(5, 100)).equals(bytes.subarray(5, 105))).toBe(true);
    expect((await good!.read((1 << 20) - 10, 30)).equals(bytes.subarray((1 << 20) - 10, (1 << 20) + 20))).toBe(true);
    // One bit flipped on disk in the third chunk: reads of clean chunks still verify, a read over the rotted one throws.
    const dir = (store as unknown as { blobDir: string }).blobDir;
    const rotted = Buffer.from(bytes);
    rotted[2 * (1 << 20) + 3] ^= 1;
    writeFileSync(join(dir, sha(bytes).slice(0, 2), sha(bytes)), rotted);
    const f = await cache.fileBytes(sha(bytes));
    expect((await f!.read(0, 10)).equals(bytes.subarray(0, 10))).toBe(true);
    await expect(f!.read(2 * (1 << 20), 10)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await meta.getBlob(sha(bytes))).toBeNull();
    expect(readdirSync(join(dir, '..', '..', 'quarantine')).filter((n) => n.startsWith(sha(bytes)))).toHaveLength(1);
    expect(await cache.fileBytes(sha(bytes))).toBeNull();
  });

  it('verifiedStoreBytes: a file cut short fails its last chunk', async () => {
    const { store } = await setup();
    const bytes = randomBytes(2500);
    const rots: string[] = [];
    const tmp = join(store.spoolDir, 'x.part');
    writeFileSync(tmp, bytes.subarray(0, 2400));
    await store.putFile(sha(bytes), tmp);
    const f = verifiedStoreBytes(store, sha(bytes), bytes.length, listOf(bytes), async (got) => void rots.push(got));
    expect((await f.read(0, 1000)).equals(bytes.subarray(0, 1000))).toBe(true);
    await expect(f.read(2000, 500)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(rots).toEqual(['a truncated file']);
  });
});
