import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const MiB = 1 << 20;

/**
 * Disk rot for the rot suites (test/integration/range-rot.test.ts, test/e2e/offload-rot.test.ts):
 * where a bit is flipped and which Range then asks over it.
 */
export const ROT_CASES: { what: string; at: (size: number) => number; range: string }[] = [
  { what: 'the first byte, a small range at the start', at: () => 0, range: 'bytes=0-99' },
  { what: 'a middle chunk, a range inside it', at: () => MiB + MiB / 2, range: `bytes=${MiB + 10}-${MiB + 5000}` },
  { what: 'the middle, bytes=0-', at: () => 2 * MiB + 7, range: 'bytes=0-' },
  { what: 'the last chunk, a suffix range', at: (size) => size - 3, range: 'bytes=-1000' },
  { what: 'the last chunk, an open range from the middle', at: (size) => size - 1, range: `bytes=${MiB}-` },
];

/** A cached blob's file under a data directory. */
export const blobFile = (dataDir: string, hex: string) => join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);

/** Quarantined copies of a blob under a data directory. */
export const quarantinedIn = (dataDir: string, hex: string) =>
  (existsSync(join(dataDir, 'quarantine')) ? readdirSync(join(dataDir, 'quarantine')) : []).filter((f) => f.startsWith(hex));

/** Flip one bit of a cached blob's file behind Airlock's back (disk rot). */
export function rotBlob(dataDir: string, hex: string, bytes: Buffer, at: number): void {
  const rotted = Buffer.from(bytes);
  rotted[at] ^= 0x01;
  writeFileSync(blobFile(dataDir, hex), rotted);
}

/** The bytes a Range header asks of `b` (single range, as resolveRange reads it). */
export function rangeSlice(b: Buffer, range: string): Buffer {
  const [, s, e] = /^bytes=(\d*)-(\d*)$/.exec(range)!;
  if (s === '') return b.subarray(b.length - Number(e));
  return b.subarray(Number(s), e === '' ? b.length : Number(e) + 1);
}
