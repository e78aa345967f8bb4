import { statfs } from 'node:fs/promises';

/** Bytes an unprivileged writer may still use on the filesystem holding `dir` (fs.statfs: bavail × bsize). */
export const freeBytesAt = (dir: string) => async (): Promise<number> => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

/**
 * The free-space reserve of the blob store's filesystem (cache.min_free_bytes; the filesystem
 * backend only). Disk pressure is met in this order: the cache evicts its least recently used
 * blobs until free space is back above the reserve (core/cache.ts evictPass); when nothing more can
 * be evicted, new fills are refused (503, a disk_reserve row) while warm hits are still served; the
 * reserve itself is left to the record (SQLite on the same disk), which nothing of the cache
 * writes into and nothing evicts, so rows keep being written. Only when the record has used it up
 * too does the recorder fail closed (core/records.ts).
 */
export class DiskReserve {
  /** Free bytes at the last measure (undefined before the first). */
  private last: number | undefined;

  constructor(
    readonly minFree: number,
    private readonly measure: () => Promise<number>,
    private readonly onMeasure: (free: number) => void = () => {},
  ) {}

  /** Measure free space now. */
  async free(): Promise<number> {
    const free = await this.measure();
    this.last = free;
    this.onMeasure(free);
    return free;
  }

  /** How many bytes short of the reserve the disk would be after writing `extra` more (0 when there is room). */
  async shortBy(extra = 0): Promise<number> {
    return Math.max(0, this.minFree + extra - (await this.free()));
  }

  /** A readiness warning while free space is below the reserve (as of the last measure); null otherwise. */
  warning(): string | null {
    if (this.last === undefined || this.last >= this.minFree) return null;
    return (
      `free space on the blob store's disk is below cache.min_free_bytes (${this.last} of ${this.minFree} bytes free): ` +
      'least recently used blobs are evicted, and new fills are refused while nothing more can be evicted (warm hits are still served)'
    );
  }
}
