import type { CacheOptions } from './cache-types.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';

/**
 * Forget the least recently used blobs until `toFree` bytes are freed (or none is left to evict),
 * never one that is `busy` (read or filled now). The index row goes first, so a blob is never
 * served after its file is deleted; a file that cannot be deleted is said through `failed`.
 */
export async function evictLeastUsed(
  meta: BlobIndex,
  store: BlobStore,
  toFree: number,
  busy: (sha256: string) => boolean,
  failed: (sha256: string) => (e: unknown) => void,
): Promise<{ count: number; freed: number }> {
  let count = 0;
  let freed = 0;
  let skipped = 0;
  while (freed < toFree) {
    const page = await meta.leastRecentlyUsed(skipped + 256);
    const candidates = page.slice(skipped);
    if (candidates.length === 0) break;
    for (const b of candidates) {
      if (freed >= toFree) break;
      if (busy(b.sha256)) {
        skipped++;
        continue;
      }
      await meta.deleteBlob(b.sha256);
      await store.delete(b.sha256).catch(failed(b.sha256));
      freed += b.size;
      count++;
    }
    if (page.length < skipped + 256) break;
  }
  return { count, freed };
}

/** Eviction brings the cache down to this share of max_bytes, so it does not run on every commit. */
const LOW_WATER = 0.9;

/** What eviction needs of its cache (core/cache.ts). */
export interface EvictionHost {
  readonly meta: BlobIndex;
  readonly store: BlobStore;
  readonly opts: CacheOptions;
  flushUses(): Promise<void>;
  /** Readers of each cached blob now. */
  readonly serving: ReadonlyMap<string, number>;
  /** Read or filled now: never evicted. */
  busy(sha256: string): boolean;
  warn(fields: object, msg: string): (e: unknown) => void;
}

/**
 * A cache's eviction: to stay under cache.max_bytes (down to LOW_WATER of it) and above the disk's
 * free-space reserve (cache.min_free_bytes), the least recently used blobs are forgotten, never
 * one being read or filled now. An evicted artefact is simply fetched and verified again on its
 * next pull (its approval, scan verdict and inventory are kept). One pass at a time.
 */
export class Eviction {
  /** Bytes stored, as far as this process knows (re-read from the index before each eviction). */
  private stored: number | undefined;
  private evicting: Promise<void> | undefined;
  private evictAgain = false;
  /** Bytes about to be written that the next eviction pass makes room for on disk (above the reserve). */
  private evictFor = 0;

  constructor(private readonly c: EvictionHost) {}

  /** A blob was stored: count it, and evict if the cache is now over its limit or the disk below its reserve. */
  added(bytes: number): void {
    if (this.stored !== undefined) this.stored += bytes;
    this.c.opts.onStored?.(this.stored ?? 0);
    const max = this.c.opts.maxBytes ?? 0;
    const failed = this.c.warn({ maxBytes: max }, 'cache eviction failed: over cache.max_bytes or below cache.min_free_bytes until the next pass');
    if (max > 0 && (this.stored === undefined || this.stored > max)) void this.evict().catch(failed);
    else void this.checkDisk().catch(failed);
  }

  /** Measure the disk's free space (cache.min_free_bytes) and, when it is below the reserve, evict. */
  async checkDisk(): Promise<void> {
    if (this.c.opts.disk && (await this.c.opts.disk.shortBy()) > 0) await this.evict();
  }

  /** A pass, making `room` more bytes on disk too; asked again during a pass (a blob added since it read the totals): one more pass after it. */
  evict(room = 0): Promise<void> {
    this.evictFor = Math.max(this.evictFor, room);
    if (this.evicting) this.evictAgain = true;
    this.evicting ??= (async () => {
      do {
        this.evictAgain = false;
        await this.pass();
      } while (this.evictAgain);
    })().finally(() => (this.evicting = undefined));
    return this.evicting;
  }

  /**
   * One pass: frees what the cache holds over max_bytes * LOW_WATER, or what the disk's reserve
   * asks for before `evictFor` more bytes are written (DiskReserve.toFree), whichever is more.
   */
  private async pass(): Promise<void> {
    const { meta, store, opts } = this.c;
    const max = opts.maxBytes ?? 0;
    const room = this.evictFor;
    this.evictFor = 0;
    await this.c.flushUses();
    let { bytes } = await meta.blobTotals();
    this.stored = bytes;
    const overMax = max > 0 && bytes > max ? bytes - Math.floor(max * LOW_WATER) : 0;
    const total = bytes;
    const diskShort = opts.disk ? await opts.disk.toFree(room, () => this.evictable(total)) : 0;
    const toFree = Math.max(overMax, diskShort);
    if (toFree <= 0) return;
    const { count, freed } = await evictLeastUsed(
      meta,
      store,
      toFree,
      (sha256) => this.c.busy(sha256),
      (sha256) => this.c.warn({ digest: sha256 }, 'an evicted blob could not be deleted from the blob store: its space is not freed'),
    );
    bytes -= freed;
    // Measured again, so that readiness says what eviction left.
    if (opts.disk && count > 0) await opts.disk.free();
    this.stored = bytes;
    opts.onStored?.(bytes);
    if (count > 0) opts.onEvict?.(count, freed, bytes, diskShort > overMax ? 'min_free_bytes' : 'max_bytes');
  }

  /** What eviction could free now: every cached byte but those being read. */
  private async evictable(total: number): Promise<number> {
    let busy = 0;
    for (const sha256 of this.c.serving.keys()) busy += (await this.c.meta.getBlob(sha256))?.size ?? 0;
    return Math.max(0, total - busy);
  }
}
