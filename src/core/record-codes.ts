import type { RefusalCode } from '../policy/types.js';

/**
 * Every code a pull row can carry: why a row is not a plain allow. The policy's own decisions
 * (policy/types.ts RefusalCode) and what the routes and the verified fill add. Rows store it as
 * text; this is the one vocabulary the recorder takes, the console filters by and approval.ts
 * answers for (each keyed by a Record<RecordCode, ...>, so a new code without an entry does not
 * compile).
 */
export type RecordCode =
  | RefusalCode
  /** The upstream's bytes did not hash (or measure) to what the index or manifest names. */
  | 'digest_mismatch'
  /** The index pointed a file at a host outside pypi.file_hosts (or redirected there). */
  | 'file_host'
  /** A file over the mirror's own size limit (hf.max_file_bytes): configuration, not the policy, refuses it. */
  | 'too_large'
  /** A wrong or revoked client token. */
  | 'bad_token'
  /** A malformed request (a name or path no client of the protocol would send): 400 or 414. */
  | 'bad_request'
  /** The upstream failed (down, an unexpected answer): an error, not a refusal. */
  | 'upstream_failed'
  /** The client has too many cold downloads under way (transfers.per_client). */
  | 'too_many_downloads'
  /** The client left before the download it waited for began. */
  | 'client_gone'
  /** Refusals past the client's refusal rate limit (records.refusal_limit): answered 429, counted in one folded row. */
  | 'rate_limited'
  /** A new fill refused: the disk is at its free-space reserve (cache.min_free_bytes) and nothing more can be evicted. */
  | 'disk_reserve';

export type RecordKind = 'policy' | 'integrity' | 'request' | 'error';

/** What each code is: the console's filter list (in this order) and its one-line meaning. */
export const RECORD_CODES: Record<RecordCode, { kind: RecordKind; meaning: string }> = {
  not_allowlisted: { kind: 'policy', meaning: 'not on the allowlist' },
  version_not_allowed: { kind: 'policy', meaning: 'a version outside the allowed range' },
  hash_not_pinned: { kind: 'policy', meaning: 'a file whose sha256 is not pinned' },
  tag_not_pinned: { kind: 'policy', meaning: 'a tag or revision that is not pinned' },
  digest_not_pinned: { kind: 'policy', meaning: 'a digest that is not pinned' },
  not_referenced: { kind: 'policy', meaning: 'a blob no approved manifest references' },
  denied: { kind: 'policy', meaning: 'denied by a policy rule' },
  advisory: { kind: 'policy', meaning: 'affected by a refusing advisory' },
  unjudged: { kind: 'policy', meaning: 'an image whose packages cannot all be judged' },
  content_refused: { kind: 'policy', meaning: 'refused by model-file inspection' },
  unsigned: { kind: 'policy', meaning: 'no signature where a signing rule requires one' },
  bad_signature: { kind: 'policy', meaning: 'a signature that fails its signing rule' },
  too_new: { kind: 'policy', meaning: 'younger than its minimum age (policy min_age, exclude_newer)' },
  internal_missing: { kind: 'policy', meaning: 'an internal name the internal index lacks (dependency confusion)' },
  no_sha256: { kind: 'integrity', meaning: 'the index gives no sha256 to verify against' },
  digest_mismatch: { kind: 'integrity', meaning: 'the upstream sent other bytes than it named' },
  file_host: { kind: 'integrity', meaning: 'a file host outside pypi.file_hosts' },
  too_large: { kind: 'policy', meaning: "a file over the mirror's size limit (hf.max_file_bytes)" },
  bad_token: { kind: 'request', meaning: 'a wrong or revoked client token' },
  bad_request: { kind: 'request', meaning: 'a malformed request' },
  upstream_failed: { kind: 'error', meaning: 'the upstream failed' },
  too_many_downloads: { kind: 'error', meaning: 'too many downloads under way for this client' },
  client_gone: { kind: 'error', meaning: 'the client left before the download began' },
  rate_limited: { kind: 'request', meaning: "refusals past the client's refusal rate limit" },
  disk_reserve: { kind: 'error', meaning: 'no disk space for a new download (cache.min_free_bytes)' },
};

export const RECORD_CODE_LIST = Object.keys(RECORD_CODES) as RecordCode[];

export function isRecordCode(s: unknown): s is RecordCode {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(RECORD_CODES, s);
}
