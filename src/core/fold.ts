import type { RecordRow } from './records.js';

/** A fold window: the row that opened it (already written) and the repeats since. */
interface Window {
  opened: number;
  row: RecordRow;
  repeats: number;
  first: number;
  last: number;
}

/**
 * Folds repeated identical refusals (same client, ecosystem, name, version, file, digest, code, rule and signature) within a
 * window into one row. The first refusal of a window is written at once as it always was (count
 * absent: one event); the repeats are counted in memory, and when the window closes (its time is
 * up, too many windows are open, or the recorder flushes) one more row is written for them: a copy
 * of the first with `count` = the repeats and `ts`/`lastTs` = the first and last repeat. That row
 * is chained like any other and its hash covers the count (core/chain.ts rowHash), so the record
 * still says exactly how many refusals there were and `airlock audit verify` walks it unchanged.
 * (Writing the first row at once keeps a refusal on record and visible the moment it happens; the
 * summary row is never rewritten, so the chain needs no update in place.)
 *
 * Memory is bounded: at most `maxWindows` windows are open; opening one more closes the oldest.
 */
export class Folder {
  /** Open windows by key, in the order they were opened (all last equally long: the oldest close first). */
  private readonly open = new Map<string, Window>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly windowMs: number,
    private readonly maxWindows: number,
    /** Write a summary row (a closed window's repeats). */
    private readonly emit: (row: RecordRow) => void,
  ) {}

  /** True when `row` is to be written (it opens a window, or folding is off); false when it was folded into an open window. */
  offer(row: RecordRow, now = Date.now()): boolean {
    if (this.windowMs <= 0 || row.decision === 'allow' || !row.code) return true;
    const key = JSON.stringify([
      row.client,
      row.ecosystem,
      row.name,
      row.version ?? null,
      row.filename ?? null,
      row.sha256 ?? null,
      row.code,
      row.rule ?? null,
      row.signature ?? null,
    ]);
    const w = this.open.get(key);
    if (w && now - w.opened < this.windowMs) {
      if (w.repeats === 0) w.first = now;
      w.repeats++;
      w.last = now;
      return false;
    }
    if (w) this.close(key, w);
    while (this.open.size >= this.maxWindows) {
      const [k, oldest] = this.open.entries().next().value as [string, Window];
      this.close(k, oldest);
    }
    this.open.set(key, { opened: now, row, repeats: 0, first: 0, last: 0 });
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(Date.now()), Math.max(50, Math.min(this.windowMs, 1000)));
      this.timer.unref();
    }
    return true;
  }

  /** Close the windows whose time is up. */
  sweep(now: number): void {
    for (const [k, w] of this.open) {
      if (now - w.opened < this.windowMs) break;
      this.close(k, w);
    }
    if (this.open.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Close every window (flush, shutdown). */
  closeAll(): void {
    this.sweep(Number.POSITIVE_INFINITY);
  }

  /** How many windows are open (tests, bounded memory). */
  get size(): number {
    return this.open.size;
  }

  private close(key: string, w: Window): void {
    this.open.delete(key);
    if (w.repeats === 0) return;
    this.emit({ ...w.row, ts: w.first, lastTs: w.last, count: w.repeats, requestId: null });
  }
}
