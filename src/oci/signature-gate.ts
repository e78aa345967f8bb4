import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import { Refusal, type RefusalRow } from '../http/refusal.js';
import { sendBytes, type AppEnv } from '../http/send.js';
import { checkDigest } from '../names/oci.js';
import type { Decision } from '../policy/types.js';
import { header, readBoundedBytes } from '../upstream/http.js';
import { approve, deny, failed, type Approval, type OciContext, type Target } from './context.js';
import { API_VERSION, OciError } from './errors.js';
import { MT } from './reference.js';
import { signatureField } from '../signing/record.js';
import type { SignatureVerdict } from './signatures.js';
import { checkContinuity, unusableRoot } from '../signing/continuity.js';
import type { SignatureRequirement } from '../policy/signing.js';

/**
 * Signature objects served to clients (issue 26), so that cosign and notation can verify again
 * downstream: the referrers API answered for real (the upstream's list, else the referrers tag
 * schema's index) or 404, never an empty 200; the tags `sha256-<hex>` and `sha256-<hex>.sig`
 * resolved upstream only for an approved subject, and what they name linked to it (approved
 * through it, as its blobs are through them). And the refusal of the signature gate.
 */

/** The referrers tag schema's tag, and cosign's legacy signature tag. */
export const SIGNATURE_TAG = /^sha256-([0-9a-f]{64})(\.sig)?$/;
/** Entries of a referrers page served: a longer list (the upstream's page, or the tag index) is served in pages of this many, linked at Airlock. */
export const MAX_SERVED_REFERRERS = 256;
/** The query parameter of Airlock's own pages of one upstream list: where the page starts (never passed upstream). */
export const REFERRERS_FROM = 'airlock.from';

/** A signature tag of an approved subject: what it names upstream now, linked to the subject. */
export async function signatureTag(d: OciContext, t: Target, tag: string, notPinned: Decision): Promise<{ digest: string; approval: Approval }> {
  const subject = `sha256:${SIGNATURE_TAG.exec(tag)![1]}`;
  const sub = await approve(d, t.repo, subject);
  if (!sub.decision.allow) {
    const reason = `${tag} is a signature tag of ${t.repo}@${subject}, which is not approved: signature tags are served only for approved images`;
    return { digest: '', approval: { decision: { ...notPinned, allow: false, code: 'tag_not_pinned', reason } as Decision } };
  }
  let m;
  try {
    m = await d.upstream.resolveTag(t, tag);
  } catch (e) {
    throw failed(e, t, tag, subject.slice(7), sub.decision.rule);
  }
  await d.meta.addOciLinks(t.repo, subject, [{ digest: m.digest, size: m.bytes.length, kind: 'referrer' }]);
  return { digest: m.digest, approval: { decision: d.live.policy.oci.decideReferenced(t.repo, m.digest, sub.decision), referrer: true } };
}

/** The signature gate's refusal: unsigned or bad_signature (DENIED), or the upstream's failure. */
export function signatureRefusal(
  t: Target,
  reference: string,
  digest: string,
  rule: string,
  v: SignatureVerdict,
  cache: RefusalRow['cache'],
  kind: 'manifest' | 'blob' = 'manifest',
): Refusal {
  const reason = v.reason ?? `${rule}: no acceptable signature`;
  if (v.code === 'upstream_failed') return failed(new AirlockError('UPSTREAM_BAD_RESPONSE', reason), t, reference, digest.slice(7), rule, cache, true);
  return new Refusal({
    status: 403,
    code: v.code ?? 'bad_signature',
    rule,
    reason,
    row: { name: t.repo, version: reference, filename: kind, sha256: digest.slice(7), cache, signature: signatureField(v) },
    answer: new OciError(403, 'DENIED', reason),
  });
}

/**
 * Continuity (issue 26, item 6) after the signature gate passed: the repository's recorded signer
 * against this digest's. Refused (bad_signature, naming `airlock trust accept`) under on_change:
 * refuse; under warn, what to serve: the row's signature (with the earlier signer) and its warning.
 */
export async function continuityGate(
  d: OciContext,
  t: Target,
  reference: string,
  digest: string,
  req: SignatureRequirement,
  v: SignatureVerdict,
  cache: RefusalRow['cache'],
  kind: 'manifest' | 'blob' = 'manifest',
): Promise<{ signature: string | null; warning?: string }> {
  const c = await checkContinuity(d.continuity, {
    ecosystem: 'oci',
    project: t.repo,
    version: v.subject ?? digest,
    rule: req.rule,
    onChange: req.onChange,
    result: v,
  });
  if (c.action === 'refuse') {
    throw new Refusal({
      status: 403,
      code: c.code,
      rule: req.rule,
      reason: c.reason,
      row: { name: t.repo, version: reference, filename: kind, sha256: digest.slice(7), cache, signature: signatureField(v) },
      answer: new OciError(403, 'DENIED', c.reason),
    });
  }
  if (c.action === 'warn') return { signature: signatureField(v, { changedFrom: c.earlier }), warning: c.reason };
  return { signature: signatureField(v) };
}

