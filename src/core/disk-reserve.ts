import { statfs } from 'node:fs/promises';
import { pipeline, Transform, type Readable } from 'node:stream';
import { AirlockError } from './errors.js';
import type { FillSpec } from './fill-spec.js';

/** A body of undeclared size is re-checked against the reserve each time this many more bytes arrived. */
export const GROWTH_STEP = 1 << 20;

/**
 * An upstream body of undeclared size, watched as it arrives (no room can be made for it before
 * the fill): every GROWTH_STEP bytes `short()` says how far below the reserve the disk would be
 * with the next step written (after evicting what can be evicted), and the body waits for the
 * answer. When short, the body fails with `refuse(short)` (its cause: the fill is cut, the spool
 * file removed, clients cut before their last byte).
 */
export function watchGrowth(body: Readable, short: () => Promise<number>, refuse: (short: number, seen: number) => Error): Readable {
  let seen = 0;
  let next = 0;
  const watched = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen < next) return cb(null, chunk);
      next = seen + GROWTH_STEP;
      short().then(
        (by) => (by > 0 ? cb(refuse(by, seen)) : cb(null, chunk)),
        (e: Error) => cb(e),
      );
    },
  });
  // An upstream error or early close fails the watched body too; destroying it destroys the upstream.
  return pipeline(body, watched, () => {});
}

/** Eviction for the reserve frees this share of it more than is short, so that it does not run at every fill. */
const SLACK = 0.1;
/** The record's own reserve: this share of cache.min_free_bytes, below which the cache gives the record all it can. */
const RECORD_SHARE = 0.25;

/** Bytes an unprivileged writer may still use on the filesystem holding `dir` (fs.statfs: bavail × bsize). */
export const freeBytesAt = (dir: string) => async (): Promise<number> => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

/**
 * A fill the index gave no size for had no room made for it before it started (cache.ts room()):
 * once its upstream declares a length, room is made for that (or the fill refused, 503); with
 * none, its body is watched as it arrives and the fill cut before it takes the disk into its
 * reserve. `short(extra)`: bytes below the reserve with `extra` more written, after eviction.
 */
export function reserveForUndeclared(
  spec: FillSpec,
  disk: DiskReserve,
  short: (extra: number) => Promise<number>,
  refused: (sha256: string, short: number) => void = () => {},
): FillSpec {
  return {
    ...spec,
    open: async (signal) => {
      const up = await spec.open(signal);
      if (up.size === undefined) {
        const body = watchGrowth(
          up.body,
          () => short(GROWTH_STEP),
          (by, seen) => (refused(spec.sha256, by), disk.cut(spec.sha256, seen, by)),
        );
        return { ...up, body };
      }
      let by: number;
      try {
        by = await short(up.size);
      } catch (e) {
        up.body.destroy();
        throw e;
      }
      if (by === 0) return up;
      up.body.destroy();
      refused(spec.sha256, by);
      throw disk.refusal(spec.sha256, up.size, by);
    },
  };
}

/**
 * The free-space reserve of the blob store's filesystem (cache.min_free_bytes; the filesystem
 * backend only). Disk pressure is met in this order:
 * 1. the cache evicts its least recently used blobs until free space is back above the reserve
 *    (with room for the new fill; core/cache.ts evictPass), whenever eviction can restore it;
 * 2. when it cannot, new fills are refused (503, a disk_reserve row) and the warm blobs are kept
 *    and served: hits write nothing but their row;
 * 3. the reserve is the record's (SQLite on the same disk): no fill writes into it, nothing evicts
 *    rows, so rows keep being written. When the record is down to its own, smaller reserve (a
 *    quarter of cache.min_free_bytes), the cache gives it every blob it can evict. Only when the
 *    disk is full does the recorder fail closed (core/records.ts).
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

  /** Below this many free bytes the record is using its own reserve. */
  get recordReserve(): number {
    return Math.floor(this.minFree * RECORD_SHARE);
  }

  /**
   * Bytes the cache should evict for the disk before `room` more bytes are written, out of
   * `evictable()` it could: what the reserve lacks (and a tenth of the reserve more) when eviction
   * can restore it; when it cannot, nothing (new fills are refused, warm blobs kept) until the
   * record is down to its own reserve, then all it can.
   */
  async toFree(room: number, evictable: () => Promise<number>): Promise<number> {
    const free = await this.free();
    const short = this.minFree + room - free;
    if (short <= 0) return 0;
    const can = await evictable();
    if (can >= short) return Math.min(can, short + Math.floor(this.minFree * SLACK));
    return free < this.recordReserve ? can : 0;
  }

  /** Why a fill of undeclared size is cut after `seen` bytes: the next would take the disk `short` bytes into the reserve. */
  cut(sha256: string, seen: number, short: number): AirlockError {
    return new AirlockError(
      'DISK_RESERVE',
      `not enough free disk space to go on fetching sha256:${sha256} (undeclared size, ${seen} bytes so far): the disk would be ${short} bytes ` +
        'below cache.min_free_bytes and evicting from the cache cannot make room; transfer cut, nothing cached; cached files are still served',
    );
  }

  /** Why a new fill is refused (503): the disk would be `short` bytes below the reserve even after eviction. */
  refusal(sha256: string, size: number | undefined, short: number): AirlockError {
    return new AirlockError(
      'DISK_RESERVE',
      `not enough free disk space to fetch sha256:${sha256}${size !== undefined ? ` (${size} bytes)` : ''}: the disk would be ${short} bytes ` +
        'below cache.min_free_bytes and evicting from the cache cannot make room; cached files are still served',
    );
  }

  /** A readiness warning while free space is below the reserve (as of the last measure); null otherwise. */
  warning(): string | null {
    if (this.last === undefined || this.last >= this.minFree) return null;
    if (this.last < this.recordReserve)
      return (
        `free space on the blob store's disk is down to the record's own reserve (${this.last} bytes free, cache.min_free_bytes ${this.minFree}): ` +
        'the cache is evicted to leave it to the record, new fills are refused; pull records fail closed when the disk is full'
      );
    return (
      `free space on the blob store's disk is below cache.min_free_bytes (${this.last} of ${this.minFree} bytes free): ` +
      'least recently used blobs are evicted, and new fills are refused while nothing more can be evicted (warm hits are still served)'
    );
  }
}

/** Bytes below the reserve with `extra` more and the rest of the fills under way (their known sizes) written, after eviction; 0: room. */
export async function shortAfterEviction(
  disk: DiskReserve,
  running: Iterable<{ size?: number; written: number }>,
  extra: number,
  evict: (need: number) => Promise<void>,
): Promise<number> {
  const need = [...running].reduce((n, f) => n + (f.size === undefined ? 0 : Math.max(0, f.size - f.written)), extra);
  return (await disk.shortBy(need)) === 0 ? 0 : (await evict(need), disk.shortBy(need));
}
