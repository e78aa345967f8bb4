import { Readable, type Writable } from 'node:stream';
import { AirlockError } from './errors.js';
import { HOLD_BACK } from './spool.js';
import type { HashPool } from './hasher.js';
import type { ByteRange, RandomRead } from '../storage/blob-store.js';
import type { ChunkList } from '../storage/meta-store.js';

/**
 * A verified warm hit (issue 29): the chunks covering the bytes asked for are read into reused
 * buffers, hashed on the hash workers (core/hasher.ts, in memory shared with them: no copy) a few
 * chunks ahead of the send, and each chunk's bytes go out only once it matched its digest in the
 * blob's chunk list (bound to the whole digest, core/chunks.ts). A chunk that does not match (or a
 * file cut short, or longer than recorded) fails the body before any of its bytes go out: the
 * client gets a cut transfer, never a complete one. The chunks holding the last HOLD_BACK bytes
 * also wait for `holdLast`'s hook (the pull record's commit), run once every chunk left verified:
 * not only the last chunk, which may be a few bytes.
 *
 * Why: hashing a hit on the main thread before it went out capped a verified warm GiB at ~0.22x
 * nginx serving its own cache, the main thread doing SHA-256 and the send one after the other.
 *
 * Sent straight into the client's socket (`sendTo`, used by http/send.ts): a buffer is reused once
 * the socket says it wrote it, so a transfer holds DEPTH chunks whatever its length. Read as a
 * plain Readable (tests through app.request, a consumer that is not a socket), each verified chunk
 * is copied out first.
 */

/** Chunks in flight per transfer while its client keeps up: one (or more) being written, the next ones read and hashed. */
const DEPTH = 8;
/** Idle buffers kept for the next hits (of the usual chunk size); the rest go to the collector. */
const IDLE = 16;
/**
 * What all warm hits' chunk buffers of a process may add up to. Each transfer always gets its first
 * buffer; read-ahead past this stops (a transfer then runs one chunk at a time until buffers come
 * back), so many clients at once cost this plus one chunk each, not DEPTH chunks each.
 */
export const HIT_MEMORY = 32 << 20;
/**
 * A client whose socket took nothing for this long, while the process's hits are past HIT_MEMORY,
 * gives back the chunks it read ahead (read and checked again when it goes on).
 */
const SHED_MS = 200;
/** A client whose socket took this long to take a chunk is behind: one chunk is read ahead for it, not DEPTH. */
const SLOW_MS = 20;
/** Bytes queued in the socket past which the client is behind (as core/fill-body.ts SOCKET_QUEUE). */
const SOCKET_QUEUE = 128 << 10;

interface Slot {
  sab: SharedArrayBuffer;
  /** The chunk's bytes (the first `chunkSize` bytes of sab). */
  bytes: Buffer;
  /** Where the worker writes the chunk's SHA-256 (the 32 bytes after it). */
  digest: Buffer;
}

/**
 * The chunk buffers of warm hits (issue 29: memory bounded under many slow readers). Before it,
 * every transfer took DEPTH buffers of its own: 60 clients reading a warm 1 GiB file slowly held
 * 4 MiB each (a server of 151 MB went to 375 MB), and a client that stopped reading held them for
 * as long as its connection stayed open.
 */
export class HitMemory {
  /** Bytes of buffers made and not dropped: lent out or idle. */
  held = 0;
  /** Buffers made so far (tests: a hit reuses them, memory stays flat). */
  made = 0;
  private readonly idle = new Map<number, Slot[]>();

  constructor(readonly budget = HIT_MEMORY) {}

  /** A buffer for one chunk: always for a transfer's first (`first`), else only within the budget (null: none now). */
  take(chunkSize: number, first: boolean): Slot | null {
    const had = this.idle.get(chunkSize)?.pop();
    if (had) return had;
    if (!first && this.held + chunkSize + 32 > this.budget) return null;
    this.held += chunkSize + 32;
    this.made++;
    const sab = new SharedArrayBuffer(chunkSize + 32);
    return { sab, bytes: Buffer.from(sab, 0, chunkSize), digest: Buffer.from(sab, chunkSize, 32) };
  }

  /** Bytes of buffers lent out now (held, less the idle ones). */
  get lent(): number {
    let idle = 0;
    for (const [size, list] of this.idle) idle += list.length * (size + 32);
    return this.held - idle;
  }

  /** Whether a transfer should hand a buffer back instead of keeping it for its next chunk. */
  tight(): boolean {
    return this.held > this.budget;
  }

  give(chunkSize: number, s: Slot): void {
    let list = this.idle.get(chunkSize);
    if (!list) this.idle.set(chunkSize, (list = []));
    // Kept for the next chunk even past the budget: dropping it would only have the next transfer make one again.
    if (list.length < IDLE) list.push(s);
    else this.held -= chunkSize + 32;
  }
}

