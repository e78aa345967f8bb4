import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastAnswer, FastClient } from '../http/fast.js';
import { checkDigest, isValidTag } from '../names/oci.js';
import type { OciContext } from './context.js';
import { API_VERSION } from './errors.js';
import { accepts, isIndexType, parseV2Path } from './reference.js';

/**
 * The manifest GETs the fast path may try: a repository name and a tag or sha256 digest of the
 * characters those allow, no query (?ns= takes the route), no percent-encoding, nothing longer
 * than the route takes. Empty, "." and ".." segments cannot match (every segment starts with a
 * letter, a digit or `_`), so the route's raw-path refusals are never the fast path's to make.
 */
const MANIFEST_PATH = /^\/v2\/(?:[a-z0-9][a-z0-9._-]*\/)*[a-z0-9][a-z0-9._-]*\/manifests\/(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[a-f0-9]{64})$/;

/** A manifest's answer headers (pull.ts and the fast path send the same). */
export function manifestHeaders(digest: string, mediaType: string, cache: string): Record<string, string> {
  return { ...API_VERSION, 'content-type': mediaType, 'docker-content-digest': digest, etag: `"${digest}"`, 'x-airlock-cache': cache };
}

/** What a warm manifest GET serves, decided from memory alone. */
interface WarmManifest {
  repo: string;
  digest: string;
  rule: string;
  bytes: Buffer;
  mediaType: string;
  scan: string | null;
}

/**
 * A warm manifest GET answered outside the router (issue 29: the Hono dispatch, its context and
 * the route's chain of awaits cost more than the pull record itself). It serves only what
 * pull.ts `manifest` would serve with nothing to ask a store or upstream: the tag or digest
 * pinned and allowed by the policy in force, its first sight known and old enough, the manifest
 * held in memory and linked to the repository, no signature rule and no signer on record for the
 * repository, the image gate's verdict kept and allowing, the client's Accept including the
 * media type, no If-None-Match. Anything else, refusals included, takes the route. The row is
 * the route's, committed before the first byte is written (a failed commit also takes the route,
 * which answers the error).
 */
export function fastManifests(o: OciContext): FastAnswer {
  // The answer's headers per digest, built once (Node reads, never changes, what writeHead is given).
  const heads = new Map<string, Record<string, string>>();
  const headersOf = (w: WarmManifest): Record<string, string> => {
    let h = heads.get(w.digest);
    if (!h) {
      h = manifestHeaders(w.digest, w.mediaType, 'hit');
      h['content-length'] = String(w.bytes.length);
      if (heads.size >= 1024) heads.clear();
      heads.set(w.digest, h);
    }
    return h;
  };
  const answer = (req: IncomingMessage, res: ServerResponse, who: FastClient): boolean | Promise<boolean> => {
    const url = req.url ?? '';
    if (url.length > 1028) return false;
    const route = parseV2Path(url.slice('/v2/'.length));
    if (route.kind !== 'manifest' || req.headers['if-none-match'] !== undefined) return false;
    const w = warm(o, route.name, route.reference);
    if (!w || !accepts(req.headers.accept, w.mediaType)) return false;
    const row = {
      ts: Date.now(),
      client: who.client(),
      ecosystem: 'oci' as const,
      name: w.repo,
      version: route.reference,
      filename: 'manifest',
      requestId: who.requestId(),
      sha256: w.digest.slice(7),
      size: w.bytes.length,
      cache: 'hit' as const,
      decision: 'allow' as const,
      rule: w.rule,
      scan: w.scan,
    };
    return o.recorder.recordServed(row).then(
      () => {
        res.writeHead(200, headersOf(w));
        res.end(w.bytes);
        return true;
      },
      () => false,
    );
  };
  return Object.assign(answer, { path: MANIFEST_PATH });
}

/** pull.ts `manifest`'s decisions for a request it would serve from memory, in its order; null for anything else. */
function warm(o: OciContext, name: string, reference: string): WarmManifest | null {
  let repo: string;
  try {
    repo = o.upstream.target(name, undefined).repo;
  } catch {
    return null;
  }
  const policy = o.live.policy;
  let digest: string;
  let rule: string;
  const aliased = !reference.includes(':');
  if (aliased) {
    if (!isValidTag(reference)) return null;
    const r = policy.oci.resolveTag(repo, reference);
    if (!r.decision.allow || !r.digest) return null;
    ({ digest } = r);
    rule = r.decision.rule;
  } else {
    // Pinned itself (content reached through a parent manifest takes the route, which looks the parents up).
    if (!checkDigest(reference).ok) return null;
    const d = policy.oci.decideDigest(repo, reference);
    if (!d.allow) return null;
    digest = reference;
    rule = d.rule;
  }
  const firstSeen = o.firstSeen.known(digest);
  if (firstSeen === undefined) return null;
  if (aliased && policy.oci.decideTagAge(repo, reference, digest, firstSeen, Date.now())) return null;
  const m = o.upstream.warm(repo, digest);
  if (!m) return null;
  const requirement = policy.oci.requirement(rule);
  if (requirement && requirement.require !== 'none') return null;
  // A signer on record (continuity to check) or not known from memory: the route.
  if (o.continuity.cached('oci', repo) !== null) return null;
  const gated = o.gate.known(repo, digest, isIndexType(m.mediaType));
  if (gated === undefined || (gated && !gated.verdict.decision.allow)) return null;
  return { repo, digest, rule, bytes: m.bytes, mediaType: m.mediaType, scan: gated?.summary ?? null };
}
