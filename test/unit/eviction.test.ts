import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BlobCache, type CacheOptions } from '../../src/core/cache.js';
import { HashPool } from '../../src/core/hasher.js';
import { backgroundScrub, scrubStore } from '../../src/core/scrub.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import type { LeaseStore } from '../../src/storage/meta-store.js';

const hashes = new HashPool(1);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup(opts: CacheOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-evict-'));
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  return { dir, store, meta, cache: new BlobCache(store, meta, hashes, opts) };
}

const upstream = (bytes: Buffer) => async (): Promise<{ body: Readable; size: number }> => {
  const body = new PassThrough();
  body.end(bytes);
  return { body, size: bytes.length };
};

async function pull(cache: BlobCache, bytes: Buffer): Promise<string> {
  const s = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: upstream(bytes) });
  for await (const _ of s.body) {
    /* drain */
  }
  await s.committed;
  return s.cache;
}

describe('bounded cache', () => {
  it('evicts the least recently used blobs past max_bytes, never one being read, and an evicted one is fetched again', async () => {
    const evictions: number[] = [];
    let stored = -1;
    const { cache, meta } = await setup({ maxBytes: 1_000_000, onEvict: (n) => evictions.push(n), onStored: (b) => (stored = b) });
    const files = [0, 1, 2, 3, 4].map(() => randomBytes(300_000));
    for (const f of files.slice(0, 3)) await pull(cache, f);
    // files[0] is used again (most recent now); files[1] is being read and held open.
    await new Promise((r) => setTimeout(r, 5));
    expect(await pull(cache, files[0])).toBe('hit');
    const held = await cache.fetch({ sha256: sha(files[1]), size: files[1].length, open: upstream(files[1]) });
    expect(held.cache).toBe('hit');
    await pull(cache, files[3]); // 1.2 MB: over the limit
    await cache.evict();
    await pull(cache, files[4]);
    await cache.evict();
    const totals = await meta.blobTotals();
    expect(totals.bytes).toBeLessThanOrEqual(1_000_000);
    expect(stored).toBe(totals.bytes);
    expect(evictions.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
    // The blob being read was not evicted; the least recently used (files[2]) was.
    expect(await meta.getBlob(sha(files[1]))).not.toBeNull();
    expect(await meta.getBlob(sha(files[2]))).toBeNull();
    expect(await meta.getBlob(sha(files[4]))).not.toBeNull();
    const rest: Buffer[] = [];
    for await (const c of held.body) rest.push(c as Buffer);
    expect(Buffer.concat(rest).equals(files[1])).toBe(true);
    // An evicted blob is simply fetched and verified again.
    expect(await pull(cache, files[2])).toBe('miss');
  });

  it('scrubs the store: rotted and missing blobs are found, quarantined and forgotten; a paced scrub keeps to its rate', async () => {
    const { cache, meta, store, dir } = await setup();
    const good = randomBytes(2 << 20);
    const bad = randomBytes(100_000);
    const gone = randomBytes(1000);
    for (const f of [good, bad, gone]) await pull(cache, f);
    const rotted = Buffer.from(bad);
    rotted[500] ^= 1;
    writeFileSync(store.pathOf(sha(bad)), rotted);
    await store.delete(sha(gone));
    const t0 = Date.now();
    const r = await scrubStore(meta, store, { repair: true, bytesPerSecond: 4 << 20 });
    // ~2.1 MiB at 4 MiB/s: about half a second, not as fast as the disk.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(r.corrupt.map((c) => c.sha256)).toEqual([sha(bad)]);
    expect(r.corrupt[0].got).toBe(sha(rotted));
    expect(r.missing).toEqual([sha(gone)]);
    expect(await meta.getBlob(sha(bad))).toBeNull();
    expect(await meta.getBlob(sha(good))).not.toBeNull();
    const q = readdirSync(join(dir, 'quarantine'));
    expect(q).toHaveLength(1);
    expect(q[0].startsWith(`${sha(bad)}.`)).toBe(true);
    expect(existsSync(store.pathOf(sha(bad)))).toBe(false);
    expect(await pull(cache, bad)).toBe('miss');
  });

  it('the background scrub forgets what rots between pulls, and stops on close', async () => {
    const corrupt: string[] = [];
    const { cache, meta, store } = await setup({ onCorrupt: (h) => corrupt.push(h) });
    const bad = randomBytes(10_000);
    await pull(cache, bad);
    writeFileSync(store.pathOf(sha(bad)), Buffer.alloc(10_000));
    const logs: string[] = [];
    const s = backgroundScrub(cache, { scrub_rate: 100, scrub_every: 3600 }, { info: (_o, m) => logs.push(m), error: (_o, m) => logs.push(m) });
    // Forgetting the row and reporting the corruption are two steps: wait for both.
    for (let i = 0; i < 250 && ((await meta.getBlob(sha(bad))) || corrupt.length === 0); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await meta.getBlob(sha(bad))).toBeNull();
    expect(corrupt).toEqual([sha(bad)]);
    s.stop();
    await s.done;
    expect(logs).toContain('background scrub finished');
  });

  it('reports what its background work could not do: an evicted blob not deleted, a fill lease not renewed or not released', async () => {
    const logged: { level: string; msg: string; digest?: string }[] = [];
    const log = {
      warn: (o: { digest?: string }, msg: string) => void logged.push({ level: 'warn', msg, digest: o.digest }),
      error: (o: { digest?: string }, msg: string) => void logged.push({ level: 'error', msg, digest: o.digest }),
    } as unknown as CacheOptions['log'];
    let renewals = 0;
    const leases: LeaseStore = {
      takeLease: async () => true,
      renewLease: async () => {
        renewals++;
        throw new Error('database unreachable');
      },
      releaseLease: async () => {
        throw new Error('database unreachable');
      },
      awaitRelease: async () => {},
      leaseHolder: async () => null,
    };
    const { cache, store } = await setup({ maxBytes: 150_000, maxFileShare: 1, log, fleet: { leases, owner: 'replica-a', staleMs: 30 } });
    store.delete = async () => {
      throw new Error('permission denied');
    };
    // A slow fill: its lease is renewed (every 10 ms) and fails each time, but is reported once.
    const slow = randomBytes(100_000);
    const body = new PassThrough();
    const s = await cache.fetch({ sha256: sha(slow), size: slow.length, open: async () => ({ body, size: slow.length }) });
    body.write(slow.subarray(0, 1000));
    while (renewals < 4) await new Promise((r) => setTimeout(r, 10));
    body.end(slow.subarray(1000));
    for await (const _ of s.body) {
      /* drain */
    }
    expect(await s.committed).toBe(true);
    const second = randomBytes(100_000);
    await pull(cache, second);
    await cache.evict();
    await new Promise((r) => setTimeout(r, 20));
    // (The slow fill's failures: the second, quick one may see a renewal or not, depending on the machine's load.)
    expect(logged.filter((l) => l.msg.includes('could not be renewed') && l.digest === sha(slow))).toEqual([
      { level: 'warn', msg: expect.stringContaining('another replica may take it over'), digest: sha(slow) },
    ]);
    expect(logged.filter((l) => l.msg.includes('could not be released')).map((l) => l.digest)).toEqual([sha(slow), sha(second)]);
    expect(logged.filter((l) => l.msg.includes('evicted blob could not be deleted'))).toEqual([
      { level: 'warn', msg: expect.stringContaining('space is not freed'), digest: sha(slow) },
    ]);
  });

  it('reports at error level a corrupt blob it could not quarantine (its bytes are lost)', async () => {
    const errors: { digest?: string; msg: string }[] = [];
    const log = {
      warn: () => {},
      error: (o: { digest?: string }, msg: string) => void errors.push({ digest: o.digest, msg }),
    } as unknown as CacheOptions['log'];
    const { cache, store } = await setup({ log });
    const b = randomBytes(1000);
    await pull(cache, b);
    store.quarantine = async () => {
      throw new Error('read-only file system');
    };
    await cache.forget(sha(b), 'f'.repeat(64));
    expect(errors).toEqual([{ digest: sha(b), msg: expect.stringContaining('could not be quarantined') }]);
  });
});
