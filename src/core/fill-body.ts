import { Readable, type Writable } from 'node:stream';
import { AirlockError } from './errors.js';
import type { SpoolSource } from './fill-reader.js';
import { HOLD_BACK } from './spool.js';

/**
 * A whole-file client of a running fill, written from the fill's own memory (issue 29).
 *
 * Before, every client read the fill through a reader stream: a hop per chunk into a Readable,
 * another into the response, and a 1 MiB window behind the spool write that the leading client
 * fell out of in some pulls (40-60% of a GiB then read back from the spool, into fresh 256 KiB
 * buffers). Now each chunk the upstream delivers is written to the clients keeping pace as it
 * arrives (before its spool write: the hold-back is counted from the file's end, not from what is
 * spooled), from the buffer it arrived in:
 *
 * - A client in memory (every client starts there) takes the bytes [pos, sendable()) from the
 *   fill's window of the chunks last received. When its socket says "enough" (write() false) it
 *   waits for 'drain'; while the leading client lags by half the window the fill pauses the
 *   upstream for it (`holding`), so the leader cannot be outrun, as a plain pipe is paced by its
 *   client (unless another reader waits for bytes: TapSet.hold). A follower is not waited for: once
 *   its next byte leaves the window it moves to the spool.
 * - A client that stays blocked past STALL_MS (a slow or stuck client must not hold the upstream:
 *   the budget's minimum rate does not count a paused body), or whose next byte has left the
 *   window (it joined late, or fell behind while others led), is moved to the spool file, once:
 *   from then on it reads positional 256 KiB pieces of the spool into one reused buffer, behind
 *   what is written, and never comes back (no flapping between the two).
 * - The end: the file's last HOLD_BACK bytes go out only after the fill verified (sendable())
 *   and after `holdLast`'s hook (the pull record's commit), as lastChunkAfter holds them for other
 *   bodies (http/serve-blob.ts): not just the last piece, which may be a few bytes.
 *
 * Sent straight into the client's socket (`sendTo`, http/send.ts) or read as a plain Readable
 * (tests through app.request, cache.ensure, any consumer that is not a socket): both run the same
 * steps, the Readable copying what comes from the reused spool buffer.
 */

/** Bytes of one spool read of a client moved to the spool (one buffer per such client, reused). */
const SPOOL_READ = 256 << 10;
/** Longest a client in memory may keep the upstream paused before it is moved to the spool. */
export const STALL_MS = 2000;

/** How many clients were moved from memory to the spool file (tests, the benchmark's notes). */
export const tapStats = { toSpool: 0 };

/** What a FillBody needs of its fill beyond a spool reader's (Fill implements it). */
export interface TapSource extends SpoolSource {
  /** As available(), counting the bytes received but not yet in the spool file (they are in memory). */
  sendable(): number;
  readonly taps: TapSet;
  /** A body that held the upstream paused no longer does (or left): resume it if nothing else holds it. */
  tapFreed(): void;
  on(event: 'progress', cb: () => void): unknown;
  off(event: 'progress', cb: () => void): unknown;
}

interface Sink {
  /** Write a piece; `reused`: the buffer is reused once `done` is called. Returns false when the sink wants a pause. */
  write(b: Buffer, reused: boolean, done: () => void): boolean;
  onDrain(fn: () => void): void;
  /** Hold writes until uncork (a socket: the pieces of one feed go out in one writev). */
  cork?(): void;
  uncork?(): void;
}

/**
 * Bytes a socket client may have queued in Node beyond what the kernel took before it waits for
 * 'drain': a feed's pieces (up to the fill's FEED_BATCH, 64 KiB, plus one read) go out in one
 * writev, not one piece per 16 KiB high-water mark. The pieces are the window's own buffers (no copy).
 */
const SOCKET_QUEUE = 128 << 10;

export class FillBody extends Readable {
  private pos = 0;
  private mode: 'memory' | 'spool' = 'memory';
  private blocked = false;
  /** When the client last blocked on its socket (the stall is counted from there). */
  private blockedAt = 0;
  /** A spool read, its write, or the end's hook is under way: feed() waits for it. */
  private busy = false;
  private over = false;
  /** `holdLast`'s hook has resolved: the file's last HOLD_BACK bytes may go out. */
  private recorded = false;
  private sink: Sink | null = null;
  private buf: Buffer | null = null;
  private stall: NodeJS.Timeout | undefined;
  private pulled: (() => void) | null = null;
  private settle: { ok: () => void; fail: (e: Error) => void } | null = null;
  private readonly release: () => void;
  private beforeEnd: () => Promise<void> = () => Promise.resolve();
  private passed: (n: number) => void = () => {};

  constructor(private readonly fill: TapSource) {
    super();
    this.release = fill.attachReader();
  }

  /** The last bytes go out only once `beforeEnd` resolves (a rejection cuts the body); `passed` counts bytes sent. */
  holdLast(beforeEnd: () => Promise<void>, passed: (bytes: number) => void): this {
    this.beforeEnd = beforeEnd;
    this.passed = passed;
    return this;
  }

