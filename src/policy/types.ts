/** Stable refusal codes: bounded label values for metrics, and what a log search keys on. */
export type RefusalCode =
  | 'not_allowlisted'
  | 'denied'
  | 'version_not_allowed'
  | 'hash_not_pinned'
  | 'internal_missing'
  | 'no_sha256'
  | 'digest_not_pinned'
  | 'tag_not_pinned'
  | 'not_referenced'
  | 'content_refused'
  /** An image carries a package with a refusing advisory. */
  | 'advisory'
  /** An image whose packages cannot all be judged (policy advisories.images.unjudged: refuse). */
  | 'unjudged'
  /** No signature or provenance where a rule requires one (issue 26). */
  | 'unsigned'
  /** A signature or provenance that fails its rule: identity, issuer, publisher, subject, log entry, expiry (issue 26). */
  | 'bad_signature'
  /** Younger than its minimum age, published after exclude_newer, or without an upload time to tell (issue 27). */
  | 'too_new';

export type Decision = { allow: true; rule: string } | { allow: false; rule: string; code: RefusalCode; reason: string };

export class PolicyError extends Error {
  /** Dotted path inside the policy, e.g. "pypi.allow[3].versions". */
  constructor(
    readonly path: (string | number)[],
    message: string,
  ) {
    super(message);
    this.name = 'PolicyError';
  }
}

export function pathString(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}
