import { Transform, pipeline } from 'node:stream';
import type { Context } from 'hono';
import { createHash } from 'node:crypto';
import { AirlockError, isMismatch } from '../core/errors.js';
import type { Recorder, RecordRow } from '../core/records.js';
import type { PullRecord } from '../storage/meta-store.js';
import { HOLD_BACK, type FillSpec } from '../core/fill.js';
import type { BlobCache, Offload } from '../core/cache.js';
import { HitBody } from '../core/hit-body.js';
import { FillBody } from '../core/fill-body.js';
import { requestedRange, resolveRange } from '../core/range.js';
import { sendBytes, sendStream, type AppEnv } from './send.js';
import { SendTimeout } from './send-watch.js';
import { rateLimit } from './refusal.js';

/**
 * Write a refusal or failure row of a blob transfer through the client's refusal rate limit
 * (records.refusal_limit), as the shared error handler does for every other refusal: past the
 * limit it is counted in the client's folded `rate_limited` row instead, and the 429 to answer
 * with is returned (callers keep their own status where the client did nothing wrong: an upstream
 * failure, the disk reserve). The first digest_mismatch of a blob always has its own row.
 */
function recordRefusal(c: Context<AppEnv>, recorder: Recorder, row: RecordRow): AirlockError | null {
  const limited = row.code === 'digest_mismatch' && recorder.firstMismatch(row.sha256) ? null : rateLimit(c, recorder, row);
  if (!limited) void recorder.record(row);
  return limited;
}

/** What goes into a blob transfer's pull record; serveBlob writes it, however the transfer ends. */
export interface BlobRecording {
  recorder: Recorder;
  /** The row's identity (ecosystem, name, version, filename, sha256, client, request id, time). */
  base: Omit<RecordRow, 'cache' | 'decision' | 'size' | 'reason' | 'rule'>;
  /** The policy rule that allowed the transfer. */
  rule: string;
  /** How reasons name the artefact (a file name, repo@digest). */
  label: string;
  /** The size to record when the transfer fails before its size is known. */
  declaredSize?: number;
  /** Fields known only when the row is written (the inspection summary). */
  extra?: () => { scan?: string | null };
  /** What verified the artefact's signature (signing/record.ts signatureField): kept on every row of the transfer. */
  signature?: string | null;
  /** A warning the served row carries as its reason (a continuity change under on_change: warn, signing/continuity.ts). */
  warning?: string;
  /** The content refusal behind a cut or a failed start, when the fill was refused by its inspector. */
  refusal?: () => { reason: string; rule: string } | undefined;
}

/**
 * Serve a verified blob (cached, or filled from upstream through the one BlobCache path) with
 * Range support, and write its pull record: allowed when the whole verified body passed (the
 * last chunk waits for the commit), refused when the fill failed or was refused (before the first
 * byte, or cutting the transfer), allowed with a note when the client left early. The caller
 * passes the protocol's headers (Content-Length/Content-Range are set here) and maps a thrown
 * error (raised only before the first byte) to its protocol's error.
 */
/**
 * Holds back the last HOLD_BACK bytes of a body (at least its last chunk) until `beforeEnd`
 * resolves: the pull record of a served artefact is committed, and a whole hit read as a stream
 * hashed (`seen`), before its client can have the whole file, whatever size its last chunks have.
 */
export function lastChunkAfter(beforeEnd: () => Promise<void>, passed: (bytes: number) => void = () => {}, seen?: (chunk: Buffer) => void): Transform {
  const held: Buffer[] = [];
  let heldBytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen?.(chunk);
      held.push(chunk);
      heldBytes += chunk.length;
      while (held.length > 1 && heldBytes - held[0].length >= HOLD_BACK) {
        const b = held.shift()!;
        heldBytes -= b.length;
        passed(b.length);
        this.push(b);
      }
      cb();
    },
    flush(cb) {
      beforeEnd().then(
        () => {
          for (const b of held.splice(0)) {
            passed(b.length);
            this.push(b);
          }
          cb();
        },
        (e: Error) => cb(e),
      );
    },
  });
}

