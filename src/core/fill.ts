import { randomBytes } from 'node:crypto';
import type { HashPool, SpoolDigest, SpoolHash } from './hasher.js';
import { makeChunkList } from './chunks.js';
import { EventEmitter } from 'node:events';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AirlockError } from './errors.js';
import { abandonLater, DEFAULT_BUDGET, watchBody, type FillBudget } from './budget.js';
export { DEFAULT_BUDGET, type FillBudget } from './budget.js';
import { fileHandleBytes, type FileBytes } from './bytes.js';
export type { FileBytes } from './bytes.js';
import { inspectionError, type FillLease, type FillSpec, type UpstreamBody } from './fill-spec.js';
export type { FillLease, FillSpec, Inspector, SpoolFollow, UpstreamBody } from './fill-spec.js';
import { growingBytes, observeSpool, spoolFollow, spoolReader } from './fill-reader.js';
import { FillBody, TapSet, type TapSource } from './fill-body.js';
import { FillShare, HOLD_BACK, SpoolWindow } from './spool.js';
export { FillShare, HOLD_BACK } from './spool.js';
import type { BlobStore, ByteRange } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';

/**
 * Clients of a fill are fed once this many bytes arrived unfed (or at the turn's end): a plain-HTTP
 * read (~64 KiB) at once, as before; four 16 KiB TLS records in one writev instead of four writes
 * (main thread 2.9-4.1 -> 2.1-2.9 CPU-s per GiB, curl's halved: profile-cold HTTPS=1, A/B). Fed
 * only per turn, a burst overran the window and moved the client to the spool (fill-body test).
 */
const FEED_BATCH = 64 << 10;
/** The hash worker is told of new spool bytes once per this many (each message wakes it). */
const HASH_STEP = 1 << 20;

type FillState = 'opening' | 'running' | 'verified' | 'failed';

/**
 * (Most of the file on purpose: its states, spooling, hashing, inspection, hold-back and commit
 * depend on each other's order. Apart: spec shapes in fill-spec.ts, the window and memory bounds
 * in spool.ts, readers in fill-reader.ts and fill-body.ts, a peer replica's body in peer-stream.ts.)
 * One upstream download, spooled to a local file while it is hashed. Whole-file clients are
 * written from its memory as bytes arrive, or tail the spool file once behind (fill-body.ts);
 * ranges and the inspector read the spool file (positional reads on the fill's own descriptor, so
 * a rename on commit does not disturb them). Memory stays bounded whatever the size or readers.
 */
export class Fill extends EventEmitter implements TapSource {
  state: FillState = 'opening';
  /** Bytes in the spool file, and bytes received from the upstream (the difference is queued in memory). */
  written = 0;
  received = 0;
  size: number | undefined;
  error: Error | undefined;
  readonly ready: Promise<void>;
  readonly settled: Promise<void>;
  /** Resolves once the fill is over: true when the blob is in the store, false otherwise. */
  readonly committed: Promise<boolean>;
  private committing = false;
  private resolveCommitted!: (ok: boolean) => void;
  private fh: FileHandle | undefined;
  private tmpPath: string;
  private readers = 0;
  private hashJob: SpoolHash | undefined;
  private readonly window = new SpoolWindow();
  /** Whole-file clients written from the fill's memory as bytes arrive (fill-body.ts). */
  readonly taps = new TapSet();
  /** A client in memory no longer holds the upstream paused: resume it unless something else does (set by pump). */
  tapFreed: () => void = () => {};
  private readonly abort = new AbortController();
  /** Resolves when clients may start receiving bytes: at once, once the inspector releases them, or after the verdict. */
  readonly gate: Promise<void>;
  private resolveGate!: () => void;
  private rejectGate!: (e: Error) => void;
  private released = false;
  private judging: Promise<void> | undefined;
  /** The inspector's refusal: clients are cut, the download goes on to check its digest. */
  private refusal: Error | undefined;
  /** Resolves once the observer holds the spool file open (the commit renames it). */
  private observerReady: Promise<void> | undefined;
  /** The spool file's creation, once started: a failure removes the file only after it (else it would outlive the fill). */
  private opening: Promise<unknown> = Promise.resolve();
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;
  private resolveSettled!: () => void;
  private rejectSettled!: (e: Error) => void;
  /** Wanted with no reader (see FillSpec.keep); set when such a caller joins. */
  private kept: boolean;
  private abandonTimer: NodeJS.Timeout | undefined;
  /** Why the budget ended the fill, if it did (metrics). */
  cutBy: 'slow' | 'deadline' | 'abandoned' | undefined;
  private stopWatch: () => void = () => {};

