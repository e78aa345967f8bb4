import type { Readable } from 'node:stream';
import type { FileBytes } from './bytes.js';
import { AirlockError } from './errors.js';

/** The shapes a fill is asked with and followed by (the Fill itself is in fill.ts). */

/** What an upstream opener returns: a Node stream (the HTTP response body) and its declared length. */
export interface UpstreamBody {
  body: Readable;
  size?: number;
}

export interface FillSpec {
  /** Expected SHA-256 (hex): the content address and the check. */
  sha256: string;
  /** Expected size when the index/manifest states one; checked before and while streaming. */
  size?: number;
  /** Opens the upstream body. Must throw AirlockError for non-2xx answers. */
  open(signal: AbortSignal): Promise<UpstreamBody>;
  /** Optional content inspection (model files), run on the spool file. */
  inspect?: Inspector;
  /**
   * Optional follower of a new fill that holds no client back (image layers are read for their
   * inventory as they pass): it gets the spool file to follow as it is written, and `verified`,
   * which says whether the bytes were the expected ones (before the commit). The promise it
   * returns resolves once it holds the spool file open; the fill waits for that (5 s at most)
   * before renaming the file.
   */
  observe?: (spool: SpoolFollow, verified: Promise<boolean>) => Promise<void> | void;
  /**
   * The fill is wanted even when no client reads it (the image gate reads a layer for its
   * inventory): it is not cancelled when its readers have gone.
   */
  keep?: boolean;
}

/**
 * The fleet-wide lease of one fill (replicas sharing a store): taken before the upstream is
 * asked, renewed while the fill runs, released once the blob is committed or the fill failed.
 * 'elsewhere': another replica filled the blob while this one waited (the fill then fails with
 * FILLED_ELSEWHERE and its callers look again, finding a hit). 'peer': another replica is filling
 * it and streams it (peer-stream.ts): the fill reads `peer()` instead of upstream, verifies it as
 * any upstream body, and leaves the commit to that replica (`committedElsewhere`).
 */
export interface FillLease {
  acquire(): Promise<'held' | 'elsewhere' | 'peer'>;
  release(): void;
  /** The filling replica's bytes as an upstream body (after 'peer'). */
  peer?(signal: AbortSignal): UpstreamBody;
  /** When the fill streamed another replica's and did not take the lease over since: whether that replica committed the blob (false once `signal` aborts). */
  committedElsewhere?(signal?: AbortSignal): Promise<boolean> | undefined;
  /** Is this fill streamed from another replica's? */
  fromPeer?(): boolean;
}

/** A fill's spool file as a follower sees it. */
export interface SpoolFollow {
  path: string;
  size: number;
  written(): number;
  /** Called on every write and when the fill ends; returns the unsubscribe. */
  onProgress(cb: () => void): () => void;
}

export interface Inspector {
  /**
   * Judge the file while it arrives: reads of `file` wait for its bytes (when the size is known up
   * front; otherwise the judge starts once every byte is in). Until `release()` is called no byte
   * goes to any client; after it, bytes stream held back only by the tail. The tail waits for the
   * judge to resolve; throwing (AirlockError CONTENT_REFUSED) refuses: before release() the client
   * gets an error instead of a body, after it the transfer is cut before its end.
   */
  judge(file: FileBytes, release: () => void): Promise<void>;
  /**
   * Called once the digest has matched and the judge has resolved, before the tail is released:
   * the only point where what the judge saw is known to be the expected bytes (keep verdicts here,
   * never from judge(), which may be reading bytes that turn out not to verify).
   */
  verified?(): Promise<void>;
  /**
   * Called when judge() refused and the download has since been verified: the refusal was about
   * the expected bytes, so it may be kept. Clients were cut at the refusal; the download goes on
   * to its digest only to establish this (nothing is cached).
   */
  refusedVerified?(): Promise<void>;
}

/** An inspector's refusal as it is, anything else it threw as an internal failure. */
export function inspectionError(e: unknown): AirlockError {
  return e instanceof AirlockError ? e : new AirlockError('INTERNAL', `inspection failed: ${(e as Error).message}`, { cause: e });
}
