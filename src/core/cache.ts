import { createHash, randomBytes } from 'node:crypto';
import { UseTimes } from './use-times.js';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { FileBytes } from './bytes.js';
import type { CacheOptions, CacheOutcome, FetchOptions, Served } from './cache-types.js';
import { AirlockError } from './errors.js';
import { CHUNK_CHECKS_OFF, HitReader, unsatisfiable } from './cache-hit.js';
import { Handover } from './handover.js';
import { chunkListOf } from './chunks.js';
import { Eviction } from './evict.js';
import { fleetLease, leasesReleased } from './lease.js';
import { DEFAULT_BUDGET, Fill, FillShare, type FillBudget, type FillSpec } from './fill.js';
import type { HashPool } from './hasher.js';
import type { ClientSlots } from './slots.js';
import { resolveRange, type RangeSpec } from './range.js';
import { reserveForUndeclared, shortAfterEviction, type DiskReserve } from './disk-reserve.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';

export type { CacheOptions, CacheOutcome, FetchOptions, Offload, Served } from './cache-types.js';

/**
 * The one fetch-verify-cache path every front-end uses. A hit streams from the blob store; a
 * miss starts (or joins) the single in-flight fill for that digest, so N concurrent clients cost
 * one upstream transfer and each streams as bytes arrive.
 */
export class BlobCache {
  readonly inflight = new Map<string, Fill>(); // the fills under way, by digest (other replicas stream them: http/peer.ts)
  /** Every fill not yet over (a failed one leaves `inflight` at once, but is over only once its spool file is gone). */
  private readonly running = new Set<Fill>();
  /** This cache's running fills share one memory bound (spool.ts). */
  private readonly share = new FillShare();
  private closed = false; // shut down: a fill asked for after this (its fetch was under way) is cancelled at once, before its lease or upstream

  private readonly onCommitError: (sha256: string, e: unknown) => void;
  private readonly onCorrupt: NonNullable<CacheOptions['onCorrupt']>;
  private readonly budget: FillBudget;
  private readonly slots: ClientSlots | undefined;
  private readonly onCut: NonNullable<CacheOptions['onCut']>;
  private readonly opts: CacheOptions;
  readonly verifyHits: boolean;
  readonly offload: CacheOptions['offload'];
  /** Readers of each cached blob now (never evicted while read). */
  private readonly serving = new Map<string, number>();
  /** Uses not yet written (one write per second at most, not one per hit). */
  private readonly uses: UseTimes;
  private readonly eviction: Eviction;
  private readonly log: Pick<Logger, 'warn' | 'error'>;
  /**
   * A blob larger than this share of max_bytes is served (verified as always) but not kept: one
   * pull of it would otherwise evict the whole cache, and be evicted itself by the next ones.
   */
  private readonly tooLarge = (size: number): boolean => {
    const max = this.opts.maxBytes ?? 0;
    return max > 0 && size > max * (this.opts.maxFileShare ?? 0.5);
  };
  /** Verified reads of cached blobs (chunk lists). */
  private readonly hits: HitReader;
  /** Warm hits handed over to a cheaper server (offload.*, handover.ts), when there is one. */
  readonly handover: Handover | undefined;
  /** A catch handler that logs the failure (warn) with `fields` and the error's message. */
  private readonly warn = (fields: object, msg: string) => (e: unknown) => this.log.warn({ ...fields, err: errText(e) }, msg);

  constructor(
    readonly store: BlobStore,
    readonly meta: BlobIndex,
    private readonly hashes: HashPool,
    opts: CacheOptions = {},
  ) {
    this.onCommitError = opts.onCommitError ?? (() => {});
    this.onCorrupt = opts.onCorrupt ?? (() => {});
    this.budget = opts.budget ?? DEFAULT_BUDGET;
    this.slots = opts.slots;
    this.onCut = opts.onCut ?? (() => {});
    this.opts = opts;
    this.verifyHits = opts.verifyHits ?? true;
    this.offload = opts.offload;
    this.log = opts.log ?? { warn: () => {}, error: () => {} };
    this.uses = new UseTimes(meta, this.warn({}, 'last-use times of cached blobs could not be written (eviction may pick those blobs sooner)'));
    this.hits = new HitReader(store, meta, (sha256, got) => this.forget(sha256, got), hashes);
    this.eviction = new Eviction({
      meta,
      store,
      opts,
      flushUses: () => this.flushUses(),
      serving: this.serving,
      busy: (sha256) => this.serving.has(sha256) || this.inflight.has(sha256),
      warn: this.warn,
    });
    if (opts.offload) this.handover = new Handover(this, opts.offload, this.verifyHits ? opts.offloadRecheckMs : undefined);
  }

