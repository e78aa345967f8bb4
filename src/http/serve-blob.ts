import { Transform, pipeline } from 'node:stream';
import type { Context } from 'hono';
import { isMismatch } from '../core/errors.js';
import type { BlobCache, CacheOutcome, FillSpec } from '../core/fill.js';
import { parseRange } from '../core/range.js';
import { sendStream, type AppEnv } from './send.js';

/** How a transfer that did not complete ended. */
export interface BlobOutcome {
  cache: CacheOutcome;
  size: number | null;
  /** Why the transfer was cut, when the fill itself failed (the client got no clean end). */
  failure?: { code: 'digest_mismatch' | 'upstream_failed'; message: string };
  /** The client went away early while the content itself was fine. */
  clientClosed?: string;
}

/**
 * Serve a verified blob (cached, or filled from upstream through the one BlobCache path) with
 * Range support, and report how it ended, so each front-end can write its own pull record.
 * The caller passes the protocol's headers; Content-Length/Content-Range are set here.
 */
/**
 * Holds back the last chunk of a body until `beforeEnd` resolves: the pull record of a served
 * artefact is committed before its client can have the whole file.
 */
export function lastChunkAfter(beforeEnd: () => Promise<void>, passed: (bytes: number) => void = () => {}): Transform {
  let held: Buffer | null = null;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      const prev = held;
      held = chunk;
      if (prev) passed(prev.length);
      cb(null, prev ?? undefined);
    },
    flush(cb) {
      beforeEnd().then(
        () => {
          if (held) passed(held.length);
          cb(null, held ?? undefined);
        },
        (e: Error) => cb(e),
      );
    },
  });
}

export async function serveBlob(
  c: Context<AppEnv>,
  cache: BlobCache,
  spec: FillSpec,
  headers: Record<string, string>,
  record: {
    /** The whole verified body has passed: write the pull record; its last chunk waits for the commit. */
    served: (o: { cache: CacheOutcome; size: number | null }) => Promise<void>;
    /** The transfer ended before that (fill failed, or the client went away early): record why. */
    cut: (o: BlobOutcome) => void;
    /** Body bytes that went out, however the transfer ended (for airlock_bytes_sent_total). */
    sent?: (bytes: number, cache: CacheOutcome) => void;
  },
): Promise<Response> {
  const served = await cache.fetch(spec, parseRange(c.req.header('range')));
  headers['x-airlock-cache'] = served.cache;
  try {
    // Inspected code-bearing files answer only once judged, so a refusal is a proper error.
    await served.gate;
  } catch (e) {
    served.body.destroy();
    throw e;
  }
  if (served.unsatisfiable) {
    return sendStream(c, 416, { ...headers, 'content-range': `bytes */${served.size}` }, null);
  }
  let status = 200;
  if (served.range) {
    status = 206;
    headers['content-range'] = `bytes ${served.range.start}-${served.range.end}/${served.size}`;
    headers['content-length'] = String(served.range.end - served.range.start + 1);
  } else if (served.size !== undefined) {
    headers['content-length'] = String(served.size);
  }
  const size = served.size ?? null;
  // One record per transfer: written as served before the last chunk, or as cut afterwards.
  let recorded = false;
  let bytes = 0;
  const body = pipeline(
    served.body,
    lastChunkAfter(
      () => {
        recorded = true;
        return record.served({ cache: served.cache, size });
      },
      (n) => (bytes += n),
    ),
    () => {},
  );
  return sendStream(c, status, headers, body, ({ error }) => {
    record.sent?.(bytes, served.cache);
    if (recorded || !error) return;
    void served.settled.then(
      () => record.cut({ cache: served.cache, size, clientClosed: error.message }),
      (fillError: Error) => {
        const code = isMismatch(fillError) ? 'digest_mismatch' : 'upstream_failed';
        record.cut({ cache: served.cache, size, failure: { code, message: fillError.message } });
      },
    );
  });
}
