import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import { serveBlob, serveSmall } from '../http/serve-blob.js';
import { Refusal } from '../http/refusal.js';
import { sendBytes, sendStream, type AppEnv } from '../http/send.js';
import { checkDigest, isValidTag } from '../names/oci.js';
import { header, readBoundedBytes } from '../upstream/http.js';
import { approve, baseRecord, deny, failed, notSignatureObject, type Approval, type OciContext, type Target } from './context.js';
import { API_VERSION, OciError } from './errors.js';
import { MT, ManifestError, accepts, isIndexType, parseManifest } from './reference.js';
import type { GateResult } from './gate.js';
import { SIGNATURE_TAG, continuityGate, continuityOfUnrequired, signatureRefusal, signatureTag } from './signature-gate.js';
import type { LoadedManifest } from './upstream.js';
import { manifestHeaders } from './fast.js';

export async function manifest(d: OciContext, c: Context<AppEnv>, t: Target, reference: string): Promise<Response> {
  let digest: string;
  let approval: Approval;
  let aliased = false;
  if (reference.includes(':')) {
    const check = checkDigest(reference);
    if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
    digest = reference;
    approval = await approveLinked(d, t, digest, 'manifest');
  } else {
    // A pull of what cannot be a tag is a manifest that does not exist (the spec and its conformance suite: 404, not 400).
    if (!isValidTag(reference))
      throw new OciError(404, 'MANIFEST_UNKNOWN', `${JSON.stringify(reference.slice(0, 140))} is not a valid tag, so no manifest has it`);
    const r = d.live.policy.oci.resolveTag(t.repo, reference);
    approval = { decision: r.decision };
    digest = r.digest ?? '';
    aliased = r.decision.allow;
    if (!r.decision.allow && r.decision.code === 'tag_not_pinned' && SIGNATURE_TAG.test(reference))
      ({ digest, approval } = await signatureTag(d, t, reference, r.decision));
  }
  if (!approval.decision.allow) deny(t, reference, 'manifest', approval.decision, digest ? digest.slice(7) : undefined);
  const rule = approval.decision.rule;
  // Minimum age (issue 27): the clock starts when Airlock first sees the digest, on any path; a
  // tag's digest younger than oci.min_age is refused (a pull by digest is the reviewed override).
  const now = Date.now();
  const firstSeen = await d.firstSeen.of(digest, now);
  const young = aliased ? d.live.policy.oci.decideTagAge(t.repo, reference, digest, firstSeen, now) : null;
  if (young) deny(t, reference, 'manifest', young, digest.slice(7));
  let m: LoadedManifest;
  try {
    m = await d.upstream.manifest(t, digest, approval.size);
  } catch (e) {
    throw failed(e, t, reference, digest.slice(7), rule);
  }
  // Reached only as a signature object (the upstream's referrers or signature tag): never an image.
  const notSig = approval.referrer ? notSignatureObject(m.bytes) : null;
  if (notSig) {
    const reason = `${t.repo}@${digest} is not pinned: it is reached only as a signature or attestation of an approved manifest, and ${notSig}; images are served only when pinned (or listed by a pinned index)`;
    deny(t, reference, 'manifest', { allow: false, rule, code: 'digest_not_pinned', reason }, digest.slice(7));
  }
  // The signature gate (issue 26): a rule that requires signatures refuses before the manifest is served.
  const requirement = d.live.policy.oci.requirement(rule);
  let signature: string | null = null;
  let warning: string | undefined;
  if (requirement && requirement.require !== 'none') {
    const v = await d.signatures.check(t, digest, requirement);
    if (!v.ok) throw signatureRefusal(t, reference, digest, rule, v, m.cache);
    ({ signature, warning } = await continuityGate(d, t, reference, digest, requirement, v, m.cache));
  } else ({ signature, warning } = await continuityOfUnrequired(d, t, reference, digest, rule, m.cache));
  // The advisory gate: an image is served only once its packages have been judged.
  let gated;
  try {
    gated = await d.gate.check({ repo: t.repo, openBlob: (dg, signal) => d.upstream.openBlob(t, dg, signal) }, digest, m.bytes, isIndexType(m.mediaType));
  } catch (e) {
    throw failed(e, t, reference, digest.slice(7), rule, m.cache, true);
  }
  if (gated && !gated.verdict.decision.allow) deny(t, reference, 'manifest', gated.verdict.decision, digest.slice(7), gated.summary);
  const headers = manifestHeaders(digest, m.mediaType, m.cache);
  if (!accepts(c.req.header('accept'), m.mediaType)) {
    throw new OciError(
      404,
      'MANIFEST_UNKNOWN',
      `${t.repo}@${digest} is a ${m.mediaType}, which this client's Accept header does not include; Airlock serves manifests unconverted`,
    );
  }
  const inm = c.req.header('if-none-match');
  if (inm && inm.split(',').some((v) => v.trim() === `"${digest}"`)) return sendStream(c, 304, headers, null);
  // On record (committed) before the client has the manifest.
  const row = { ...baseRecord(c, t, reference, 'manifest'), sha256: digest.slice(7), size: m.bytes.length, cache: m.cache, decision: 'allow' as const, rule };
  return serveSmall(c, m.bytes, headers, {
    recorder: d.recorder,
    row: { ...row, scan: gated?.summary ?? null, ...(warning ? { reason: warning } : {}) },
    signature,
  });
}