/** The process's warm-hit buffers (one budget for every cache of the process). */
export const hitMemory = new HitMemory();

export interface HitBodyOptions {
  file: RandomRead;
  sha256: string;
  size: number;
  list: ChunkList;
  /** The bytes to send (the whole blob for a whole hit). */
  range: ByteRange;
  hashes: HashPool;
  /** Told once, before the body fails, when a chunk does not match (forget the blob). */
  onRot: (got: string, e: AirlockError) => Promise<void>;
  /** Where its chunk buffers come from (default: the process's hitMemory). */
  memory?: HitMemory;
}

export class HitBody extends Readable {
  private readonly first: number;
  private readonly last: number;
  /** The chunk before which the hook runs: the first holding any of the last HOLD_BACK bytes sent. */
  private readonly hookAt: number;
  private readonly cs: number;
  private beforeEnd: () => Promise<void> = () => Promise.resolve();
  private passed: (n: number) => void = () => {};
  private started = false;
  private stopped = false;
  private ended = false;
  private wake: (() => void) | null = null;
  private pulled: (() => void) | null = null;
  private rot: AirlockError | null = null;
  private closing: Promise<void> | null = null;

  constructor(private readonly o: HitBodyOptions) {
    super();
    this.cs = o.list.chunkSize;
    this.first = Math.floor(o.range.start / this.cs);
    this.last = Math.floor(o.range.end / this.cs);
    const tail = Math.max(this.first, Math.floor(Math.max(0, o.range.end + 1 - HOLD_BACK) / this.cs));
    // The chunks from there to the last are all verified before the hook: no more than the slots hold.
    this.hookAt = this.last - tail < DEPTH ? tail : this.last;
  }

  /** The last HOLD_BACK bytes (the chunks holding them) go out only once `beforeEnd` resolves (a rejection cuts the body); `passed` counts bytes sent. */
  holdLast(beforeEnd: () => Promise<void>, passed: (bytes: number) => void): this {
    this.beforeEnd = beforeEnd;
    this.passed = passed;
    return this;
  }

  /** Read chunk i into a slot and check it against the list; throws DIGEST_MISMATCH (after onRot) if it does not match. */
  private async load(i: number, s: Slot): Promise<void> {
    const { size, list } = this.o;
    const start = i * this.cs;
    const len = Math.min(size, start + this.cs) - start;
    const got = await this.o.file.read(s.bytes.subarray(0, len), start);
    if (got !== len) return this.rotted('', `ends at byte ${start + got}, short of its recorded ${size} bytes`);
    if (i === Math.ceil(size / this.cs) - 1 && this.o.file.size > size)
      return this.rotted('', `is ${this.o.file.size} bytes, longer than its recorded ${size}`);
    await this.o.hashes.sum(s.sab, len, this.cs);
    if (!s.digest.equals(list.digests.subarray(i * 32, i * 32 + 32))) {
      const hex = s.digest.toString('hex');
      return this.rotted(hex, `has a chunk at byte ${start} that hashes to sha256:${hex}, not its recorded digest`);
    }
  }

  private async rotted(got: string, why: string): Promise<never> {
    if (!this.rot) {
      this.rot = new AirlockError(
        'DIGEST_MISMATCH',
        `the cached copy of sha256:${this.o.sha256} ${why} (disk corruption or tampering); transfer cut, the copy forgotten`,
      );
      await this.o.onRot(got, this.rot).catch(() => {});
    }
    throw this.rot;
  }