/**
 * Continuity (issue 26, item 6) under a rule that requires no signature: when the repository has a
 * signer on record, the signatures of the pinned digest (or the one a platform manifest or blob is
 * reached under) are found and verified as under `require: signed` (the same lookup, verdict cache and
 * trusted root), by any keyless signer or any key or CA the policy names, and compared with the
 * recorded signer. Unsigned, signed by another identity, or signed by none that verifies: refused
 * (DENIED, naming `airlock trust accept`), or served with the reason on its row under on_change: warn.
 * No usable trusted root refuses (fail closed). A repository with no signer on record pays a cached lookup.
 */
export async function continuityOfUnrequired(
  d: OciContext,
  t: Target,
  reference: string,
  digest: string,
  rule: string,
  cache: RefusalRow['cache'],
  kind: 'manifest' | 'blob' = 'manifest',
): Promise<{ signature: string | null; warning?: string }> {
  const earlier = await d.continuity.recorded('oci', t.repo);
  if (!earlier) return { signature: null };
  const policy = d.live.policy;
  const req = policy.signing.continuityRequirement(rule, policy.oci.requirement(rule), 'signed');
  const row = { name: t.repo, version: reference, filename: kind, sha256: digest.slice(7), cache };
  const broken = unusableRoot(d.trust?.current() ?? null, t.repo, earlier.identity);
  if (broken) throw new Refusal({ status: 403, code: 'bad_signature', rule, reason: broken, row, answer: new OciError(403, 'DENIED', broken) });
  const v = await d.signatures.check(t, digest, req);
  if (v.code === 'upstream_failed') throw signatureRefusal(t, reference, digest, rule, v, cache, kind);
  const c = await checkContinuity(d.continuity, {
    ecosystem: 'oci',
    project: t.repo,
    version: v.subject ?? digest,
    rule,
    onChange: req.onChange,
    result: v.ok ? v : null,
    failure: !v.ok && v.code === 'bad_signature' ? (v.reason ?? 'it does not verify') : undefined,
  });
  if (c.action === 'refuse') {
    const signature = signatureField(v.ok || v.identity ? v : null);
    throw new Refusal({ status: 403, code: c.code, rule, reason: c.reason, row: { ...row, signature }, answer: new OciError(403, 'DENIED', c.reason) });
  }
  if (c.action === 'warn') return { signature: signatureField(v.ok ? v : { ok: false }, { changedFrom: c.earlier }), warning: c.reason };
  return { signature: signatureField(v) };
}

/** Well-formed entries of an index (raw objects, kept as the upstream wrote them), the first `limit`; and how many it listed. */
function entriesOf(bytes: Buffer, limit = Infinity): { list: Record<string, unknown>[]; total: number } | null {
  let doc: { manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
  if (!doc || typeof doc !== 'object' || !Array.isArray(doc.manifests)) return null;
  const list: Record<string, unknown>[] = [];
  for (const m of doc.manifests as Record<string, unknown>[]) {
    if (list.length >= limit) break;
    if (!m || typeof m !== 'object' || typeof m.digest !== 'string' || !checkDigest(m.digest).ok) continue;
    if (typeof m.size !== 'number' || !Number.isSafeInteger(m.size) || m.size < 0) continue;
    list.push(m);
  }
  return { list, total: doc.manifests.length };
}

/** Query parameters passed on (a page's `last`/`n`, or a registry's own page token): plain names, bounded values, at most 8. */
function pageQuery(params: URLSearchParams): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of params) {
    if (k === 'artifactType' || k === REFERRERS_FROM || !/^[A-Za-z0-9_.-]{1,64}$/.test(k) || v.length > 512 || [...out.keys()].length >= 8) continue;
    out.append(k, v);
  }
  return out;
}

/** The upstream's next page, as a Link to Airlock's own referrers path (the same query, passed on again). */
function nextLink(c: Context<AppEnv>, upstreamLink: string | undefined, digest: string, q: string | undefined): string | undefined {
  const m = upstreamLink && /<([^>]{1,2048})>\s*;\s*rel="?next"?/i.exec(upstreamLink);
  if (!m) return undefined;
  let u: URL;
  try {
    // Only its path and query are read: relative or absolute, the page is asked of the same upstream.
    u = new URL(m[1], 'http://upstream.invalid/');
  } catch {
    return undefined;
  }
  if (!u.pathname.endsWith(`/referrers/${digest}`)) return undefined;
  const qs = pageQuery(u.searchParams);
  if (q) qs.set('artifactType', q);
  return `<${c.req.path}?${qs.toString()}>; rel="next"`;
}

