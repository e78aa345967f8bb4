import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import { serveBlob, serveSmall } from '../http/serve-blob.js';
import { sendBytes, sendStream, type AppEnv } from '../http/send.js';
import { checkDigest, isValidTag } from '../names/oci.js';
import { header, readBoundedBytes } from '../upstream/http.js';
import { approve, baseRecord, deny, failed, notSignatureObject, type Approval, type OciContext, type Target } from './context.js';
import { API_VERSION, OciError } from './errors.js';
import { MT, ManifestError, accepts, isIndexType, parseManifest } from './reference.js';
import { SIGNATURE_TAG, continuityGate, continuityOfUnrequired, signatureRefusal, signatureTag } from './signature-gate.js';
import type { LoadedManifest } from './upstream.js';

export async function manifest(d: OciContext, c: Context<AppEnv>, t: Target, reference: string): Promise<Response> {
  let digest: string;
  let approval: Approval;
  if (reference.includes(':')) {
    const check = checkDigest(reference);
    if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
    digest = reference;
    approval = await approve(d, t.repo, digest);
  } else {
    if (!isValidTag(reference)) throw new OciError(400, 'TAG_INVALID', `${JSON.stringify(reference.slice(0, 140))} is not a valid tag`);
    const r = d.live.policy.oci.resolveTag(t.repo, reference);
    approval = { decision: r.decision };
    digest = r.digest ?? '';
    if (!r.decision.allow && r.decision.code === 'tag_not_pinned' && SIGNATURE_TAG.test(reference))
      ({ digest, approval } = await signatureTag(d, t, reference, r.decision));
  }
  if (!approval.decision.allow) deny(t, reference, 'manifest', approval.decision, digest ? digest.slice(7) : undefined);
  const rule = approval.decision.rule;
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
  const headers: Record<string, string> = {
    ...API_VERSION,
    'content-type': m.mediaType,
    'docker-content-digest': digest,
    etag: `"${digest}"`,
    'x-airlock-cache': m.cache,
  };
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
  const approval = await approve(d, t.repo, digest);
  if (!approval.decision.allow) {
    const dec = approval.decision;
    const reason =
      dec.code === 'digest_not_pinned'
        ? `${t.repo}@${digest} is not referenced by any approved manifest of ${t.repo} pulled through Airlock; blobs are served only as part of an approved image`
        : dec.reason;
    deny(t, digest, 'blob', { ...dec, code: dec.code === 'digest_not_pinned' ? 'not_referenced' : dec.code, reason }, hex);
  }
  const rule = approval.decision.rule;
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
