import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

// A replica whose fill is cancelled (shutdown) while it waits for another replica's lease must not
// take that lease once it is released: nothing would ever fill under it or let it go, and it would
// be renewed for as long as the process lives, so every other replica waits on a fill that never runs.
const hashes = new HashPool(1);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function replica(meta: SqliteMetaStore, owner: string) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-lease-'));
  dirs.push(dir);
  const store = await FsBlobStore.create(dir);
  return new BlobCache(store, meta, hashes, { fleet: { leases: meta, owner, staleMs: 60_000 } });
}

describe('a fleet lease after its fill was cancelled', () => {
  it('a fill cancelled while another replica holds the lease never takes it afterwards, and asks no upstream', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const bytes = randomBytes(10_000);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    expect(await meta.takeLease(sha256, 'replica-b', 60_000)).toBe(true);
    const a = await replica(meta, 'replica-a');
    // Waits for replica-b's release under way (the store polls while the lease is held).
    let waiting = 0;
    const wait = meta.awaitRelease.bind(meta);
    Object.assign(meta, {
      awaitRelease: async (sha: string, ms: number, signal?: AbortSignal) => {
        waiting++;
        await wait(sha, ms, signal).finally(() => waiting--);
      },
    });
    let opened = 0;
    const open = async () => {
      opened++;
      const body = new PassThrough();
      body.end(bytes);
      return { body, size: bytes.length };
    };
    const fetched = a.fetch({ sha256, size: bytes.length, open }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 100)); // replica-a now waits for replica-b's lease
    expect((await meta.leaseHolder(sha256))?.owner).toBe('replica-b');
    await a.shutdown();
    expect(await fetched).toBeInstanceOf(Error);
    // The wait ends at the cancel (it polled until replica-b let go, up to staleMs).
    await new Promise((r) => setTimeout(r, 150));
    expect(waiting).toBe(0);
    // replica-b's fill failed: it lets the lease go. replica-a's wait (awaitRelease polls every 50 ms) ends.
    await meta.releaseLease(sha256, 'replica-b');
    await new Promise((r) => setTimeout(r, 300));
    expect(await meta.leaseHolder(sha256)).toBeNull();
    expect(opened).toBe(0);
    // Another replica may now take it and fill.
    expect(await meta.takeLease(sha256, 'replica-c', 60_000)).toBe(true);
    await meta.close();
  });
});
