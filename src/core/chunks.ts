import { createHash, type Hash } from 'node:crypto';
import { Transform } from 'node:stream';
import { AirlockError } from './errors.js';
import type { ByteRange } from '../storage/blob-store.js';
import type { ChunkList } from '../storage/meta-store.js';

/**
 * Chunk digests: a SHA-256 per fixed-size chunk of a blob, computed beside its whole digest as it
 * is filled (hasher.ts), so that any range of a cached blob is served from verified chunks only.
 *
 * Why 1 MiB: hashing costs the same per byte at 256 KiB, 1 MiB or 4 MiB (~0.6-0.7 GiB/s per core
 * on this machine), so the size only sets the read amplification of a small range (pip and uv
 * read a wheel's central directory in KiB-sized ranges: one 1 MiB chunk is ~1.3 ms of hashing,
 * a 4 MiB one ~6 ms) against the size of the list (32 bytes per chunk: 320 KiB for 10 GiB at
 * 1 MiB, 1.25 MiB at 256 KiB). It is also the read size of the filesystem store.
 */
export const CHUNK_SIZE = 1 << 20;

/** The list's binding to its blob: a list altered, truncated or moved to another blob fails this. */
export function chunkSum(sha256: string, size: number, chunkSize: number, digests: Buffer): string {
  return createHash('sha256').update(`airlock-chunks-v1\n${sha256}\n${size}\n${chunkSize}\n`).update(digests).digest('hex');
}

export function makeChunkList(sha256: string, size: number, digests: Buffer, chunkSize = CHUNK_SIZE): ChunkList {
  return { chunkSize, digests, sum: chunkSum(sha256, size, chunkSize, digests) };
}

/** A stored list is used only when it is whole and bound to this blob; anything else counts as no list (fail closed). */
export function usableChunks(list: ChunkList | null, sha256: string, size: number): ChunkList | null {
  if (!list || list.chunkSize <= 0) return null;
  if (list.digests.length !== Math.ceil(size / list.chunkSize) * 32) return null;
  return chunkSum(sha256, size, list.chunkSize, list.digests) === list.sum ? list : null;
}

/** Whole digest and chunk digests of bytes fed in order (a whole read of a cached blob, the scrub). */
export class ChunkHasher {
  private readonly whole = createHash('sha256');
  private chunk: Hash = createHash('sha256');
  private inChunk = 0;
  private readonly done: Buffer[] = [];
  bytes = 0;

  constructor(private readonly chunkSize = CHUNK_SIZE) {}

  update(buf: Buffer): void {
    this.whole.update(buf);
    this.bytes += buf.length;
    let at = 0;
    while (at < buf.length) {
      const n = Math.min(buf.length - at, this.chunkSize - this.inChunk);
      this.chunk.update(n === buf.length ? buf : buf.subarray(at, at + n));
      this.inChunk += n;
      at += n;
      if (this.inChunk === this.chunkSize) this.endChunk();
    }
  }

  private endChunk(): void {
    this.done.push(this.chunk.digest());
    this.chunk = createHash('sha256');
    this.inChunk = 0;
  }

  digest(): { digest: string; digests: Buffer } {
    if (this.inChunk > 0) this.endChunk();
    return { digest: this.whole.digest('hex'), digests: Buffer.concat(this.done) };
  }
}

/** The chunk list of bytes held in memory (a small blob stored whole). */
export function chunkListOf(sha256: string, bytes: Buffer): ChunkList {
  const h = new ChunkHasher();
  h.update(bytes);
  return makeChunkList(sha256, bytes.length, h.digest().digests);
}

/** The chunk-aligned span of the blob that covers `r` (what is read to serve it). */
export function alignedSpan(r: ByteRange, size: number, chunkSize: number): ByteRange {
  const start = Math.floor(r.start / chunkSize) * chunkSize;
  return { start, end: Math.min(size, (Math.floor(r.end / chunkSize) + 1) * chunkSize) - 1 };
}

/**
 * Reads the chunk-aligned span covering `r` (fed in from the store) and passes on the bytes of
 * `r`, a whole chunk at a time and only once that chunk hashed to its listed digest. A chunk that
 * does not (or a file that ends early) fails the stream before any of its bytes go out: the
 * client sees a cut transfer, never a complete wrong body. `onRot` is told first (forget the blob).
 */
export function verifyingRange(sha256: string, size: number, list: ChunkList, r: ByteRange, onRot: (got: string, e: AirlockError) => Promise<void>): Transform {
  const span = alignedSpan(r, size, list.chunkSize);
  let pos = span.start;
  let chunkStart = span.start;
  let hash = createHash('sha256');
  let held: Buffer[] = [];
  const chunkEnd = () => Math.min(size, chunkStart + list.chunkSize);
  const fail = (got: string, why: string, cb: (e?: Error | null) => void) => {
    const e = new AirlockError(
      'DIGEST_MISMATCH',
      `the cached copy of sha256:${sha256} ${why} (disk corruption or tampering); transfer cut, the copy forgotten`,
    );
    held = [];
    onRot(got, e).then(
      () => cb(e),
      () => cb(e),
    );
  };
  /** The chunk just completed: check it, then pass on its part inside `r`. */
  const endChunk = (self: Transform): string | null => {
    const i = chunkStart / list.chunkSize;
    const got = hash.digest();
    if (!got.equals(list.digests.subarray(i * 32, i * 32 + 32))) return got.toString('hex');
    let at = chunkStart;
    for (const b of held) {
      const from = Math.max(0, r.start - at);
      const to = Math.min(b.length, r.end + 1 - at);
      if (to > from) self.push(from === 0 && to === b.length ? b : b.subarray(from, to));
      at += b.length;
    }
    held = [];
    hash = createHash('sha256');
    chunkStart = chunkEnd();
    return null;
  };
  return new Transform({
    transform(buf: Buffer, _enc, cb) {
      let at = 0;
      while (at < buf.length) {
        const n = Math.min(buf.length - at, chunkEnd() - pos);
        if (n <= 0) return fail('', `is longer than its recorded ${size} bytes`, cb);
        const part = n === buf.length ? buf : buf.subarray(at, at + n);
        hash.update(part);
        held.push(part);
        pos += n;
        at += n;
        if (pos === chunkEnd()) {
          const bad = endChunk(this);
          if (bad) return fail(bad, `has a chunk at byte ${chunkStart} that hashes to sha256:${bad}, not its recorded digest`, cb);
        }
      }
      cb();
    },
    flush(cb) {
      if (pos <= span.end) return fail('', `ends at byte ${pos}, short of its recorded ${size} bytes`, cb);
      cb();
    },
  });
}
