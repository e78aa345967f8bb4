import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { BlobStore, QuarantineLimits } from '../../src/storage/blob-store.js';

/**
 * The BlobStore contract (src/storage/blob-store.ts), which every blob backend must pass: call it
 * with a factory returning a fresh, empty store. The filesystem store runs it in
 * test/unit/sqlite-contracts.test.ts; an S3-compatible store will run the same.
 */
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function read(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A spooled file, as a fill leaves it in the store's spool directory. */
function spooled(store: BlobStore, bytes: Buffer): string {
  const p = join(store.spoolDir, `${sha(bytes)}.${randomBytes(4).toString('hex')}.part`);
  writeFileSync(p, bytes);
  return p;
}

export function blobStoreContract(name: string, fresh: (opts?: { quarantine?: QuarantineLimits }) => Promise<BlobStore>): void {
  describe(`BlobStore contract: ${name}`, () => {
    it('takes a spooled file under its digest, then stats, opens, ranges and deletes it', async () => {
      const s = await fresh();
      const bytes = randomBytes(300_000);
      const h = sha(bytes);
      expect(await s.stat(h)).toBeNull();
      await expect(s.open(h)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      const tmp = spooled(s, bytes);
      await s.putFile(h, tmp);
      expect(existsSync(tmp)).toBe(false);
      expect(await s.stat(h)).toMatchObject({ size: bytes.length });
      expect((await read(await s.open(h))).equals(bytes)).toBe(true);
      expect((await read(await s.open(h, { start: 1000, end: 1999 }))).equals(bytes.subarray(1000, 2000))).toBe(true);
      expect((await read(await s.open(h, { start: bytes.length - 1, end: bytes.length - 1 }))).equals(bytes.subarray(-1))).toBe(true);
      await s.delete(h);
      expect(await s.stat(h)).toBeNull();
      await s.delete(h); // deleting what is absent is not an error
    });

    it('refuses names that are not a sha256 digest', async () => {
      const s = await fresh();
      await expect(s.open('../../etc/passwd')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
      await expect(s.stat('ABC')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    });

    it('quarantines bytes out of their content address, keeping them for inspection', async () => {
      const s = await fresh();
      const bytes = randomBytes(1000);
      const h = sha(bytes);
      await s.putFile(h, spooled(s, bytes));
      const kept = await s.quarantine(h);
      expect(kept).not.toBeNull();
      expect(await s.stat(h)).toBeNull();
      await expect(s.open(h)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      if (kept && existsSync(kept)) expect(readFileSync(kept).equals(bytes)).toBe(true);
      expect(await s.quarantine(h)).toBeNull();
    });

    it('keeps its quarantine within its size limit, oldest removed first (one larger than the limit is not kept)', async () => {
      const s = await fresh({ quarantine: { maxBytes: 2500, maxAgeMs: 86_400_000 } });
      const kept: (string | null)[] = [];
      for (let i = 0; i < 3; i++) {
        const bytes = randomBytes(1000);
        await s.putFile(sha(bytes), spooled(s, bytes));
        kept.push(await s.quarantine(sha(bytes)));
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(kept.every((k) => k !== null)).toBe(true);
      // A local quarantine can be looked at: the oldest went to make room.
      if (!kept[0]!.startsWith('s3://')) expect(kept.map((k) => existsSync(k!))).toEqual([false, true, true]);
      const tiny = await fresh({ quarantine: { maxBytes: 500, maxAgeMs: 86_400_000 } });
      const big = randomBytes(1000);
      await tiny.putFile(sha(big), spooled(tiny, big));
      expect(await tiny.quarantine(sha(big))).toBeNull();
      expect(await tiny.stat(sha(big))).toBeNull();
    });
  });
}
