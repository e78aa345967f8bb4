import type { Context, ErrorHandler } from 'hono';
import type { Logger } from 'pino';
import type { RecordCode } from '../core/record-codes.js';
import { AirlockError } from '../core/errors.js';
import type { Recorder, RecordRow } from '../core/records.js';
import type { CacheState } from '../storage/meta-store.js';
import { clientAddress, peerAddress, rawTargetPath, type AppEnv } from './send.js';

/** The row fields a refusal knows when it is thrown; the handler adds time, client, request id and ecosystem. */
export interface RefusalRow {
  name: string;
  version?: string | null;
  filename?: string | null;
  sha256?: string | null;
  size?: number | null;
  cache?: CacheState;
  scan?: string | null;
  /** What the signature check found (signing/record.ts signatureField), on a signature refusal. */
  signature?: string | null;
}

export interface RefusalInit {
  status: number;
  code: RecordCode;
  rule: string;
  /** The reason recorded, and (unless `answer` says otherwise) what the client is told. */
  reason: string;
  row: RefusalRow;
  /** 'deny' (a refusal, the default) or 'error' (the upstream failed: nothing to approve). */
  decision?: 'deny' | 'error';
  /** The front-end's own error to answer with, when its envelope needs more than status and reason (an OCI error code, a Hub error code and commit). */
  answer?: Error;
}

/**
 * A refused artefact request, thrown by a front-end's route: the shared error handler below
 * writes its pull row and answers in the front-end's envelope. A refusal is on record because it
 * is thrown, not because each route remembered to write a row.
 */
export class Refusal extends Error {
  readonly status: number;
  readonly code: RecordCode;
  readonly rule: string;
  readonly row: RefusalRow;
  readonly decision: 'deny' | 'error';
  readonly answer?: Error;

  constructor(r: RefusalInit) {
    super(r.reason);
    this.name = 'Refusal';
    this.status = r.status;
    this.code = r.code;
    this.rule = r.rule;
    this.row = r.row;
    this.decision = r.decision ?? 'deny';
    this.answer = r.answer;
  }
}

/** What a front-end's error answer is made of: a status, its protocol's code (for the log) and the message. */
export interface WireError {
  status: number;
  code?: string;
  message: string;
}

export interface ErrorEnvelope<E extends WireError> {
  ecosystem: 'pypi' | 'hf' | 'oci';
  recorder: Recorder;
  log: Logger;
  /** The protocol's error for a thrown one (a Refusal without `answer` included); null when it is unexpected. */
  wire(err: unknown): E | null;
  /** The answer to an unexpected error (a 500). */
  internal(): E;
  /** The one error envelope of the front-end. */
  render(c: Context<AppEnv>, e: E): Response;
}

/** Statuses that mean "this request is malformed": recorded as bad_request (a client probing, or a broken one). */
const MALFORMED = new Set([400, 414]);

/**
 * The request's path as a record's name: percent-decoded whole (as a person would read it),
 * control characters replaced, at most 300 characters. For rows that have no parsed artefact
 * name: malformed requests and wrong tokens.
 */
export function requestName(c: Context<AppEnv>): string {
  // Never the origin or userinfo of an absolute-form target (a token in a row or log line).
  const raw = rawTargetPath(c.env?.incoming?.url ?? new URL(c.req.url).pathname) || '/';
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    // A stray "%": decode what decodes.
    path = raw.replace(/(%[0-9a-f]{2})+/gi, (m) => {
      try {
        return decodeURIComponent(m);
      } catch {
        return m;
      }
    });
  }
  // eslint-disable-next-line no-control-regex
  path = path.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '?');
  return path.length > 300 ? `${path.slice(0, 299)}…` : path;
}