  constructor(
    private readonly spec: FillSpec,
    private readonly store: BlobStore,
    private readonly meta: BlobIndex,
    private readonly hashes: HashPool,
    private readonly budget: FillBudget = DEFAULT_BUDGET,
    private readonly lease?: FillLease,
    /** The running fills of this fill's owner, which share one memory bound (spool.ts). */
    private readonly share: FillShare = new FillShare(),
    /** A verified blob of this size is served but not stored (cache.max_file_share). */
    private readonly tooLarge: (size: number) => boolean = () => false,
  ) {
    super();
    this.setMaxListeners(0);
    this.kept = spec.keep === true;
    this.tmpPath = join(store.spoolDir, `${spec.sha256}.${randomBytes(6).toString('hex')}.part`);
    this.ready = new Promise((res, rej) => ((this.resolveReady = res), (this.rejectReady = rej)));
    this.settled = new Promise((res, rej) => ((this.resolveSettled = res), (this.rejectSettled = rej)));
    this.committed = new Promise((res) => (this.resolveCommitted = res));
    this.gate = new Promise((res, rej) => ((this.resolveGate = res), (this.rejectGate = rej)));
    // Callers may not await these; never let them become unhandled rejections.
    for (const p of [this.ready, this.settled, this.gate]) p.catch(() => {});
    if (!spec.inspect) this.ready.then(() => this.resolveGate(), noop);
  }

  /** End the fill now (shutdown): readers are cut, nothing is cached; a verified one stops waiting for another replica's commit. */
  cancel(why: string): void {
    this.abort.abort();
    this.fail(new AirlockError('CANCELLED', `download of sha256:${this.spec.sha256} cancelled: ${why}`));
  }

  /** A caller that needs the fill finished even with no reader has joined it. */
  keep(): void {
    this.kept = true;
  }

  /** With no reader left, cancel the fill after the grace, unless it is kept or nearly done (FillBudget). */
  private maybeAbandon(): void {
    const wanted = () => this.kept || this.readers > 0 || this.state !== 'running';
    if (this.budget.abandonMs <= 0 || wanted() || this.abandonTimer) return;
    this.abandonTimer = abandonLater(this.budget, () => {
      this.abandonTimer = undefined;
      if (wanted() || (this.size !== undefined && this.size - this.written <= this.budget.finishBytes)) return;
      this.cutBy = 'abandoned';
      this.fail(new AirlockError('CANCELLED', `download of sha256:${this.spec.sha256} cancelled after ${this.written} bytes: no client was waiting for it`));
    });
  }

  /** Bytes spool readers may have now. */
  available(): number {
    return this.limitAt(this.written);
  }

  /** Bytes clients in memory may have now: the same bound over what was received (FillBody). */
  sendable(): number {
    return this.limitAt(this.received);
  }

  private limitAt(have: number): number {
    if (this.state === 'verified') return this.written;
    // Inspected files: nothing until the inspector has judged the part that could run code.
    if (this.spec.inspect && (!this.released || this.refusal)) return 0;
    // The file's last HOLD_BACK bytes wait for the digest (a range waits for all of it, fill-reader.ts). A size
    // only the upstream (or a peer) declared is a claim it may stop short of: then the last bytes received wait.
    return Math.max(0, this.spec.size !== undefined ? Math.min(have, this.spec.size - HOLD_BACK) : have - HOLD_BACK);
  }

  private release = (): void => {
    if (this.released || this.state === 'failed') return;
    this.released = true;
    this.resolveGate();
    this.emit('progress');
  };