export async function blob(d: OciContext, c: Context<AppEnv>, t: Target, digest: string): Promise<Response> {
  const check = checkDigest(digest);
  if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
  const hex = digest.slice(7);
  const approval = await approveLinked(d, t, digest, 'blob');
  if (!approval.decision.allow) {
    const dec = approval.decision;
    if (dec.code === 'digest_not_pinned') unknownBlob(d, t, digest, dec.rule);
    deny(t, digest, 'blob', dec, hex);
  }
  const rule = approval.decision.rule;
  // The advisory gate: a blob is served only as part of an image the gate lets through.
  await gateBlob(d, t, digest, rule);
  // A blob is served only under a manifest that passed the signature gate (it is linked before the gate judges it).
  const requirement = d.live.policy.oci.requirement(rule);
  let signature: string | null = null;
  let warning: string | undefined;
  if (requirement && requirement.require !== 'none') {
    const v = await d.signatures.check(t, digest, requirement);
    if (!v.ok) throw signatureRefusal(t, digest, digest, rule, v, 'none', 'blob');
    ({ signature, warning } = await continuityGate(d, t, digest, digest, requirement, v, 'none', 'blob'));
  } else ({ signature, warning } = await continuityOfUnrequired(d, t, digest, digest, rule, 'none', 'blob'));
  const headers: Record<string, string> = {
    ...API_VERSION,
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest,
    etag: `"${digest}"`,
    'accept-ranges': 'bytes',
    'cache-control': 'public, max-age=31536000, immutable',
  };
  if (c.req.method === 'HEAD') {
    const size = (await d.cache.cachedSize(hex)) ?? approval.size;
    if (size !== undefined) headers['content-length'] = String(size);
    return sendStream(c, 200, headers, null);
  }
  const base = baseRecord(c, t, digest, 'blob');
  const spec = {
    sha256: hex,
    size: approval.size,
    open: (signal: AbortSignal) => d.upstream.openBlob(t, digest, signal, { size: approval.size, client: base.client }),
    observe: d.inventoryOnFill ? d.inventories.observer(hex) : undefined,
  };
  try {
    return await serveBlob(c, d.cache, spec, headers, {
      recorder: d.recorder,
      base: { ...base, sha256: hex },
      rule,
      label: `${t.repo}@${digest}`,
      signature,
      warning,
    });
  } catch (e) {
    if (e instanceof AirlockError && e.code === 'NOT_FOUND') throw new OciError(404, 'BLOB_UNKNOWN', e.message);
    throw e;
  }
}