/**
 * The one error handler of the artefact front-ends: a Refusal's row is written (the record), a
 * malformed request's too (code bad_request); everything is logged once and answered in the
 * front-end's own envelope. A refused HEAD is recorded like a refused GET: clients ask with HEAD
 * first and never send the GET a refused HEAD would have led to (containerd and Docker resolve a
 * manifest by HEAD; huggingface_hub HEADs a file for its metadata before downloading it), so a
 * refusal kept off the record on HEAD would be the refusal nobody can see or approve. (A served
 * HEAD is not a pull and leaves no row: serve-blob.ts.) Repeated probes fold (core/records.ts).
 */
export function errorHandler<E extends WireError>(f: ErrorEnvelope<E>): ErrorHandler<AppEnv> {
  type Row = { code: RecordCode; rule: string; reason: string; decision: 'deny' | 'error'; row: RefusalRow };
  const rowOf = (c: Context<AppEnv>, r: Row) => ({
    ts: Date.now(),
    client: clientAddress(c),
    ecosystem: f.ecosystem,
    requestId: c.get('requestId'),
    ...r.row,
    cache: r.row.cache ?? 'none',
    decision: r.decision,
    reason: r.reason,
    rule: r.rule,
    code: r.code,
  });
  return (err, c) => {
    let shown: unknown = err;
    let row: Row | null = null;
    if (err instanceof Refusal) {
      row = { code: err.code, rule: err.rule, reason: err.message, decision: err.decision, row: err.row };
      shown = err.answer ?? err;
    }
    let e = f.wire(shown);
    if (e && MALFORMED.has(e.status) && !(err instanceof Refusal))
      row = { code: 'bad_request', rule: `${f.ecosystem}.request`, reason: e.message, decision: 'deny', row: { name: requestName(c) } };
    // A refusal is recorded even when its answer is unexpected (a 500 below).
    if (row) {
      // Past the client's refusal rate limit: 429, counted in one folded row (records.refusal_limit).
      const limited = rateLimit(c, f.recorder, rowOf(c, row));
      if (limited) return f.render(c, f.wire(limited) ?? f.internal());
      void f.recorder.record(rowOf(c, row));
    }
    if (!e) {
      f.log.error({ ecosystem: f.ecosystem, err: shown, path: c.req.path }, 'unexpected error');
      e = f.internal();
    } else if (e.status >= 500) f.log.error({ ecosystem: f.ecosystem, code: e.code, err: e.message, path: c.req.path }, 'request failed');
    else f.log.warn({ ecosystem: f.ecosystem, code: e.code, reason: e.message, path: c.req.path }, 'request refused');
    return f.render(c, e);
  };
}

/**
 * The refusal rate limit, for every recorded refusal (the handler above and the bad-token path of
 * app.ts): when `c`'s client (its token's name, or its address) is past its allowance, the
 * refusal is counted in a folded `rate_limited` row instead of its own, Retry-After is set, and the
 * error to answer with (a 429) is returned; null when the refusal is to be recorded as usual.
 */
export function rateLimit(c: Context<AppEnv>, recorder: Recorder, row: Omit<RecordRow, 'code'>): AirlockError | null {
  const id = c.get('identity');
  const wait = recorder.limitRefusal(id ? `token:${id.name}` : `addr:${peerAddress(c)}`);
  if (wait === 0) return null;
  recorder.rateLimited({
    ...row,
    name: '*',
    version: null,
    filename: null,
    sha256: null,
    size: null,
    scan: null,
    signature: null,
    rule: 'records.refusal_limit',
    reason: 'too many refusals for this client: further refusals are answered 429 and counted, not recorded one by one',
  });
  const outgoing = c.env?.outgoing;
  // (A transfer cut after its head was sent is counted too; its answer cannot change.)
  if (outgoing) {
    if (!outgoing.headersSent) outgoing.setHeader('retry-after', String(wait));
  } else if (!c.finalized) c.header('Retry-After', String(wait));
  return new AirlockError('TOO_MANY_REQUESTS', `too many refused requests from this client; retry after ${wait} s`);
}