  /**
   * Start the inspector (once). Its refusal cuts every client at once, wherever the download is;
   * the download itself goes on to its digest, so the refusal can be kept only if it was about
   * the expected bytes (finish() then fails the fill: nothing is cached).
   */
  private startJudge(file: FileBytes): void {
    if (this.judging || !this.spec.inspect) return;
    this.judging = this.spec.inspect.judge(file, this.release);
    this.judging.catch((e) => {
      if (this.state !== 'running' && this.state !== 'opening') return;
      const err = inspectionError(e);
      this.refusal = err;
      this.rejectGate(err);
      this.rejectSettled(err);
      this.emit('progress');
    });
  }

  async run(): Promise<void> {
    let up: UpstreamBody;
    try {
      const opening = open(this.tmpPath, 'wx+');
      this.opening = opening.catch(noop);
      this.fh = await opening;
      if (this.state === 'failed') return this.maybeClose(); // cancelled (cache.shutdown) as it was created: fail() found no descriptor
      const how = this.lease ? await this.lease.acquire() : 'held';
      if (how === 'elsewhere') throw new AirlockError('FILLED_ELSEWHERE', `sha256:${this.spec.sha256} was filled by another replica`);
      up = how === 'peer' && this.lease?.peer ? this.lease.peer(this.abort.signal) : await this.spec.open(this.abort.signal);
      if (this.spec.size !== undefined && up.size !== undefined && this.spec.size !== up.size) {
        up.body.destroy();
        throw new AirlockError('SIZE_MISMATCH', `upstream declares ${up.size} bytes for sha256:${this.spec.sha256}, the index says ${this.spec.size}`);
      }
      this.size = this.spec.size ?? up.size;
    } catch (e) {
      return this.fail(e as Error);
    }
    if ((this.state as FillState) === 'failed') return void up.body.destroy(); // cancelled as the upstream answered: not revived
    this.state = 'running';
    this.share.started();
    this.resolveReady();
    if (this.size !== undefined) this.startJudge(growingBytes(this, this.size));
    if (this.size !== undefined) this.observerReady = observeSpool(this.spec, spoolFollow(this, this.tmpPath, this.size), this.settled);
    this.pump(up.body);
    this.maybeAbandon();
  }

