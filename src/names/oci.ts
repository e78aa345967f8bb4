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

const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** The registry key a host is known by: Docker Hub's aliases are all docker.io. */
export function registryKey(host: string): string {
  return DOCKER_HUB_ALIASES.has(host) ? 'docker.io' : host;
}

const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d{1,5})?$/;

/** A registry host as references spell it: DNS labels, an optional port. */
export function isValidHost(host: string): boolean {
  return HOST.test(host);
}

/** An image reference, normalised: which registry, which repository there, and the tag and/or digest asked for. */
export interface ImageRef {
  /** The registry key: docker.io for Docker Hub and its aliases, else the host[:port] in lowercase. */
  registry: string;
  /** The repository as that registry names it (library/python for Docker Hub's official images). */
  name: string;
  /** Canonical "registry/name": what policy rules and records use. */
  repository: string;
  tag?: string;
  /** A sha256 digest (the only kind Airlock verifies); when both are given, the digest is what is fetched. */
  digest?: string;
}

export type ImageRefParse = { ok: true; ref: ImageRef } | { ok: false; reason: string };

/**
 * Parse an image reference as Docker normalises one: [HOST[:PORT]/]NAME[:TAG][@DIGEST]. The first
 * component is a registry when it looks like a host (a dot, a port, or localhost), else the
 * reference is on `defaultRegistry`; Docker Hub's one-part names are under library/. Neither a tag
 * nor a digest is fine here ("latest" is not assumed: callers that need one say so).
 */
export function parseImageRef(input: string, defaultRegistry = 'docker.io'): ImageRefParse {
  const bad = (why: string): ImageRefParse => ({ ok: false, reason: `${JSON.stringify(input.slice(0, 200))} is not an image reference: ${why}` });
  let rest = input.trim();
  if (rest === '') return bad('it is empty');
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const c = checkDigest(digest);
    if (!c.ok) return { ok: false, reason: c.reason };
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) return bad(`${JSON.stringify(tag.slice(0, 140))} is not a valid tag`);
  }
  const slash = rest.indexOf('/');
  const first = slash > 0 ? rest.slice(0, slash) : '';
  let registry = registryKey(defaultRegistry);
  let name = rest;
  if (first && looksLikeHost(first)) {
    registry = registryKey(first.toLowerCase());
    name = rest.slice(slash + 1);
    if (!isValidHost(registry)) return bad(`${JSON.stringify(first.slice(0, 100))} is not a registry host`);
  }
  if (registry === 'docker.io' && !name.includes('/')) name = `library/${name}`;
  if (!isValidName(name)) return bad(`${JSON.stringify(name.slice(0, 100))} is not a repository name (lowercase components separated by /)`);
  if (registry.length + 1 + name.length > MAX_NAME) return bad(`a repository name is at most ${MAX_NAME} characters with its registry`);
  return { ok: true, ref: { registry, name, repository: `${registry}/${name}`, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) } };
}