  /** Write the uses noted since the last flush. */
  flushUses(): Promise<void> {
    return this.uses.flush();
  }

  /**
   * Room on disk for a new fill of `size` bytes (when known) beside the fills under way, above the
   * disk's reserve (cache.min_free_bytes): least recently used blobs are evicted first; when that
   * cannot make room the fill is refused (503), never the record's reserve taken.
   */
  private async room(sha256: string, size: number | undefined): Promise<void> {
    const disk = this.opts.disk;
    const short = disk ? await this.short(disk, size ?? 0) : 0;
    if (short === 0) return;
    this.opts.onDiskRefused?.(sha256, short);
    throw disk!.refusal(sha256, size, short);
  }

  private short(disk: DiskReserve, extra: number): Promise<number> {
    return shortAfterEviction(disk, this.running, extra, (need) => this.evict(need));
  }

  /** Bring the cache under cache.max_bytes and above the disk's reserve (evict.ts): one pass at a time. */
  evict(room = 0): Promise<void> {
    return this.eviction.evict(room);
  }

  /** Resolves when every fill under way has finished (committed or failed) and let its fleet lease go in the store. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running].map((f) => f.committed));
    await leasesReleased(this.opts.fleet);
  }

  /** Cancel every fill under way, and any asked for from now on (shutdown): leases released in the store, spool files removed. */
  async shutdown(): Promise<void> {
    this.closed = true;
    for (const f of this.running) f.cancel('the server is shutting down');
    await this.idle();
  }

  /**
   * Size of a cached blob (what HEAD answers, and whether a hit may be offloaded). With verified
   * hits the stored file's size is checked against it (a stat): a file cut short or grown is
   * forgotten (quarantined) and answers as not cached, never with a size it does not have.
   */
  async cachedSize(sha256: string): Promise<number | undefined> {
    const rec = await this.meta.getBlob(sha256);
    if (!rec || !this.verifyHits) return rec?.size;
    return (await this.storedWhole(sha256, rec.size)) ? rec.size : undefined;
  }

  /** Is the stored file of this size? If not, it is forgotten (quarantined when there is one). */
  private async storedWhole(sha256: string, size: number): Promise<boolean> {
    const st = await this.store.stat(sha256);
    if (!st) await this.meta.deleteBlob(sha256);
    else if (st.size !== size) await this.forget(sha256, `a file of ${st.size} bytes, not the recorded ${size}`);
    return st?.size === size;
  }

  /** Measure the disk's free space (cache.min_free_bytes) and, when it is below the reserve, evict. */
  checkDisk(): Promise<void> {
    return this.eviction.checkDisk();
  }

  /** What /-/readyz warns of: free space below the disk's reserve, as last measured. */
  diskWarning(): string | null {
    return this.opts.disk?.warning() ?? null;
  }

  inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * Store a small body that was read and verified in memory (an OCI manifest, at most a few MiB),
   * by the same temp file, fsync, rename path as a fill. Returns the sha256 it was stored under.
   */
  async putSmall(bytes: Buffer): Promise<string> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (await this.meta.getBlob(sha256)) return sha256;
    const tmp = join(this.store.spoolDir, `${sha256}.${randomBytes(6).toString('hex')}.small`);
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await this.store.putFile(sha256, tmp);
    } catch (e) {
      const failed = this.warn({ file: tmp }, 'a temporary file could not be removed');
      await unlink(tmp).catch((u) => (u as NodeJS.ErrnoException).code !== 'ENOENT' && failed(u));
      throw e;
    }
    await this.meta.putChunks(sha256, chunkListOf(sha256, bytes));
    await this.meta.putBlob({ sha256, size: bytes.length, createdAt: Date.now() });
    this.eviction.added(bytes.length);
    return sha256;
  }

  /** Random access to a cached blob (for inspecting it again), or null when it is not cached. */
  async fileBytes(sha256: string): Promise<FileBytes | null> {
    const rec = await this.meta.getBlob(sha256);
    if (!rec) return null;
    // Every byte checked against the chunk list before it is handed out (cache-hit.ts); a rotted copy is forgotten.
    const gone = (e: AirlockError) => (e.code === 'NOT_FOUND' ? this.meta.deleteBlob(sha256).then(() => null) : Promise.reject(e));
    const bytes = await this.hits.bytes(sha256, rec.size).catch(gone);
    if (bytes) this.uses.note(sha256);
    return bytes;
  }

  /** Read a small cached blob whole (null when absent); refuses anything over maxBytes. */
  async readSmall(sha256: string, maxBytes: number): Promise<Buffer | null> {
    const rec = await this.meta.getBlob(sha256);
    if (!rec || rec.size > maxBytes) return null;
    let body: Readable;
    try {
      body = await this.store.open(sha256);
    } catch (e) {
      if ((e as AirlockError).code !== 'NOT_FOUND') throw e;
      await this.meta.deleteBlob(sha256);
      return null;
    }
    const parts: Buffer[] = [];
    for await (const chunk of body) parts.push(chunk as Buffer);
    const bytes = Buffer.concat(parts);
    // Small blobs are checked on every read from the store (a few KiB of SHA-256): a rotted
    // manifest or git file is forgotten and fetched again, never served under a digest it lacks.
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== sha256 || bytes.length !== rec.size) {
      await this.forget(sha256, got);
      return null;
    }
    this.uses.note(sha256);
    return bytes;
  }

  /** A stored blob found not to match its digest: forget it (the next request fetches it again), keep its bytes in quarantine, say so. */
  async forget(sha256: string, got: string): Promise<void> {
    this.hits.drop(sha256);
    this.handover?.drop(sha256);
    await this.meta.deleteBlob(sha256);
    const kept = await this.store.quarantine(sha256).catch((e) => {
      this.log.error({ digest: sha256, got, err: errText(e) }, 'a corrupt blob could not be quarantined: its bytes are not kept for inspection');
      return null;
    });
    this.onCorrupt(sha256, got, kept);
  }

  /**
   * A verified fill that nobody reads (the image gate, `image check`): a hit is only noted as used;
   * a miss starts or joins the one fill of the blob, kept to its end though no client reads it.
   * Resolves once every byte is verified (before the commit's fsync), `stored` once the commit is
   * over, saying whether the blob is now in the store; rejects on a mismatch or an upstream failure.
   */
  async ensure(spec: FillSpec): Promise<{ cache: CacheOutcome; stored: Promise<boolean> }> {
    if (await this.meta.getBlob(spec.sha256)) {
      this.uses.note(spec.sha256);
      return { cache: 'hit', stored: Promise.resolve(true) };
    }
    const served = await this.fetch({ ...spec, keep: true });
    served.body.destroy();
    await served.settled;
    return { cache: served.cache, stored: served.committed };
  }

  /**
   * A cached blob's bytes, or null when it turned out not to be there or not whole (forgotten:
   * the caller fetches it again). Verified hits (cache.verify_hits) serve a range from verified
   * chunks only (cache-hit.ts; a file cut short fails its last chunk), and answer a rotted chunk by failing
   * the body and `settled` (the server records it as a digest mismatch) after forgetting the blob.
   */
  private async hit(sha256: string, size: number, want: RangeSpec | undefined): Promise<Served | null> {
    const r = resolveRange(want, size);
    if (r === 'unsatisfiable') return unsatisfiable('hit', size);
    // Settled when the body closes, unless a rotted chunk failed it first.
    let rotted!: (e: Error) => void;
    let ended!: () => void;
    const settled = new Promise<void>((resolve, reject) => ((ended = resolve), (rotted = reject)));
    settled.catch(() => {});
    let body: Readable;
    try {
      if (this.verifyHits && !CHUNK_CHECKS_OFF) {
        const list = r ? await this.hits.listFor(sha256, size) : undefined;
        if (list === null) return null;
        body = list && r ? await this.hits.range(sha256, size, list, r, rotted) : await this.hits.whole(sha256, size, rotted);
      } else body = await this.store.open(sha256, r);
    } catch (e) {
      if ((e as AirlockError).code !== 'NOT_FOUND') throw e;
      // The descriptor outlived its file (deleted by hand, lost volume): forget it and refill.
      await this.meta.deleteBlob(sha256);
      return null;
    }
    this.uses.note(sha256);
    this.serving.set(sha256, (this.serving.get(sha256) ?? 0) + 1);
    body.once('close', () => {
      const n = (this.serving.get(sha256) ?? 1) - 1;
      if (n > 0) this.serving.set(sha256, n);
      else this.serving.delete(sha256);
      ended();
    });
    return { cache: 'hit', size, range: r, unsatisfiable: false, body, settled, gate: Promise.resolve(), committed: Promise.resolve(true) };
  }

  /** @param want the client's Range header, parsed; resolved here once the size is known. */
  async fetch(spec: FillSpec, want?: RangeSpec, opts: FetchOptions = {}): Promise<Served> {
    const rec = await this.meta.getBlob(spec.sha256);
    if (rec) {
      const served = await this.hit(spec.sha256, rec.size, want);
      if (served) return served;
    }
    let fill = this.inflight.get(spec.sha256);
    if (!fill && this.opts.disk) {
      // A new fill: room for it on disk first (eviction, or a refusal); another may have started meanwhile.
      await this.room(spec.sha256, spec.size);
      fill = this.inflight.get(spec.sha256);
    }
    let release: (() => void) | undefined;
    if (!fill && opts.client !== undefined && this.slots) {
      release = await this.slots.acquire(opts.client, opts.signal);
      // While this request waited, another may have finished the fill, or started it (checked
      // with no await before this request would start its own: one upstream transfer per blob).
      if (await this.meta.getBlob(spec.sha256)) {
        release();
        return this.fetch(spec, want);
      }
      fill = this.inflight.get(spec.sha256);
      if (fill) {
        release();
        release = undefined;
      }
    }
    let cache: CacheOutcome = 'join';
    const lease = fill ? undefined : fleetLease(this.opts.fleet, this.meta, this.store, this.warn, spec);
    if (fill && spec.keep) fill.keep();
    if (!fill) {
      cache = 'miss';
      // A fill of undeclared size is watched for the disk's reserve as it arrives (disk-reserve.ts).
      const d = this.opts.disk;
      const f = new Fill(
        d && spec.size === undefined ? reserveForUndeclared(spec, d, (n) => this.short(d, n), this.opts.onDiskRefused) : spec,
        this.store,
        this.meta,
        this.hashes,
        this.budget,
        lease,
        this.share,
        this.tooLarge,
      );
      fill = f;
      this.inflight.set(spec.sha256, f);
      // Joiners keep reading the spool file until the blob is in the store, then hits take over.
      const forget = () => {
        if (this.inflight.get(spec.sha256) === f) this.inflight.delete(spec.sha256);
      };
      this.running.add(f);
      f.committed.then((ok) => {
        this.running.delete(f);
        forget();
        if (ok) this.eviction.added(f.written);
      });
      // A failed fill is forgotten at once: the next request starts a new one.
      f.once('failed', () => {
        forget();
        if (f.cutBy) this.onCut(f.cutBy);
      });
      f.on('commit-error', (e) => this.onCommitError(spec.sha256, e));
      void f.run();
      if (this.closed) f.cancel('the server is shutting down');
    }
    try {
      await fill.ready;
    } catch (e) {
      release?.();
      // Another replica filled it while this one waited for the lease: now it is a hit.
      if ((e as AirlockError).code === 'FILLED_ELSEWHERE') return this.fetch(spec, want, opts);
      throw e;
    }
    if (lease?.fromPeer?.()) cache = 'join'; // streamed from the replica filling it (peer-stream.ts): joined its fill
    const r = fill.size !== undefined ? resolveRange(want, fill.size) : undefined;
    if (r === 'unsatisfiable') {
      release?.();
      return unsatisfiable(cache, fill.size);
    }
    // A range waits for the file's digest (fill-reader.ts): kept to its end if the client gives up, its retry finds the blob.
    if (r) fill.keep();
    const body = fill.reader(r);
    if (release) {
      // The slot is the request's until its transfer ends, or the download does.
      body.once('close', release);
      void fill.committed.then(release);
    }
    return { cache, size: fill.size, range: r, unsatisfiable: false, body, settled: fill.settled, gate: fill.gate, committed: fill.committed };
  }
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