/**
 * The referrers of an approved manifest: the upstream's list (well-formed entries), else the index
 * at its `sha256-<hex>` tag, each entry linked to the subject so it is approved through it. A list
 * longer than MAX_SERVED_REFERRERS is served in pages, each with a `Link: <...>; rel="next"` to
 * Airlock's own path (the same query, `airlock.from` where the next page starts), as the
 * distribution spec requires when the list does not fit one response; the last of them links the
 * upstream's own next page, if it has one. Nothing found: 404, so clients fall back to the tag schema.
 */
export async function referrers(d: OciContext, c: Context<AppEnv>, t: Target, digest: string): Promise<Response> {
  const check = checkDigest(digest);
  if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
  const approval = await approve(d, t.repo, digest);
  if (!approval.decision.allow) deny(t, digest, 'referrers', approval.decision, digest.slice(7));
  const q = c.req.query('artifactType');
  const fromText = c.req.query(REFERRERS_FROM);
  if (fromText !== undefined && !/^\d{1,7}$/.test(fromText))
    throw new OciError(400, 'PAGINATION_NUMBER_INVALID', `${REFERRERS_FROM}: expected a whole number, got ${JSON.stringify(fromText.slice(0, 20))}`);
  const from = Number(fromText ?? 0);
  const page = pageQuery(new URL(c.req.url).searchParams);
  if (q) page.set('artifactType', q);
  const notes: string[] = [];
  let entries: Record<string, unknown>[] = [];
  let link: string | undefined;
  const path = `referrers/${digest}${page.size ? `?${page.toString()}` : ''}`;
  const res = await t.client.request(t.upstreamName, path, { accept: MT.ociIndex });
  if (res.status === 200) {
    const bytes = await readBoundedBytes(res.body, d.maxManifestBytes).catch((e: Error) => {
      throw new OciError(502, 'MANIFEST_INVALID', `${t.registry}'s referrers list for ${digest}: ${e.message}`);
    });
    const got = entriesOf(bytes);
    if (!got) throw new OciError(502, 'MANIFEST_INVALID', `${t.registry}'s referrers list for ${digest} is not an index`);
    entries = got.list;
    notes.push(`its referrers API lists ${got.total === 0 ? 'none' : got.total}`);
    link = nextLink(c, header(res.headers, 'link'), digest, q);
  } else {
    res.body.resume();
    if (res.status !== 404 && res.status !== 400 && res.status !== 405)
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${t.registry} answered ${res.status} for the referrers of ${t.upstreamName}@${digest}`);
    notes.push(`it has no referrers API (${res.status})`);
  }
  const tag = `sha256-${digest.slice(7)}`;
  if (entries.length === 0 && page.size === (q ? 1 : 0)) {
    try {
      const m = await d.upstream.resolveTag(t, tag);
      entries = entriesOf(m.bytes)?.list ?? [];
      notes.push(`tag ${tag} lists ${entries.length}`);
    } catch (e) {
      if (!(e instanceof OciError && e.status === 404)) throw e;
      notes.push(`no tag ${tag}`);
    }
  }
  if (q) entries = entries.filter((e) => e.artifactType === q);
  // Airlock's own pages of the list: the next one linked here, the upstream's next page after the last of them.
  if (entries.length > from + MAX_SERVED_REFERRERS) {
    const next = new URLSearchParams(page);
    next.set(REFERRERS_FROM, String(from + MAX_SERVED_REFERRERS));
    link = `<${c.req.path}?${next.toString()}>; rel="next"`;
  }
  entries = entries.slice(from, from + MAX_SERVED_REFERRERS);
  if (entries.length === 0) throw new OciError(404, 'MANIFEST_UNKNOWN', `no referrers of ${t.repo}@${digest} at ${t.registry} (${notes.join('; ')})`);
  await d.meta.addOciLinks(
    t.repo,
    digest,
    entries.map((e) => ({ digest: e.digest as string, size: e.size as number, kind: 'referrer' as const })),
  );
  const headers: Record<string, string> = { ...API_VERSION, 'content-type': MT.ociIndex };
  if (q) headers['oci-filters-applied'] = 'artifactType';
  if (link) headers.link = link;
  return sendBytes(c, 200, headers, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: entries })));
}