  /**
   * Run the transfer: `emit` is given each verified part in order and calls `done` once the slot's
   * bytes are no longer needed; it returns a promise when the client is behind (its socket full),
   * resolved once it has taken them. Up to DEPTH slots are reading, hashing or being emitted at
   * once while the client keeps up and the process's HitMemory has room; a client behind gets one
   * chunk read ahead, and one that took nothing for SHED_MS gives back what it read ahead (read and
   * checked again when it goes on): a stuck client holds only the chunk in its socket.
   */
  private async drive(emit: (part: Buffer, done: () => void) => void | Promise<void>): Promise<void> {
    const cs = this.cs;
    const { range } = this.o;
    const mem = this.o.memory ?? hitMemory;
    let queue: { i: number; slot: Slot; ready: Promise<void> }[] = [];
    const free: Slot[] = [];
    /** Slots this transfer took from `mem` and has not given back (queued, being written, or free). */
    let holding = 0;
    let behind = false;
    let next = this.first;
    const release = (s: Slot) => {
      holding--;
      mem.give(cs, s);
    };
    const giveBack = (s: Slot) => {
      if (this.ended || behind || mem.tight()) release(s);
      else free.push(s);
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    // `force`: the chunks up to the last are needed at once (the hook's), whatever the budget says.
    const refill = (force = false) => {
      while (next <= this.last && queue.length < (behind && !force ? 1 : DEPTH)) {
        let slot = free.pop();
        if (!slot) {
          slot = mem.take(cs, force || holding === 0) ?? undefined;
          if (!slot) return;
          holding++;
        }
        const i = next++;
        const ready = this.load(i, slot);
        ready.catch(() => {});
        queue.push({ i, slot, ready });
      }
    };
    // The client took nothing for SHED_MS: the chunks read ahead go back (once read and hashed), to be
    // read again from `next`. Also how the transfer ends: what it still holds goes back.
    const shed = () => {
      for (const s of free.splice(0)) release(s);
      if (queue.length === 0) return;
      next = queue[0].i;
      for (const q of queue)
        q.ready.then(
          () => release(q.slot),
          () => release(q.slot),
        );
      queue = [];
    };
    try {
      for (let i = this.first; i <= this.last; i++) {
        refill();
        while (queue.length === 0) {
          if (this.stopped) throw new AirlockError('CANCELLED', 'the client went away');
          await new Promise<void>((r) => (this.wake = r));
          refill();
        }
        const head = queue.shift()!;
        try {
          await head.ready;
          if (this.stopped) throw new AirlockError('CANCELLED', 'the client went away');
          if (i === this.hookAt) {
            // Every chunk still to send verified first (a rotted one is cut and recorded as such, not served).
            while (i < this.last && (queue.length === 0 || queue[queue.length - 1].i < this.last)) {
              if (this.stopped) throw new AirlockError('CANCELLED', 'the client went away');
              refill(true);
              if (queue.length > 0 && queue[queue.length - 1].i === this.last) break;
              await new Promise<void>((r) => (this.wake = r));
            }
            for (const q of queue) await q.ready;
            if (this.stopped) throw new AirlockError('CANCELLED', 'the client went away');
            await this.beforeEnd();
          }
        } catch (e) {
          giveBack(head.slot);
          throw e;
        }
        const at = i * cs;
        const from = Math.max(0, range.start - at);
        const to = Math.min(Math.min(this.o.size, at + cs) - at, range.end + 1 - at);
        this.passed(to - from);
        const taking = emit(head.slot.bytes.subarray(from, to), () => giveBack(head.slot));
        if (!taking) {
          behind = false;
          continue;
        }
        // The chunks from the hook on stay: they are verified and the record is committed for them.
        // Looked at again while the client stays stuck: the budget may be spent only later, by others.
        const t = i < this.hookAt ? setInterval(() => mem.tight() && shed(), SHED_MS) : undefined;
        const waited = Date.now();
        await taking;
        clearInterval(t);
        behind = Date.now() - waited >= SLOW_MS;
      }
    } finally {
      this.ended = true;
      // Slots still reading or hashing go back to the pool once their work is done; written ones from their callbacks.
      shed();
    }
  }

  /**
   * Send into a Node socket or response: each part is written from its slot, which is reused once
   * the write's callback says the bytes left (a write that never completes keeps its slot until the
   * connection closes: http/send-watch.ts closes one that takes nothing for transfers.send_timeout).
   * Resolves when the last part is handed to `out`; rejects on a rotted chunk, a hook that failed,
   * or `out` closing first. Either way the body is closed after.
   */
  async sendTo(out: Writable): Promise<void> {
    this.started = true;
    const gone = () => {
      this.stopped = true;
      this.wake?.();
    };
    out.once('close', gone);
    // A client that left before its body started (during the hit's lookup) is gone already; a failed write says so too.
    if (out.destroyed || out.writableEnded) gone();
    try {
      await this.drive((part, done) => {
        out.write(part, (err) => {
          if (err) gone();
          done();
        });
        if (out.writableLength < SOCKET_QUEUE || this.stopped) return;
        return new Promise<void>((r) => {
          const on = () => {
            out.off('drain', on);
            out.off('close', on);
            r();
          };
          out.on('drain', on);
          out.on('close', on);
        });
      });
    } finally {
      out.off('close', gone);
      this.destroy();
    }
  }

  override _read(): void {
    if (this.started) {
      const r = this.pulled;
      this.pulled = null;
      r?.();
      return;
    }
    this.started = true;
    this.drive((part, done) => {
      const copy = Buffer.from(part);
      done();
      if (!this.push(copy)) return new Promise<void>((r) => (this.pulled = r));
    }).then(
      () => this.push(null),
      (e: Error) => this.destroy(e),
    );
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.stopped = true;
    const w = this.wake;
    this.wake = null;
    w?.();
    const r = this.pulled;
    this.pulled = null;
    r?.();
    this.closing ??= this.o.file.close().catch(() => {});
    this.closing.then(() => cb(err));
  }
}
