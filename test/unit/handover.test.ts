import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Handover } from '../../src/core/handover.js';
import type { BlobStore } from '../../src/storage/blob-store.js';

const sound = Buffer.from('the verified bytes of a blob');
const hex = createHash('sha256').update(sound).digest('hex');

/** A store holding one file whose bytes the test may rot, counting reads. */
function store(): { s: BlobStore; bytes: { b: Buffer }; reads: () => number } {
  const bytes = { b: sound };
  let reads = 0;
  const s = {
    stat: async () => ({ size: bytes.b.length, version: 'v1' }),
    open: async () => {
      reads++;
      return Readable.from([bytes.b]);
    },
  } as unknown as BlobStore;
  return { s, bytes, reads: () => reads };
}

/** A Handover to nginx (recheckMs set) over a cache holding the one blob. */
const checker = (s: BlobStore, recheckMs: number, forget: (sha256: string, got: string) => Promise<void>) =>
  new Handover(
    { store: s, meta: { getBlob: async () => null, deleteBlob: async () => {} }, cachedSize: async () => sound.length, forget },
    async (sha256) => ({ header: ['x-accel-redirect', `/_airlock_blobs/${sha256}`] }),
    recheckMs,
  );

describe('files hashed before nginx sends them (core/handover.ts)', () => {
  it('hashes a file before its first handover and again once its version changes; a rotted one is forgotten', async () => {
    const { s, bytes, reads } = store();
    const forgotten: string[] = [];
    const checks = checker(s, 600_000, async (sha, got) => void forgotten.push(`${sha} ${got}`));
    expect(await checks.sound(hex, sound.length, 'v1')).toBe(true);
    expect(await checks.sound(hex, sound.length, 'v1')).toBe(true);
    expect(reads()).toBe(1);
    // Written behind Airlock's back: a new version, hashed again within the bound.
    bytes.b = Buffer.from(sound);
    bytes.b[3] ^= 1;
    expect(await checks.sound(hex, sound.length, 'v2')).toBe(false);
    expect(reads()).toBe(2);
    expect(forgotten).toEqual([`${hex} ${createHash('sha256').update(bytes.b).digest('hex')}`]);
    // A store that cannot tell versions: hashed every time.
    bytes.b = sound;
    expect(await checks.sound(hex, sound.length, undefined)).toBe(true);
    expect(await checks.sound(hex, sound.length, undefined)).toBe(true);
    expect(reads()).toBe(4);
  });

  it('past recheck_after the same version is hashed again (rot with no write is found then); 0 hashes every time', async () => {
    const { s, bytes, reads } = store();
    const forgotten: string[] = [];
    const zero = checker(s, 0, async (sha) => void forgotten.push(sha));
    expect(await zero.sound(hex, sound.length, 'v1')).toBe(true);
    bytes.b = Buffer.from(sound);
    bytes.b[0] ^= 1;
    expect(await zero.sound(hex, sound.length, 'v1')).toBe(false);
    expect(reads()).toBe(2);
    expect(forgotten).toEqual([hex]);
  });

  it('concurrent handovers of one blob share one hash; a short file fails', async () => {
    const { s, bytes, reads } = store();
    const forgotten: string[] = [];
    const checks = checker(s, 600_000, async (_sha, got) => void forgotten.push(got));
    const all = await Promise.all([1, 2, 3].map(() => checks.sound(hex, sound.length, 'v1')));
    expect(all).toEqual([true, true, true]);
    expect(reads()).toBe(1);
    bytes.b = sound.subarray(0, 5);
    expect(await checks.sound(hex, sound.length, 'v2')).toBe(false);
    expect(forgotten).toEqual([`a file of 5 bytes, not the recorded ${sound.length}`]);
  });

  it('nginx is handed no Range and a whole file only once sound; an offload that is not nginx (presigned) is handed both unhashed', async () => {
    const { s, bytes, reads } = store();
    const nginx = checker(s, 600_000, async () => {});
    expect(await nginx.handOver(hex, true)).toBeUndefined();
    expect(await nginx.handOver(hex, false)).toEqual({ size: sound.length, to: { header: ['x-accel-redirect', `/_airlock_blobs/${hex}`] } });
    expect(reads()).toBe(1);
    bytes.b = Buffer.from(sound);
    bytes.b[1] ^= 1;
    const other = new Handover(
      { store: s, meta: { getBlob: async () => null, deleteBlob: async () => {} }, cachedSize: async () => sound.length, forget: async () => {} },
      async () => ({ redirect: 'https://store.example/signed' }),
      undefined,
    );
    expect(await other.handOver(hex, true)).toEqual({ size: sound.length, to: { redirect: 'https://store.example/signed' } });
    expect(reads()).toBe(1);
  });
});