/** approve(), after the repository's approved manifests are linked when the digest is not linked yet (issue 30: no client needs to have pulled them first). */
async function approveLinked(d: OciContext, t: Target, digest: string, kind: 'manifest' | 'blob'): Promise<Approval> {
  const first = await approve(d, t.repo, digest);
  // Linked only when the digest itself is merely not pinned (not when denied, or denied through a linked parent: that may be one image of several).
  const direct = d.live.policy.oci.decideDigest(t.repo, digest);
  if (first.decision.allow || direct.allow || direct.code !== 'digest_not_pinned') return first;
  if (!(await d.links.linkWithin(t))) {
    const why = `${t.repo}@${digest} cannot be judged yet: Airlock is still fetching the approved manifests of ${t.repo} from ${t.registry} to find what they reference; retry shortly`;
    const r = failed(new OciError(503, 'UNKNOWN', why, { 'retry-after': '10' }), t, digest, digest.slice(7), first.decision.rule, 'none', true);
    r.row.filename = kind;
    throw r;
  }
  const again = await approve(d, t.repo, digest);
  if (again.decision.allow || again.decision.code !== 'digest_not_pinned') return again;
  // A manifest under the pins could not be fetched: whether the digest is referenced is not known, an error (not unknown: a 404 sends clients elsewhere).
  const f = d.links.failure(t.repo);
  if (f) {
    const why = `${t.repo}@${digest} cannot be judged: the approved manifest ${t.repo}@${f.digest}, which may reference it, could not be fetched (${f.err.message})`;
    const r = failed(new AirlockError('UPSTREAM_BAD_RESPONSE', why), t, digest, digest.slice(7), again.decision.rule, 'none', true);
    r.row.filename = kind;
    throw r;
  }
  return again;
}

/**
 * A blob of an allowed repository that no approved manifest references: refused on record
 * (not_referenced), answered 403 DENIED by default, or 404 BLOB_UNKNOWN, as the spec says, under
 * oci.unknown_blob_status: 404 (containerd tries the next host on a 404: see docs/images.md).
 */
function unknownBlob(d: OciContext, t: Target, digest: string, rule: string): never {
  const reason = `${t.repo}@${digest} is not referenced by any approved manifest of ${t.repo}; blobs are served only as part of an approved image`;
  const status = d.unknownBlobStatus ?? 403;
  throw new Refusal({
    status,
    code: 'not_referenced',
    rule,
    reason,
    row: { name: t.repo, version: digest, filename: 'blob', sha256: digest.slice(7), scan: null },
    answer: new OciError(status, status === 404 ? 'BLOB_UNKNOWN' : 'DENIED', reason),
  });
}

/**
 * The image gate for a blob of a gated repository: served when an approved image manifest
 * referencing it passes the gate (a layer shared with a refused image is served for the other),
 * refused with the gate's decision otherwise. Verdicts are kept by the gate, so this is a lookup
 * once the image has been judged (at its manifest, in the background, or here).
 */
async function gateBlob(d: OciContext, t: Target, digest: string, rule: string): Promise<void> {
  if (!d.live.policy.images.gates(t.repo)) return;
  let refused: GateResult | undefined;
  let unsigned: string | undefined;
  for (const p of await d.meta.getOciParents(t.repo, digest)) {
    const parent = await approve(d, t.repo, p.parent);
    if (!parent.decision.allow) continue;
    let r: GateResult | null;
    try {
      const m = await d.upstream.manifest(t, p.parent, parent.size);
      r = await d.gate.check({ repo: t.repo, openBlob: (dg, signal) => d.upstream.openBlob(t, dg, signal) }, p.parent, m.bytes, isIndexType(m.mediaType));
    } catch (e) {
      // The image's layers could not be read to judge it: an error on record, as at its manifest (the row names the blob).
      const f = failed(e, t, digest, digest.slice(7), rule, 'none', true);
      f.row.filename = 'blob';
      throw f;
    }
    // Served through an image that passes the gate and, under a signature rule, is itself signed (not one image for each).
    if (r?.verdict.decision.allow) {
      const requirement = d.live.policy.oci.requirement(parent.decision.rule);
      if (!requirement || requirement.require === 'none' || (await d.signatures.check(t, p.parent, requirement)).ok) return;
      unsigned ??= p.parent;
      continue;
    }
    // A parent that is not an image (a signature or other artifact, whose tag upstream answers) does not judge the blob: a refused image's layer stays refused.
    if (r) refused ??= r;
  }
  if (refused && !refused.verdict.decision.allow) deny(t, digest, 'blob', refused.verdict.decision, digest.slice(7), refused.summary);
  if (unsigned) {
    const reason = `${t.repo}@${digest} is served only as part of an image that passes the image gate and the signature rule; ${t.repo}@${unsigned}, which passes the gate, is not signed as ${rule} requires`;
    deny(t, digest, 'blob', { allow: false, rule, code: 'unsigned', reason }, digest.slice(7));
  }
}
