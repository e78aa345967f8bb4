/**
 * OCI distribution name grammar (distribution-spec "Pulling", image-spec descriptor.md):
 * repository names, tags, digests. Dependency-free: the policy and the OCI front-end both import it.
 */

/** One path component of a repository name. */
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** Digest grammar from image-spec; only sha256 is verified (and so accepted) by Airlock. */
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** Clients limit "host/name" to 255 characters; a name alone cannot be longer. */
export const MAX_NAME = 255;

export function isValidName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME) return false;
  return name.split('/').every((c) => COMPONENT.test(c));
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export type DigestCheck = { ok: true } | { ok: false; reason: string };

/** Only sha256 digests pass: a grammar-valid digest Airlock cannot verify is refused, not trusted. */
export function checkDigest(d: string): DigestCheck {
  if (SHA256_DIGEST.test(d)) return { ok: true };
  if (!DIGEST_GRAMMAR.test(d)) return { ok: false, reason: `${JSON.stringify(d.slice(0, 80))} is not a digest (expected sha256:<64 lowercase hex>)` };
  const alg = d.slice(0, d.indexOf(':'));
  if (alg === 'sha256') return { ok: false, reason: `${d.slice(0, 80)}: a sha256 digest is 64 lowercase hex characters` };
  return { ok: false, reason: `digest algorithm ${JSON.stringify(alg.slice(0, 20))} is not verified by Airlock (only sha256 is)` };
}

/** Host-like first component, as in Docker's reference normalisation: has a dot or a port, or is localhost. */
export function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}
