/**
 * The memory a fill keeps beside its spool file: the most recent chunks written (so readers keeping
 * pace take them without a file read or a new buffer), and the bound on bytes queued for the file
 * before the upstream socket is paused.
 *
 * Measured alone the window was within noise of the file-only path (264 vs 250 MiB/s cold,
 * 512 MiB): the cold path is CPU-bound elsewhere (see README Performance).
 *
 * Both bounds shrink as fills run at once: all the fills of one cache together keep at most
 * FILLS_MEMORY in windows and as much in queues (never less than 128 KiB each), so 50 concurrent
 * cold pulls stay within the memory budget (README Reliability) while a lone fill keeps 1 MiB of each.
 */
/**
 * Bytes held back from every reader until the digest has been checked: no client ever receives
 * the last bytes of a file that has not verified, so a tampered file never arrives whole. (Here,
 * beside the window, so that fill.ts and fill-body.ts share it without importing each other.)
 */
export const HOLD_BACK = 64 * 1024;
const PER_FILL_MAX = 1 << 20;
const PER_FILL_MIN = 128 << 10;
const FILLS_MEMORY = 8 << 20;

/**
 * How many fills are running, shared by the fills of one owner (a BlobCache): each fill's memory
 * bound is FILLS_MEMORY split among them. An instance the owner holds rather than a module-level
 * counter, so that two caches (tests, a command beside a server) do not share one count, and a
 * fill that is never counted cannot skew another cache's bound.
 */
export class FillShare {
  private running = 0;

  started(): void {
    this.running++;
  }

  stopped(): void {
    this.running--;
  }

  /** The memory bound of each running fill now, for its window and for its queue. */
  perFill(): number {
    return Math.max(PER_FILL_MIN, Math.min(PER_FILL_MAX, Math.floor(FILLS_MEMORY / Math.max(1, this.running))));
  }
}

/** The chunks most recently written to a spool file, by position, at most a bound in bytes (at least the last chunk). */
export class SpoolWindow {
  private chunks: { pos: number; buf: Buffer }[] = [];
  private bytes = 0;

  /**
   * Chunks just written at `pos`, in order; then trimmed from the oldest down to `bound`, but never
   * a chunk a client still needs (bytes at or past `keepFrom`, TapSet.keepFrom): one upstream read
   * of up to 1 MiB could otherwise push the leader's next byte out while it lagged less than the
   * half window that pauses the upstream (6 of 6 cold 1 GiB pulls moved their only client to the
   * spool file). The upstream pauses once that lag reaches half the bound, so the window holds about
   * half the bound and one read past it (two at worst: the chunk holding the leader's next byte).
   */
  add(pos: number, bufs: Buffer[], bound: number, keepFrom = Infinity): void {
    for (const b of bufs) {
      this.chunks.push({ pos, buf: b });
      pos += b.length;
      this.bytes += b.length;
    }
    const w = this.chunks;
    while (this.bytes > bound && w.length > 1 && w[0].pos + w[0].buf.length <= keepFrom) this.bytes -= w.shift()!.buf.length;
  }

  clear(): void {
    this.chunks = [];
    this.bytes = 0;
  }

  /** Bytes [pos, limit) as one chunk's slice, or null when not in memory. */
  slice(pos: number, limit: number): Buffer | null {
    const w = this.chunks;
    if (w.length === 0 || pos < w[0].pos) return null;
    for (let i = w.length - 1; i >= 0; i--) {
      const c = w[i];
      if (pos >= c.pos) {
        const off = pos - c.pos;
        if (off >= c.buf.length) return null;
        return c.buf.subarray(off, Math.min(c.buf.length, limit - c.pos));
      }
    }
    return null;
  }
}
