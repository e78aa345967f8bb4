import { createHash } from 'node:crypto';
import { SingleFlight } from './flight.js';
import type { AirlockError } from './errors.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';
import type { Offload } from './cache-types.js';

/** Files remembered as checked (a digest, a version and a time each: ~200 bytes; 100,000 is ~20 MB at most). */
const MAX_REMEMBERED = 100_000;

/** What a Handover needs of the cache (core/cache.ts). */
export interface HandoverCache {
  readonly store: BlobStore;
  readonly meta: Pick<BlobIndex, 'getBlob' | 'deleteBlob'>;
  /** The cached size, the stored file's size checked when hits are verified (a wrong one is forgotten). */
  cachedSize(sha256: string): Promise<number | undefined>;
  /** Forget a blob found rotted (quarantined, fetched again on its next request). */
  forget(sha256: string, got: string): Promise<void>;
}

/**
 * Warm hits handed to a cheaper server (offload.*), after the decision and the record. The object
 * store (presigned) keeps its own checksums. nginx sends what it reads from the store and checks
 * nothing, so with `recheckMs` (nginx, verified hits) it is handed no Range (or If-Range): Airlock
 * serves those from verified chunks. A whole file is handed over only once this process hashed it
 * to its digest, within the last `recheckMs` and with the same version (inode and change time)
 * since: a file written or replaced behind Airlock's back is always hashed again before nginx may
 * send it; bytes that rot with no write (the medium itself) are found within `recheckMs` of a
 * handover at worst (and by the scrub). A file that fails is forgotten (quarantined) and the
 * request served as a miss, fetched and verified again.
 *
 * Why hash before the handover rather than as the bytes go out: nginx cannot hash, and the
 * handover is a header, sent before any byte; what is left is the moment between the end of the
 * hash and nginx's read of the file (a write in it changes the version, caught next time).
 */
export class Handover {
  private readonly checked = new Map<string, { at: number; version: string }>();
  private readonly flights = new SingleFlight<string, boolean>();

  constructor(
    private readonly cache: HandoverCache,
    private readonly to: (sha256: string) => Promise<Offload>,
    private readonly recheckMs: number | undefined,
  ) {}

  /** How to hand this warm hit over, or undefined to serve it here (not cached, or not sound: a miss fills it again). */
  async handOver(sha256: string, ranged: boolean): Promise<{ size: number; to: Offload } | undefined> {
    if (ranged && this.recheckMs !== undefined) return undefined;
    const size = await this.cache.cachedSize(sha256);
    if (size === undefined) return undefined;
    if (this.recheckMs !== undefined && !(await this.sound(sha256, size, (await this.cache.store.stat(sha256))?.version))) return undefined;
    return { size, to: await this.to(sha256) };
  }

  /** May nginx send this file (`version` as the store's stat gave it just now)? Hashes it first when it must. */
  async sound(sha256: string, size: number, version: string | undefined): Promise<boolean> {
    const seen = this.checked.get(sha256);
    if (seen && version !== undefined && seen.version === version && Date.now() - seen.at < this.recheckMs!) return true;
    // Concurrent handovers of one blob share one hash.
    return this.flights.run(sha256, () => this.hash(sha256, size, version));
  }

  drop(sha256: string): void {
    this.checked.delete(sha256);
  }

  private async hash(sha256: string, size: number, version: string | undefined): Promise<boolean> {
    this.checked.delete(sha256);
    const h = createHash('sha256');
    let n = 0;
    try {
      for await (const b of await this.cache.store.open(sha256)) {
        h.update(b as Buffer);
        n += (b as Buffer).length;
      }
    } catch (e) {
      if ((e as AirlockError).code !== 'NOT_FOUND') throw e;
      await this.cache.meta.deleteBlob(sha256);
      return false;
    }
    const got = h.digest('hex');
    if (got !== sha256 || n !== size) {
      await this.cache.forget(sha256, n !== size ? `a file of ${n} bytes, not the recorded ${size}` : got);
      return false;
    }
    if (version !== undefined) {
      if (this.checked.size >= MAX_REMEMBERED) this.checked.delete(this.checked.keys().next().value!);
      this.checked.set(sha256, { at: Date.now(), version });
    }
    return true;
  }
}