  /** Where this client is in the file, while it is served from memory (else -1). */
  get inMemoryAt(): number {
    return this.mode === 'memory' && !this.over ? this.pos : -1;
  }

  /** Whether this client has sent all it may now and waits for more bytes (then no slower leader may hold the upstream). */
  get waiting(): boolean {
    if (this.over || !this.sink || this.blocked || this.busy) return false;
    return this.pos >= this.limit();
  }

  /** Bytes this client may have now: what the fill allows, less the file's last HOLD_BACK bytes until the hook ran. */
  private limit(): number {
    const fill = this.fill;
    const may = this.mode === 'memory' ? fill.sendable() : fill.available();
    return this.recorded || fill.state !== 'verified' ? may : Math.min(may, Math.max(0, fill.written - HOLD_BACK));
  }

  /** Whether the fill should keep its upstream paused for this client (the leader): blocked, half a window behind. */
  holding(received: number, bound: number): boolean {
    return this.mode === 'memory' && this.blocked && received - this.pos >= bound / 2;
  }

  /** Send into a Node socket or response; resolves once the last byte is handed to `out`, rejects on a cut. */
  sendTo(out: Writable): Promise<void> {
    const gone = () => this.stop(new AirlockError('CANCELLED', 'the client went away'));
    out.once('close', gone);
    // A client that left before its body started (it waited for an upstream connection) is gone already.
    if (out.destroyed || out.writableEnded) queueMicrotask(gone);
    return this.begin({
      write: (b, _reused, done) => {
        out.write(b, (err) => {
          if (err) gone();
          done();
        });
        // Past the high-water mark Node has set its drain flag: 'drain' comes once the queue empties.
        return out.writableLength < SOCKET_QUEUE;
      },
      onDrain: (fn) => out.once('drain', fn),
      cork: () => out.cork(),
      uncork: () => out.uncork(),
    }).finally(() => {
      out.off('close', gone);
      this.destroy();
    });
  }

  override _read(): void {
    if (this.sink) {
      const r = this.pulled;
      this.pulled = null;
      r?.();
      return;
    }
    this.begin({
      write: (b, reused, done) => {
        const ok = this.push(reused ? Buffer.from(b) : b);
        done();
        return ok;
      },
      onDrain: (fn) => (this.pulled = fn),
    }).then(
      () => this.push(null),
      (e: Error) => this.destroy(e),
    );
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.stop(err ?? new AirlockError('CANCELLED', 'the client went away'));
    this.release();
    cb(err);
  }

  private begin(sink: Sink): Promise<void> {
    this.sink = sink;
    return new Promise<void>((ok, fail) => {
      this.settle = { ok, fail };
      this.fill.on('progress', this.feed);
      this.fill.taps.add(this);
      this.feed();
    });
  }

