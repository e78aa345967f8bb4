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

/** Chunks in flight per transfer: one (or more) being written, the next ones read and hashed. */
const DEPTH = 4;
/** Idle buffers kept for the next hits (of the usual chunk size); the rest go to the collector. */
const IDLE = 16;

interface Slot {
  sab: SharedArrayBuffer;
  /** The chunk's bytes (the first `chunkSize` bytes of sab). */
  bytes: Buffer;
  /** Where the worker writes the chunk's SHA-256 (the 32 bytes after it). */
  digest: Buffer;
}

const idle = new Map<number, Slot[]>();

/** Buffers made so far (tests: a hit reuses them, memory stays flat). */
export const hitBuffers = { made: 0 };

function takeSlot(chunkSize: number): Slot {
  const had = idle.get(chunkSize)?.pop();
  if (had) return had;
  hitBuffers.made++;
  const sab = new SharedArrayBuffer(chunkSize + 32);
  return { sab, bytes: Buffer.from(sab, 0, chunkSize), digest: Buffer.from(sab, chunkSize, 32) };
}

function putSlot(chunkSize: number, s: Slot): void {
  let list = idle.get(chunkSize);
  if (!list) idle.set(chunkSize, (list = []));
  if (list.length < IDLE) list.push(s);
}

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
   * bytes are no longer needed. Up to DEPTH slots are reading, hashing or being emitted at once.
   */
  private async drive(emit: (part: Buffer, done: () => void) => void | Promise<void>): Promise<void> {
    const cs = this.cs;
    const { range } = this.o;
    const queue: { i: number; slot: Slot; ready: Promise<void> }[] = [];
    const free: Slot[] = [];
    let made = 0;
    let next = this.first;
    const giveBack = (s: Slot) => {
      if (this.ended) putSlot(cs, s);
      else free.push(s);
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    const refill = () => {
      while (next <= this.last) {
        const slot = free.pop() ?? (made < DEPTH ? (made++, takeSlot(cs)) : undefined);
        if (!slot) return;
        const i = next++;
        const ready = this.load(i, slot);
        ready.catch(() => {});
        queue.push({ i, slot, ready });
      }
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
              refill();
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
        await emit(head.slot.bytes.subarray(from, to), () => giveBack(head.slot));
      }
    } finally {
      this.ended = true;
      // Slots still reading or hashing go back to the pool once their work is done; written ones from their callbacks.
      for (const q of queue)
        q.ready.then(
          () => putSlot(cs, q.slot),
          () => putSlot(cs, q.slot),
        );
      for (const s of free) putSlot(cs, s);
      free.length = 0;
    }
  }

  /**
   * Send into a Node socket or response: each part is written from its slot, which is reused once
   * the write's callback says the bytes left (a write that never completes keeps its slot out of
   * the pool for good). Resolves when the last part is handed to `out`; rejects on a rotted chunk,
   * a hook that failed, or `out` closing first. Either way the body is closed after.
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
    this.drive(async (part, done) => {
      const copy = Buffer.from(part);
      done();
      if (!this.push(copy)) await new Promise<void>((r) => (this.pulled = r));
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
