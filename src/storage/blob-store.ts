import type { Readable } from 'node:stream';

/** A byte range, inclusive at both ends, already resolved against the blob's size. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The content-addressed blob seam. Blobs are immutable and named by their SHA-256.
 * Fills spool to a local file first (see core/fill.ts) and hand the verified file over with
 * putFile(): the filesystem store renames it into place, an S3-compatible store would upload it.
 */
export interface BlobStore {
  /**
   * Size of a stored blob, or null when absent. `version` (a local file's inode and change time)
   * changes whenever the file is written or replaced; stores that cannot tell leave it out.
   */
  stat(sha256: string): Promise<{ size: number; version?: string } | null>;
  /** A stream of the blob (or of one range of it). Throws AirlockError NOT_FOUND when absent. */
  open(sha256: string, range?: ByteRange): Promise<Readable>;
  /**
   * The blob for reads at positions into the caller's buffers (warm hits, core/hit-body.ts), where
   * the store has random access (the filesystem store). Throws AirlockError NOT_FOUND when absent.
   */
  openRandom?(sha256: string): Promise<RandomRead>;
  /** Move a fully written, verified and fsynced local file into the store under its digest. */
  putFile(sha256: string, localPath: string): Promise<void>;
  delete(sha256: string): Promise<void>;
  /**
   * Take bytes that no longer match their digest out of the content address, kept aside for
   * inspection (disk rot or tampering is evidence); returns where, or null if nothing was there.
   */
  quarantine(sha256: string): Promise<string | null>;
  /** Remove quarantined copies the limits (size, age) no longer allow; returns what was removed. */
  pruneQuarantine?(now?: number): Promise<string[]>;
  /** A short-lived URL a client may fetch the blob from directly (object stores; warm offload). */
  presign?(sha256: string, seconds: number): Promise<string>;
  /** A local directory for in-progress fills (on the same filesystem as the store, for the FS backend). */
  readonly spoolDir: string;
}

/** A stored blob open for positioned reads (BlobStore.openRandom). */
export interface RandomRead {
  /** The file's size when it was opened. */
  readonly size: number;
  /** Fill `into` from `position` on; fewer bytes than asked only at the end of the file. */
  read(into: Uint8Array, position: number): Promise<number>;
  close(): Promise<void>;
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** How much quarantine a store keeps (cache.quarantine_max_bytes, quarantine_max_days). */
export interface QuarantineLimits {
  maxBytes: number;
  maxAgeMs: number;
}

/** Rotted blobs kept for inspection by default: 1 GiB, 7 days. */
export const DEFAULT_QUARANTINE: QuarantineLimits = { maxBytes: 2 ** 30, maxAgeMs: 7 * 86_400_000 };

/**
 * Which quarantined files to remove: those older than maxAgeMs, then the oldest until the rest
 * fit in maxBytes (the newest too, when it alone is larger). `at` is when each was quarantined.
 */
export function quarantineExcess<T extends { at: number; size: number }>(entries: T[], limits: QuarantineLimits, now: number): T[] {
  const byAge = [...entries].sort((a, b) => a.at - b.at);
  let total = byAge.reduce((n, e) => n + e.size, 0);
  const out: T[] = [];
  for (const e of byAge) {
    if (now - e.at <= limits.maxAgeMs && total <= limits.maxBytes) break;
    out.push(e);
    total -= e.size;
  }
  return out;
}

/** The time a quarantined file's name (<hex>.<ms>) records, or NaN. */
export const quarantinedAt = (name: string): number => Number(/\.(\d+)$/.exec(name)?.[1] ?? NaN);