  /**
   * Spool the upstream body: queue what arrives, write it out once per turn of the event loop,
   * feed the hash worker, pause and resume the socket on the queue's bound, and check the digest
   * at the end. One function (~110 lines) on purpose: its closure state (queue, queued, ended,
   * writing, scheduled, finishing) is shared by the data, end, error and close handlers and by
   * drain, whose interleavings are the subtle part; split apart they would be harder to follow.
   */
  private pump(body: Readable): void {
    const hash = this.hashes.start(this.tmpPath);
    this.hashJob = hash;
    const queue: Buffer[] = [];
    // Bytes queued for the spool, and received since the clients were last fed; the turn's states.
    let [queued, unfed, hashedTo] = [0, 0, 0];
    let [ended, writing, scheduled, finishing] = [false, false, false, false];
    this.stopWatch = watchBody(
      this.budget,
      body,
      () => this.received,
      (by, why) => {
        if (this.state !== 'running') return;
        this.cutBy = by;
        body.destroy();
        this.fail(
          new AirlockError('UPSTREAM_UNAVAILABLE', `upstream too slow for sha256:${this.spec.sha256}: ${why}; transfer cut after ${this.written} bytes`),
        );
      },
    );

    const drain = async (): Promise<void> => {
      if (writing || this.state !== 'running') return;
      writing = true;
      try {
        while (queue.length > 0) {
          const bufs = queue.splice(0, queue.length);
          let n = 0;
          for (const b of bufs) n += b.length;
          const { bytesWritten } = await this.fh!.writev(bufs, this.written);
          if (bytesWritten !== n) throw new AirlockError('INTERNAL', `short write to the spool file (${bytesWritten} of ${n} bytes): disk full?`);
          this.written += n;
          queued -= n;
          if (this.written - hashedTo >= HASH_STEP) hash.progress((hashedTo = this.written));
          this.emit('progress');
          this.tapFreed();
          if (this.state !== 'running') return;
        }
      } catch (e) {
        body.destroy();
        return this.fail(e as Error);
      } finally {
        writing = false;
      }
      // Once: a drain scheduled for the turn may run while the last one awaits the digest.
      if (ended && queue.length === 0 && this.state === 'running' && !finishing) {
        finishing = true;
        let digest: SpoolDigest;
        try {
          digest = await hash.finish(this.written);
        } catch (e) {
          return this.fail(e as Error);
        }
        await this.finish(digest);
      }
    };

    // Paused while the spool is behind, or while a client in memory lags half a window (fill-body.ts).
    const held = () => this.taps.hold(this.received, this.share.perFill(), this.readers);
    this.tapFreed = () => {
      if (this.state === 'running' && body.isPaused() && queued < this.share.perFill() / 2 && !held()) body.resume();
    };
    body.on('data', (chunk: Buffer) => {
      if (this.state !== 'running') return;
      const at = this.received;
      this.received += chunk.length;
      if (this.size !== undefined && this.received > this.size) {
        body.destroy();
        return this.fail(new AirlockError('SIZE_MISMATCH', `upstream sent more than the ${this.size} bytes declared for sha256:${this.spec.sha256}`));
      }
      queue.push(chunk);
      queued += chunk.length;
      // In memory from its arrival: clients keeping pace are written from it (before the spool write) once FEED_BATCH arrived unfed, or at the turn's end.
      const bound = this.share.perFill();
      this.window.add(at, [chunk], bound, this.taps.keepFrom(this.readers, at, bound));
      if ((unfed += chunk.length) >= Math.min(FEED_BATCH, bound / 2)) {
        unfed = 0;
        this.taps.feed();
      }
      if (queued >= bound || held()) body.pause();
      // One spool writev per turn of the event loop (libuv reads a busy socket up to 32 times a turn), not a thread-pool round trip per chunk.
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          unfed = 0;
          this.taps.feed();
          void drain();
        });
      }
    });
    body.on('end', () => {
      ended = true;
      void drain();
    });
    body.on('error', (e) => this.fail(new AirlockError('UPSTREAM_UNAVAILABLE', `upstream transfer failed: ${e.message}`, { cause: e })));
    body.on('close', () => {
      if (!ended && this.state === 'running') this.fail(new AirlockError('UPSTREAM_UNAVAILABLE', 'upstream closed the connection early'));
    });
  }

  /**
   * The digest has been computed over every byte. If it matches, release the held-back tail to
   * readers first, then make the blob durable and visible (fsync, rename into the store, then its
   * descriptor). The commit is off the clients' critical path: on this kind of machine an fsync of
   * 1 GiB costs ~2.7 s of disk time (bench/), more than the whole transfer. Clients already hold
   * verified bytes; a crash before the rename loses only the cache entry (spool files are
   * discarded at start), and nothing unverified or unsynced is ever served from the store.
   */
  private async finish({ digest, chunks }: SpoolDigest): Promise<void> {
    if (this.state !== 'running') return;
    if (digest !== this.spec.sha256) {
      return this.fail(new AirlockError('DIGEST_MISMATCH', `upstream bytes have sha256:${digest}, expected sha256:${this.spec.sha256}`));
    }
    if (this.size !== undefined && this.written !== this.size) {
      return this.fail(new AirlockError('SIZE_MISMATCH', `upstream sent ${this.written} bytes, expected ${this.size}`));
    }
    this.size = this.written;
    if (this.spec.inspect) {
      // The verdict comes before the tail (and, for code-bearing formats, before any byte).
      this.startJudge(fileHandleBytes(this.fh!, this.written));
      try {
        await this.judging;
        if (this.state === 'running') await this.spec.inspect.verified?.();
      } catch (e) {
        // A refusal (kept only now that the bytes it was about are verified), or a verified() failure.
        const refusal = this.refusal;
        if (refusal) await this.spec.inspect.refusedVerified?.().catch(() => {});
        return this.fail(refusal ?? inspectionError(e));
      }
      if (this.state !== 'running') return;
    }
    this.state = 'verified';
    this.share.stopped();
    this.stopWatch();
    this.resolveGate();
    this.committing = true;
    this.emit('progress');
    this.resolveSettled();
    let ok = false;
    try {
      if (this.observerReady) await Promise.race([this.observerReady, new Promise((r) => setTimeout(r, 5000).unref())]);
      // Streamed from the replica filling it (peer-stream.ts, its bytes verified here as upstream's): that replica commits.
      const elsewhere = this.lease?.committedElsewhere?.(this.abort.signal);
      if (elsewhere) ok = await elsewhere;
      // Too large to keep (cache.max_file_share): served, not stored (one pull cannot flush the cache); kept for inspection (the gate reads it): stored.
      if (elsewhere || (!this.kept && this.tooLarge(this.written))) throw new NotKept();
      await this.fh!.sync();
      await this.store.putFile(this.spec.sha256, this.tmpPath);
      // The chunk list first: a range never finds the blob without one (it would verify the whole blob first).
      await this.meta.putChunks(this.spec.sha256, makeChunkList(this.spec.sha256, this.written, chunks));
      await this.meta.putBlob({ sha256: this.spec.sha256, size: this.written, createdAt: Date.now() });
      ok = true;
    } catch (e) {
      unlink(this.tmpPath).catch(() => {});
      if (!(e instanceof NotKept)) this.emit('commit-error', e);
    } finally {
      this.committing = false;
      this.maybeClose();
      // After the descriptor is written: a replica woken by the release finds the blob.
      this.lease?.release();
      this.resolveCommitted(ok);
    }
  }

  private fail(e: Error): void {
    if (this.state === 'failed' || this.state === 'verified') return;
    const wasOpening = this.state === 'opening';
    if (this.state === 'running') this.share.stopped();
    this.state = 'failed';
    this.error = e;
    this.stopWatch();
    if (this.abandonTimer) clearTimeout(this.abandonTimer);
    this.abort.abort();
    this.hashJob?.abort();
    if (wasOpening) this.rejectReady(e);
    this.rejectSettled(e);
    this.rejectGate(e);
    this.emit('progress');
    this.emit('failed');
    this.lease?.release();
    const removed = this.opening.then(() => unlink(this.tmpPath)).catch(noop);
    this.maybeClose();
    // Over once the spool file is gone too (cache.idle() then leaves a clean spool directory).
    void removed.then(() => this.resolveCommitted(false));
  }

  private maybeClose(): void {
    if (this.state === 'failed' || (this.state === 'verified' && this.readers === 0)) {
      this.window.clear();
    }
    if (this.readers === 0 && !this.committing && (this.state === 'verified' || this.state === 'failed') && this.fh) {
      const fh = this.fh;
      this.fh = undefined;
      fh.close().catch(() => {});
    }
  }

  /** Why readers must stop now: the failure, or the inspector's refusal (SpoolSource). */
  cut(): Error | undefined {
    if (this.refusal) return this.refusal;
    return this.state === 'failed' ? (this.error ?? new AirlockError('INTERNAL', 'the download failed')) : undefined;
  }

  inMemory(pos: number, limit: number): Buffer | null {
    return this.window.slice(pos, limit);
  }

  readAt(buf: Buffer, pos: number): Promise<{ bytesRead: number }> {
    return this.fh!.read(buf, 0, buf.length, pos);
  }

  attachReader(): () => void {
    this.readers++;
    this.tapFreed(); // a new reader waits for bytes: the upstream is no longer held for a slow leader (TapSet.hold)
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.readers--;
      this.maybeClose();
      this.maybeAbandon();
    };
  }

  /** A range: from the spool file once verified (fill-reader.ts); the whole file: from memory as it arrives (fill-body.ts). */
  reader(range?: ByteRange): Readable {
    return range ? spoolReader(this, range) : new FillBody(this);
  }
}

const noop = (): void => {};

/** A verified blob deliberately not stored (too large for the cache): not a commit error. */
class NotKept extends Error {}
