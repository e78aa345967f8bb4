/**
 * The BlobCache's vocabulary (core/cache.ts): how it is configured, what a fetch asks and what it
 * answers. Kept apart so that the cache itself reads in one sitting.
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { DiskReserve } from './disk-reserve.js';
import type { FillBudget } from './fill.js';
import type { ClientSlots } from './slots.js';
import type { ByteRange } from '../storage/blob-store.js';
import type { LeaseStore } from '../storage/meta-store.js';

export type CacheOutcome = 'hit' | 'miss' | 'join';

export interface CacheOptions {
  /** A verified blob could not be committed to the store (it is fetched again next time). */
  onCommitError?: (sha256: string, e: unknown) => void;
  /** A stored blob that no longer matches its digest was found (and forgotten): say so loudly. */
  onCorrupt?: (sha256: string, got: string, quarantined: string | null) => void;
  /** What each upstream body may cost (rate, deadline, abandonment). */
  budget?: FillBudget;
  /** A download was ended by its budget (too slow, past its deadline, abandoned). */
  onCut?: (why: 'slow' | 'deadline' | 'abandoned') => void;
  /** New upstream downloads under way per client (ClientSlots). */
  slots?: ClientSlots;
  /** Bytes the cache may hold (0: no limit); past it the least recently used blobs are evicted. */
  maxBytes?: number;
  /** A blob larger than this share of maxBytes is served but not stored (default 0.5; cache.max_file_share). */
  maxFileShare?: number;
  /** Hash whole cache hits as they are served (default true; see README Reliability for the cost). */
  verifyHits?: boolean;
  /** Blobs were evicted (to stay under maxBytes, or to keep the disk's free-space reserve); `stored` is what the cache holds now. */
  onEvict?: (count: number, bytes: number, stored: number, why: 'max_bytes' | 'min_free_bytes') => void;
  /**
   * The blob store's free-space reserve (cache.min_free_bytes, filesystem store only): eviction
   * also keeps free space above it, and a new fill that would take it below is refused.
   */
  disk?: DiskReserve;
  /** A new fill was refused: even after eviction the disk would be `short` bytes below its reserve. */
  onDiskRefused?: (sha256: string, short: number) => void;
  /** What the cache holds changed (metrics). */
  onStored?: (bytes: number) => void;
  /**
   * Replicas sharing the stores: one upstream fill per blob across all of them. `owner` names
   * this process; a lease not renewed for `staleMs` (its replica died) is taken over.
   */
  fleet?: {
    leases: LeaseStore;
    owner: string;
    staleMs?: number;
    waitMs?: number;
    /**
     * Replicas stream fills under way to each other (storage.peers, peer-stream.ts): the fleet's
     * shared secret, and where this replica answers (recorded in its lease rows; set once it listens).
     */
    peer?: { secret: Buffer; addr?: string };
  };
  /** Warm bodies handed to a cheaper server (offload.*): how to hand over a cached blob. */
  offload?: (sha256: string) => Promise<Offload>;
  /**
   * Set when the offload sends the store's file unverified (nginx): with verified hits, ranges are
   * then not handed over, and a whole body only once this process hashed its file within this many
   * ms with no write to the file since (cache.ts handOver).
   */
  offloadRecheckMs?: number;
  /**
   * Where failures of the cache's own background work go (use times, lease renewal and release,
   * eviction, clean-up), which no request sees: warn when the cache is degraded, error when
   * something is lost. Without one they are dropped.
   */
  log?: Pick<Logger, 'warn' | 'error'>;
}

/** A cached blob handed over: an internal redirect header for nginx, or a URL the client fetches. */
export type Offload = { header: [string, string] } | { redirect: string };

export interface FetchOptions {
  /**
   * Who asks (token name or address): a request that would start a new upstream download (not a
   * hit or a join) takes one of this client's slots first, and may wait for it or be refused.
   */
  client?: string;
  /** Aborted when the client has gone (it then gives up a place it waits for). */
  signal?: AbortSignal;
}

export interface Served {
  cache: CacheOutcome;
  /** Total size of the blob, when known before the transfer ends. */
  size: number | undefined;
  /** The range served, when one was asked for and the size is known. */
  range: ByteRange | undefined;
  /** A range was asked for that lies outside the blob: answer 416 (body is empty). */
  unsatisfiable: boolean;
  body: Readable;
  /** Resolves once every byte is verified (at once for hits); rejects on a mismatch or upstream failure. */
  settled: Promise<void>;
  /** Resolves when bytes may start flowing (inspected code-bearing files: after the verdict); rejects on a refusal. */
  gate: Promise<void>;
  /** Resolves once the fill is over: true when the blob is in the store (at once for hits). */
  committed: Promise<boolean>;
}
