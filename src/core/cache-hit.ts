import { createHash } from 'node:crypto';
import { pipeline, Readable, Transform } from 'node:stream';
import type { FileBytes } from './bytes.js';
import { AirlockError } from './errors.js';
import type { CacheOutcome, Served } from './cache-types.js';
import { alignedSpan, ChunkHasher, makeChunkList, usableChunks, verifyingRange } from './chunks.js';
import { SingleFlight } from './flight.js';
import type { HashPool } from './hasher.js';
import { HitBody } from './hit-body.js';
import type { BlobStore, ByteRange } from '../storage/blob-store.js';
import type { BlobIndex, ChunkList } from '../storage/meta-store.js';

/**
 * Set only by the benchmark (bench/run.mjs, AIRLOCK_BENCH_NO_CHUNK_CHECKS=1), to measure what chunk
 * checks cost beside the same server without them: hits are then read as before chunk lists (a range
 * unverified, a whole hit hashed by its server). Never set it in production.
 */
export const CHUNK_CHECKS_OFF = process.env.AIRLOCK_BENCH_NO_CHUNK_CHECKS === '1';

/** Chunk lists kept in memory (a 10 GiB blob's is 320 KiB; hf_transfer reads it in ~1000 ranges). */
const LIST_CACHE_BYTES = 32 << 20;

/**
 * How a cache hit's bytes are read when hits are verified (cache.verify_hits): a range from whole
 * chunks, each checked against the blob's chunk list before its bytes go out; a blob with no
 * usable list (cached before chunk lists) is read and hashed whole first, which also writes its
 * list. A whole hit is hashed by its server (http/serve-blob.ts); its first read also writes the
 * list of a blob that has none.
 */
export class HitReader {
  private readonly lists = new Map<string, ChunkList>();
  private listBytes = 0;
  private readonly wholeChecks = new SingleFlight<string, ChunkList | null>();

  constructor(
    private readonly store: BlobStore,
    private readonly meta: BlobIndex,
    /** Forget a blob found rotted (quarantined, fetched again on its next request). */
    private readonly forget: (sha256: string, got: string) => Promise<void>,
    /** Where chunks of hits are hashed beside the send (hit-body.ts), for stores with positioned reads. */
    private readonly hashes?: HashPool,
  ) {}

  /** A HitBody over `r` when the store reads at positions (the filesystem store), else null (read as a stream). */
  private async direct(sha256: string, size: number, list: ChunkList, r: ByteRange, rotted: (e: Error) => void): Promise<HitBody | null> {
    if (!this.hashes || !this.store.openRandom || size === 0) return null;
    const file = await this.store.openRandom(sha256);
    return new HitBody({
      file,
      sha256,
      size,
      list,
      range: r,
      hashes: this.hashes,
      onRot: (got, e) => {
        this.drop(sha256);
        rotted(e);
        return this.forget(sha256, got || 'a truncated file');
      },
    });
  }

  private remember(sha256: string, list: ChunkList): ChunkList {
    this.drop(sha256);
    this.lists.set(sha256, list);
    this.listBytes += list.digests.length;
    for (const [k, l] of this.lists) {
      if (this.listBytes <= LIST_CACHE_BYTES) break;
      this.lists.delete(k);
      this.listBytes -= l.digests.length;
    }
    return list;
  }

  drop(sha256: string): void {
    const had = this.lists.get(sha256);
    if (!had) return;
    this.lists.delete(sha256);
    this.listBytes -= had.digests.length;
  }

  private async storedList(sha256: string, size: number): Promise<ChunkList | null> {
    const known = this.lists.get(sha256);
    if (known) return this.remember(sha256, known);
    const list = usableChunks(await this.meta.getChunks(sha256), sha256, size);
    return list ? this.remember(sha256, list) : null;
  }

  /**
   * The blob's verified chunk list; for a blob with none, the whole blob is read and hashed first
   * (once, however many ranges ask at the same time). Null when that found it rotted (forgotten).
   */
  async listFor(sha256: string, size: number): Promise<ChunkList | null> {
    return (await this.storedList(sha256, size)) ?? this.wholeChecks.run(sha256, () => this.checkWhole(sha256, size));
  }

  private async checkWhole(sha256: string, size: number): Promise<ChunkList | null> {
    const h = new ChunkHasher();
    const body = await this.store.open(sha256);
    for await (const b of body) h.update(b as Buffer);
    const { digest, digests } = h.digest();
    if (digest !== sha256 || h.bytes !== size) {
      await this.forget(sha256, digest);
      return null;
    }
    const list = makeChunkList(sha256, size, digests);
    await this.meta.putChunks(sha256, list);
    return this.remember(sha256, list);
  }

