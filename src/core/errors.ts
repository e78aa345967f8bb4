/**
 * One error type for the whole core, with stable string codes. Each front-end maps
 * codes to its own protocol envelope (PEP 503 page / HTTP status, HF X-Error-Code,
 * OCI error JSON); the core never renders anything itself.
 */
export type AirlockErrorCode =
  | 'POLICY_DENIED'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'UPSTREAM_UNAVAILABLE'
  | 'UPSTREAM_BAD_RESPONSE'
  | 'UPSTREAM_HOST_NOT_ALLOWED'
  | 'NO_VERIFIABLE_DIGEST'
  | 'CONTENT_REFUSED'
  /** The pull record could not be written: nothing is served whose record is not settled. */
  | 'RECORD_FAILED'
  /** A download no client was waiting for any more (FillBudget). */
  | 'CANCELLED'
  /** Another replica filled the blob while this one waited for its lease (look again: it is a hit). */
  | 'FILLED_ELSEWHERE'
  /** A client has too many cold transfers under way (transfers.per_client). */
  | 'TOO_MANY_REQUESTS'
  /** A new fill would take the disk below its free-space reserve and nothing more can be evicted (cache.min_free_bytes). */
  | 'DISK_RESERVE'
  | 'INTERNAL';

const STATUS: Record<AirlockErrorCode, number> = {
  POLICY_DENIED: 403,
  NOT_FOUND: 404,
  BAD_REQUEST: 400,
  DIGEST_MISMATCH: 502,
  SIZE_MISMATCH: 502,
  UPSTREAM_UNAVAILABLE: 502,
  UPSTREAM_BAD_RESPONSE: 502,
  UPSTREAM_HOST_NOT_ALLOWED: 502,
  NO_VERIFIABLE_DIGEST: 403,
  CONTENT_REFUSED: 403,
  RECORD_FAILED: 503,
  CANCELLED: 503,
  FILLED_ELSEWHERE: 503,
  TOO_MANY_REQUESTS: 429,
  DISK_RESERVE: 503,
  INTERNAL: 500,
};

export class AirlockError extends Error {
  readonly code: AirlockErrorCode;
  readonly status: number;
  /** The policy rule (or other source) behind the error, e.g. "pypi.allow[3]". */
  readonly rule?: string;

  constructor(code: AirlockErrorCode, message: string, opts: { status?: number; rule?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'AirlockError';
    this.code = code;
    this.status = opts.status ?? STATUS[code];
    this.rule = opts.rule;
  }
}

/** The upstream's bytes did not verify: their digest or their size is not the expected one. */
export function isMismatch(e: unknown): boolean {
  return e instanceof AirlockError && (e.code === 'DIGEST_MISMATCH' || e.code === 'SIZE_MISMATCH');
}