export async function serveBlob(c: Context<AppEnv>, cache: BlobCache, spec: FillSpec, headers: Record<string, string>, r: BlobRecording): Promise<Response> {
  const row = (cacheState: PullRecord['cache'], size: number | null) => ({
    ...r.base,
    cache: cacheState,
    size,
    ...(r.signature ? { signature: r.signature } : {}),
    ...(r.extra?.() ?? {}),
  });
  try {
    return await start(c, cache, spec, headers, r, row);
  } catch (e) {
    // Failed before the first byte (upstream down or refusing, a size or digest that disagrees, an inspector's refusal).
    const refused = (e as AirlockError).code === 'CONTENT_REFUSED' ? r.refusal?.() : undefined;
    const mismatch = isMismatch(e);
    const errCode = (e as AirlockError).code;
    // A redirect to a host outside the allowed file hosts is a refusal, like a digest that disagrees.
    const code =
      refused || errCode === 'CONTENT_REFUSED'
        ? 'content_refused'
        : mismatch
          ? 'digest_mismatch'
          : errCode === 'UPSTREAM_HOST_NOT_ALLOWED'
            ? 'file_host'
            : errCode === 'TOO_MANY_REQUESTS'
              ? 'too_many_downloads'
              : errCode === 'CANCELLED'
                ? 'client_gone'
                : errCode === 'DISK_RESERVE'
                  ? 'disk_reserve'
                  : 'upstream_failed';
    const limited = recordRefusal(c, r.recorder, {
      ...row('none', r.declaredSize ?? null),
      decision: code === 'upstream_failed' || code === 'client_gone' || code === 'disk_reserve' ? 'error' : 'deny',
      reason: refused?.reason ?? `${r.label}: ${(e as Error).message}`,
      rule: refused?.rule ?? r.rule,
      code,
    });
    // Past the limit, a client refused for its own doing (too many downloads, refused content, a
    // file host) is answered 429; failures that are not the client's keep their status.
    throw limited && (code === 'too_many_downloads' || code === 'content_refused' || code === 'file_host') ? limited : e;
  }
}

async function start(
  c: Context<AppEnv>,
  cache: BlobCache,
  spec: FillSpec,
  headers: Record<string, string>,
  r: BlobRecording,
  row: (cache: PullRecord['cache'], size: number | null) => Omit<RecordRow, 'decision'>,
): Promise<Response> {
  if (cache.handover && c.req.method !== 'HEAD') {
    // A Range (or If-Range) is served here from verified chunks when the offload would send it unverified.
    const ranged = c.req.header('range') !== undefined || c.req.header('if-range') !== undefined;
    const handed = await cache.handover.handOver(spec.sha256, ranged);
    if (handed) return offloaded(c, handed.to, handed.size, headers, r, row);
  }
  const gone = new AbortController();
  c.env?.outgoing?.once('close', () => gone.abort());
  const served = await cache.fetch(spec, requestedRange(c.req.header('range'), c.req.header('if-range'), headers), {
    client: r.base.client,
    signal: gone.signal,
  });
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
  // A whole cached blob is hashed as it goes out and its last chunk waits for the digest: bytes
  // rotted on disk are cut before their end, forgotten and fetched again next time. (Ranges are
  // parts and cannot be checked alone; fills are verified by the fill itself.)
  // A HitBody (core/hit-body.ts) checks every chunk against the blob's chunk list itself, and holds its own last chunk;
  // a FillBody (core/fill-body.ts, a whole cold read) holds its own last bytes too.
  const direct = served.body instanceof HitBody || served.body instanceof FillBody ? served.body : null;
  const check = served.cache === 'hit' && !served.range && cache.verifyHits && !direct ? createHash('sha256') : null;
  let rotted: Error | null = null;
  const beforeEnd = async () => {
    if (check) {
      const got = check.digest('hex');
      if (got !== spec.sha256) {
        rotted = new AirlockError(
          'DIGEST_MISMATCH',
          `the cached copy of sha256:${spec.sha256} now hashes to sha256:${got} (disk corruption or tampering); transfer cut, the copy forgotten`,
        );
        await cache.forget(spec.sha256, got);
        throw rotted;
      }
    }
    recorded = true;
    // A record that cannot be written withholds the last chunk: the client never has the whole file off the record.
    return r.recorder.recordServed({ ...row(served.cache, size), decision: 'allow', rule: r.rule, ...(r.warning ? { reason: r.warning } : {}) });
  };
  const passed = (n: number) => (bytes += n);
  const body = direct
    ? direct.holdLast(beforeEnd, passed)
    : pipeline(served.body, lastChunkAfter(beforeEnd, passed, check ? (chunk) => check.update(chunk) : undefined), () => {});
  // A server stop waits for the transfer's row (core/records.ts transferStarted).
  const ended = r.recorder.transferStarted();
  return sendStream(c, status, headers, body, ({ error }) => {
    r.recorder.bytesSent(r.base.ecosystem, served.cache, bytes);
    if (recorded || !error) return ended();
    if (rotted) {
      recordRefusal(c, r.recorder, {
        ...row(served.cache, size),
        decision: 'deny',
        reason: `${r.label}: ${rotted.message}`,
        rule: r.rule,
        code: 'digest_mismatch',
      });
      return ended();
    }
    // Closed by Airlock (a client that took nothing for transfers.send_timeout) or by the client.
    const early = error instanceof SendTimeout ? error.message : `client closed the connection early (${error.message})`;
    void served.settled.then(
      () => {
        void r.recorder.record({ ...row(served.cache, size), decision: 'allow', rule: r.rule, reason: early });
        ended();
      },
      (fillError: Error) => {
        if ((fillError as AirlockError).code === 'CANCELLED') {
          r.recorder.record({
            ...row(served.cache, size),
            decision: 'allow',
            rule: r.rule,
            reason: `${early}; the download was then cancelled, no client was waiting for it`,
          });
          return ended();
        }
        const refused = r.refusal?.();
        // A fill of undeclared size cut before it took the disk into its reserve (core/disk-reserve.ts watchGrowth).
        const disk = (fillError.cause as AirlockError | undefined)?.code === 'DISK_RESERVE' ? (fillError.cause as AirlockError) : undefined;
        const code = refused ? 'content_refused' : disk ? 'disk_reserve' : isMismatch(fillError) ? 'digest_mismatch' : 'upstream_failed';
        recordRefusal(c, r.recorder, {
          ...row(served.cache, size),
          decision: disk ? 'error' : 'deny',
          reason: refused?.reason ?? `${r.label}: ${(disk ?? fillError).message}${disk || served.cache === 'hit' ? '' : '; transfer cut, nothing cached'}`,
          rule: refused?.rule ?? r.rule,
          code,
        });
        ended();
      },
    );
  });
}