  /** The blob as FileBytes checked chunk by chunk (verifiedStoreBytes), or null when it was found rotted (forgotten). */
  async bytes(sha256: string, size: number): Promise<FileBytes | null> {
    const list = await this.listFor(sha256, size);
    if (!list) return null;
    return verifiedStoreBytes(this.store, sha256, size, list, (got) => {
      this.drop(sha256);
      return this.forget(sha256, got);
    });
  }

  /** A range read from verified chunks; `rotted` is told (after the blob is forgotten) when a chunk fails. */
  async range(sha256: string, size: number, list: ChunkList, r: ByteRange, rotted: (e: Error) => void): Promise<Readable> {
    const direct = await this.direct(sha256, size, list, r, rotted);
    if (direct) return direct;
    const body = await this.store.open(sha256, alignedSpan(r, size, list.chunkSize));
    const v = verifyingRange(sha256, size, list, r, (got, e) => {
      this.drop(sha256);
      rotted(e);
      return this.forget(sha256, got || 'a truncated file');
    });
    return pipeline(body, v, () => {});
  }

  /**
   * A whole read: as it is; for a blob with no chunk list yet, its list is computed on the way and
   * kept if the whole blob hashed to its digest (the server cuts the transfer if it did not).
   * A blob with a list is read as a HitBody where the store allows (each chunk checked before it goes out).
   */
  async whole(sha256: string, size: number, rotted: (e: Error) => void): Promise<Readable> {
    const known = await this.storedList(sha256, size);
    const direct = known ? await this.direct(sha256, size, known, { start: 0, end: size - 1 }, rotted) : null;
    if (direct) return direct;
    const body = await this.store.open(sha256);
    if (known) return body;
    const h = new ChunkHasher();
    const meta = this.meta;
    const remember = (list: ChunkList) => this.remember(sha256, list);
    const tap = new Transform({
      transform(b: Buffer, _enc, cb) {
        h.update(b);
        cb(null, b);
      },
      flush(cb) {
        const { digest, digests } = h.digest();
        if (digest === sha256 && h.bytes === size) {
          const list = makeChunkList(sha256, size, digests);
          void meta.putChunks(sha256, list).then(
            () => remember(list),
            () => {},
          );
        }
        cb();
      },
    });
    return pipeline(body, tap, () => {});
  }
}

/** Whole chunks kept by a verified FileBytes (an inspector's small reads of one chunk are checked once). */
const KEPT_CHUNKS = 4;

/**
 * A stored blob as FileBytes whose every byte is checked before it is handed out: each read takes
 * the whole chunks that cover it from the store and compares each against the blob's chunk list
 * (bound to its whole digest) first. What an inspector or the inventory reads is then exactly what
 * was verified; a chunk that fails (or a file cut short) is told to `onRot` (forget and quarantine
 * the blob) and the read throws DIGEST_MISMATCH, so no verdict is ever made from it.
 */
export function verifiedStoreBytes(store: BlobStore, sha256: string, size: number, list: ChunkList, onRot: (got: string) => Promise<void>): FileBytes {
  const kept = new Map<number, Buffer>();
  const chunk = async (i: number): Promise<Buffer> => {
    const had = kept.get(i);
    if (had) return had;
    const start = i * list.chunkSize;
    const end = Math.min(size, start + list.chunkSize) - 1;
    const parts: Buffer[] = [];
    for await (const b of await store.open(sha256, { start, end })) parts.push(b as Buffer);
    const bytes = Buffer.concat(parts);
    const got = createHash('sha256').update(bytes).digest();
    if (bytes.length !== end - start + 1 || !got.equals(list.digests.subarray(i * 32, i * 32 + 32))) {
      await onRot(bytes.length !== end - start + 1 ? 'a truncated file' : got.toString('hex'));
      throw new AirlockError(
        'DIGEST_MISMATCH',
        `the cached copy of sha256:${sha256} has a chunk at byte ${start} that does not match its recorded digest (disk corruption or tampering); the copy forgotten`,
      );
    }
    kept.set(i, bytes);
    if (kept.size > KEPT_CHUNKS) kept.delete(kept.keys().next().value as number);
    return bytes;
  };
  return {
    size,
    async read(pos, len) {
      const end = Math.min(size, pos + len);
      if (end <= pos) return Buffer.alloc(0);
      const parts: Buffer[] = [];
      for (let i = Math.floor(pos / list.chunkSize); i * list.chunkSize < end; i++) {
        const c = await chunk(i);
        const at = i * list.chunkSize;
        parts.push(c.subarray(Math.max(0, pos - at), Math.min(c.length, end - at)));
      }
      return parts.length === 1 ? parts[0] : Buffer.concat(parts);
    },
  };
}

/** A range outside the blob: answer 416 (no body). */
export function unsatisfiable(cache: CacheOutcome, size: number | undefined): Served {
  return {
    cache,
    size,
    range: undefined,
    unsatisfiable: true,
    body: Readable.from([]),
    settled: Promise.resolve(),
    gate: Promise.resolve(),
    committed: Promise.resolve(false),
  };
}