  /** Done or cut: stop listening, let the fill go on without this client. */
  private stop(e?: Error): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.stall);
    this.fill.off('progress', this.feed);
    this.fill.taps.delete(this);
    this.fill.tapFreed();
    const s = this.settle;
    this.settle = null;
    if (e) s?.fail(e);
    else s?.ok();
  }

  /** Move to the spool file (once): the window no longer holds this client's next byte, or it stalled. */
  private toSpool(): void {
    if (this.mode === 'spool') return;
    this.mode = 'spool';
    tapStats.toSpool++;
    this.fill.tapFreed();
  }

  /** Send what may be sent now; called on every arrival (Fill) and every progress event. */
  readonly feed = (): void => {
    if (this.over || !this.sink) return;
    // A failure or a refusal cuts a client even while it waits for its socket.
    const cut = this.fill.cut();
    if (cut) return this.stop(cut);
    if (this.busy || this.blocked) return;
    const fill = this.fill;
    if (this.mode === 'memory' && this.sendMemory() !== 'more') return;
    if (this.mode === 'spool' && this.pos < this.limit()) return this.readSpool(this.limit());
    // Verified, and all but the last HOLD_BACK bytes sent: the hook first, then the rest; then done.
    if (fill.state === 'verified' && !this.recorded) return this.record();
    if (fill.state === 'verified' && this.pos >= fill.written) return this.stop();
    // Caught up: waiting for bytes, the upstream must not stay paused for a slower leader (TapSet.hold).
    fill.tapFreed();
  };

  /**
   * Write what the window holds for this client, corked into one writev: 'more' when it has sent
   * all it may (or moved to the spool) and feed() goes on; 'stop' when it blocked or ended.
   */
  private sendMemory(): 'more' | 'stop' {
    const sink = this.sink!;
    sink.cork?.();
    try {
      while (this.mode === 'memory') {
        const limit = this.limit();
        if (this.pos >= limit) break;
        const mem = this.fill.inMemory(this.pos, limit);
        if (!mem) {
          this.toSpool();
          break;
        }
        this.pos += mem.length;
        this.passed(mem.length);
        if (!sink.write(mem, false, noop)) {
          this.block();
          return 'stop';
        }
      }
      return 'more';
    } finally {
      sink.uncork?.();
    }
  }

  private block(): void {
    this.blocked = true;
    this.blockedAt = Date.now();
    // One timer per stall, not per block (a fast client blocks after nearly every chunk): re-armed
    // for the rest of the stall when it finds the client blocked again since.
    if (this.mode === 'memory' && this.stall === undefined) this.armStall(STALL_MS);
    this.sink!.onDrain(() => {
      this.blocked = false;
      this.fill.tapFreed();
      this.feed();
    });
  }

  private armStall(ms: number): void {
    this.stall = setTimeout(() => {
      this.stall = undefined;
      if (!this.blocked || this.over || this.mode !== 'memory') return;
      const left = this.blockedAt + STALL_MS - Date.now();
      if (left > 0) this.armStall(left);
      else this.toSpool();
    }, ms);
    this.stall.unref();
  }

  private readSpool(limit: number): void {
    this.busy = true;
    const len = Math.min(SPOOL_READ, limit - this.pos);
    this.buf ??= Buffer.allocUnsafe(SPOOL_READ);
    const piece = this.buf.subarray(0, len);
    this.fill.readAt(piece, this.pos).then(
      ({ bytesRead }) => {
        if (this.over) return;
        if (bytesRead === 0) return this.stop(new AirlockError('INTERNAL', 'spool file shorter than written'));
        const got = piece.subarray(0, bytesRead);
        this.pos += bytesRead;
        this.passed(bytesRead);
        // The buffer is read into again once the sink is done with it and wants more.
        let wrote = false;
        let drained = false;
        const next = () => {
          if (!wrote || !drained || this.over) return;
          this.busy = false;
          this.feed();
        };
        const ok = this.sink!.write(got, true, () => {
          wrote = true;
          next();
        });
        if (ok) {
          drained = true;
          next();
        } else
          this.sink!.onDrain(() => {
            drained = true;
            next();
          });
      },
      (e: Error) => this.stop(e),
    );
  }

  /** The hook (the pull record) before the file's last HOLD_BACK bytes; a rejection cuts the body. */
  private record(): void {
    this.busy = true;
    this.beforeEnd().then(
      () => {
        if (this.over) return;
        this.recorded = true;
        this.busy = false;
        this.feed();
      },
      (e: Error) => this.stop(e),
    );
  }
}

const noop = (): void => {};

/** A fill's FillBodies: fed on every arrival, and asked whether one holds the upstream paused. */
export class TapSet {
  private readonly taps = new Set<FillBody>();

  add(t: FillBody): void {
    this.taps.add(t);
  }

  delete(t: FillBody): void {
    this.taps.delete(t);
  }

  feed(): void {
    for (const t of this.taps) t.feed();
  }

  /**
   * Whether the leading client in memory lags half of `bound` behind `received`, blocked on its
   * socket. Only the leader paces the upstream: a follower that falls behind leaves the window and
   * is moved to the spool (FillBody.feed), it never holds the others. Nor does the leader hold
   * anyone waiting for bytes: a client caught up (one that joined late and read the spool), or a
   * reader that is no client of the set (`readers` counts them all: a range, a peer replica). A
   * slow leader that drains now and then (never stalled) would otherwise pace them all; it is
   * outrun instead, and moved to the spool once its next byte leaves the window.
   */
  hold(received: number, bound: number, readers: number): boolean {
    const lead = this.pacer(readers);
    return lead !== null && lead.holding(received, bound);
  }

  /**
   * Where the window must keep bytes from (Infinity: anywhere it may trim) as a chunk arrives at
   * `at`: the next byte of the client that paces the upstream, and of any client waiting at the
   * front. The latter costs nothing but near the end, where it waits before the held-back last bytes
   * while a small last read arrives: within HOLD_BACK and a feed of `at`, so within `bound` (at least
   * 128 KiB). Farther, it waits because the fill allows it nothing yet (an inspected file before its
   * release: every client at byte 0), and nothing pauses the upstream for it: keeping its bytes kept
   * the whole file in memory (break-window test). It is moved to the spool once allowed, as before.
   */
  keepFrom(readers: number, at: number, bound: number): number {
    let keep = this.pacer(readers)?.inMemoryAt ?? Infinity;
    for (const t of this.taps) if (t.waiting && t.inMemoryAt >= 0 && at - t.inMemoryAt <= bound) keep = Math.min(keep, t.inMemoryAt);
    return keep;
  }

  /** The leading client in memory, when it may pace the upstream (see hold). */
  private pacer(readers: number): FillBody | null {
    if (readers > this.taps.size) return null;
    let lead: FillBody | null = null;
    for (const t of this.taps) {
      if (t.waiting) return null;
      if (t.inMemoryAt >= 0 && (lead === null || t.inMemoryAt > lead.inMemoryAt)) lead = t;
    }
    return lead;
  }
}