/**
 * A warm hit handed to nginx or the object store: the decision was made and the pull row is
 * committed before the handover (a row that cannot be written withholds it), then the body is
 * someone else's to send. Content-Length is theirs too: nginx and S3 know the file.
 */
async function offloaded(
  c: Context<AppEnv>,
  to: Offload,
  size: number,
  headers: Record<string, string>,
  r: BlobRecording,
  row: (cache: PullRecord['cache'], size: number | null) => Omit<RecordRow, 'decision'>,
): Promise<Response> {
  await r.recorder.recordServed({ ...row('hit', size), decision: 'allow', rule: r.rule, ...(r.warning ? { reason: r.warning } : {}) });
  headers['x-airlock-cache'] = 'hit';
  if ('redirect' in to) return sendStream(c, 307, { ...headers, location: to.redirect, 'cache-control': 'no-store' }, null);
  return sendStream(c, 200, { ...headers, [to.header[0]]: to.header[1] }, null);
}

/**
 * Serve a small verified body held in memory (an OCI manifest, a Hub git file) and write its
 * pull record first: the row is committed before any byte goes out (a row that cannot be written
 * withholds the body). A HEAD is answered without a row (a probe, not a pull). With `ranges`, a
 * Range header is honoured; a range outside the body is answered 416 without a row, as serveBlob
 * answers it: nothing was served and nothing was refused.
 */
export async function serveSmall(
  c: Context<AppEnv>,
  body: Uint8Array,
  headers: Record<string, string>,
  r: { recorder: Recorder; row: RecordRow; ranges?: boolean; signature?: string | null },
): Promise<Response> {
  const range = r.ranges ? resolveRange(requestedRange(c.req.header('range'), c.req.header('if-range'), headers), body.length) : null;
  if (range === 'unsatisfiable') return sendBytes(c, 416, { ...headers, 'content-range': `bytes */${body.length}` }, Buffer.alloc(0));
  // What verified the body's signature (signing/record.ts signatureField), when a rule required one.
  if (c.req.method !== 'HEAD') await r.recorder.recordServed(r.signature ? { ...r.row, signature: r.signature } : r.row);
  if (range)
    return sendBytes(c, 206, { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${body.length}` }, body.subarray(range.start, range.end + 1));
  return sendBytes(c, 200, headers, body);
}
