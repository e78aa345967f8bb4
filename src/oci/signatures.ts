import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BlobCache } from '../core/cache.js';
import type { LivePolicy } from '../core/live-policy.js';
import { checkDigest } from '../names/oci.js';
import type { SignatureRequirement } from '../policy/signing.js';
import { SignatureCache } from '../signing/cache.js';
import { LEGACY_SIGNATURE_ANNOTATION, SIMPLESIGNING_MT, verifyLegacySignature } from '../signing/cosign-legacy.js';
import { verifyCosignBundle, type CosignResult } from '../signing/cosign.js';
import type { TrustRoots } from '../signing/trust.js';
import type { OciStore } from '../storage/meta-store.js';
import { readBoundedBytes } from '../upstream/http.js';
import { OciError } from './errors.js';
import { MT } from './reference.js';
import type { OciUpstream, UpstreamTarget } from './upstream.js';

/**
 * The signature gate at the manifest (issue 26): for a repository whose allow rule requires
 * `signed` or `attested`, the cosign signatures and attestations of the pinned digest are found
 * (the referrers API, else the referrers tag schema `sha256-<hex>`, else cosign's legacy
 * `sha256-<hex>.sig`), fetched through the verified upstream path within bounds, and verified in
 * src/signing. Content reached under a pinned digest (a platform manifest of a signed index, the
 * signature manifests themselves) is covered by that digest's verdict. Verdicts are kept (warm
 * manifest requests pay a lookup); a refusal is kept a minute, so a signature pushed later counts.
 */
export const BUNDLE_MT = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** Signature objects (bundles, legacy payloads) larger than this are ignored: a cosign bundle is a few KB. */
export const MAX_SIGNATURE_BYTES = 1 << 20;
/** Entries of a referrers list (or tag index) looked at; the rest are ignored. */
export const MAX_REFERRERS = 32;
/** Signature objects fetched and verified per subject, at most. */
const MAX_OBJECTS = 16;
const REFUSAL_TTL_MS = 60_000;
/** The whole lookup (every request upstream, every verification) of one subject, at most: then a 502, not kept. */
const LOOKUP_DEADLINE_MS = 60_000;

export interface SignatureVerdict extends CosignResult {
  /** unsigned (nothing acceptable found), bad_signature (found, fails), upstream_failed (could not look). */
  code?: 'unsigned' | 'bad_signature' | 'upstream_failed';
  /** The pinned digest whose signature covers the manifest asked for. */
  subject?: string;
  /** Where the verified signature was found. */
  source?: 'referrers' | 'tag' | 'sig-tag';
  at?: number;
  /** A lookup failed on the way (a refusal not kept: the next request looks again). */
  transient?: boolean;
}

/** One entry of a referrers list or tag index, as Airlock reads it (the bytes served are the upstream's). */
export interface ReferrerEntry {
  mediaType?: string;
  digest: string;
  size: number;
  artifactType?: string;
}

/** The entries of a referrers list or index: well-formed descriptors only, the first `limit`. */
export function referrerEntries(bytes: Buffer, limit = MAX_REFERRERS): { entries: ReferrerEntry[]; total: number } {
  let doc: { manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Error('not JSON');
  }
  if (!doc || typeof doc !== 'object' || !Array.isArray(doc.manifests)) throw new Error('not an index (no manifests list)');
  const entries: ReferrerEntry[] = [];
  for (const m of doc.manifests as Record<string, unknown>[]) {
    if (entries.length >= limit) break;
    if (!m || typeof m !== 'object' || typeof m.digest !== 'string' || !checkDigest(m.digest).ok) continue;
    if (typeof m.size !== 'number' || !Number.isSafeInteger(m.size) || m.size < 0) continue;
    entries.push({
      digest: m.digest,
      size: m.size,
      ...(typeof m.mediaType === 'string' ? { mediaType: m.mediaType } : {}),
      ...(typeof m.artifactType === 'string' ? { artifactType: m.artifactType } : {}),
    });
  }
  return { entries, total: doc.manifests.length };
}

export interface ImageSignaturesDeps {
  upstream: OciUpstream;
  cache: BlobCache;
  meta: OciStore;
  live: LivePolicy;
  log: Logger;
  maxManifestBytes: number;
  trust?: TrustRoots;
  /** How long a verdict is kept (signing/cache.ts; an hour by default), and the clock it is aged by (tests). */
  verdictMaxAgeMs?: number;
  clock?: () => number;
}

interface Found {
  notes: string[];
  failures: string[];
  /** A lookup failed for a reason other than "not there". */
  errored: boolean;
  examined: number;
  /** The first signature that failed: what the refusal's row records of it (identity, bundle digest). */
  firstFailed?: CosignResult;
}

export class ImageSignatures {
  private readonly bundles = new SignatureCache<CosignResult>();
  private readonly verdicts: SignatureCache<SignatureVerdict>;
  private readonly flights = new Map<string, Promise<SignatureVerdict>>();

  constructor(private readonly d: ImageSignaturesDeps) {
    this.verdicts = new SignatureCache<SignatureVerdict>(10_000, d.verdictMaxAgeMs, d.clock);
  }

  /** The verdict for a manifest of `t.repo` approved by the rule `req`: from the cache, else found and verified. */
  async check(t: UpstreamTarget, digest: string, req: SignatureRequirement): Promise<SignatureVerdict> {
    const trust = this.d.trust?.current() ?? null;
    const tv = trust?.version ?? 'none';
    const key = `${t.repo} ${req.cacheKey}`;
    const hit = this.verdicts.get(digest, '', tv, key);
    if (hit && (hit.ok || Date.now() - (hit.at ?? 0) < REFUSAL_TTL_MS)) return hit;
    const fk = SignatureCache.key(digest, '', tv, key);
    let p = this.flights.get(fk);
    if (!p) {
      p = this.decide(t, digest, req).finally(() => this.flights.delete(fk));
      this.flights.set(fk, p);
    }
    const v = await p;
    if (v.code !== 'upstream_failed' && !v.transient) this.verdicts.set(digest, '', tv, key, v);
    // A verified verdict past its age (signing/cache.ts) is kept while the upstream cannot be asked again: same rule, same root.
    const stale = v.code === 'upstream_failed' || v.transient ? this.verdicts.stale(digest, '', tv, key) : undefined;
    if (stale?.ok) {
      this.d.log.warn(
        { ecosystem: 'oci', repo: t.repo, digest, rule: req.rule, err: v.reason },
        'signatures could not be looked up again; keeping the verified verdict',
      );
      return stale;
    }
    return v;
  }

  private async decide(t: UpstreamTarget, digest: string, req: SignatureRequirement): Promise<SignatureVerdict> {
    const subject = await this.pinnedAncestor(t.repo, digest);
    const at = Date.now();
    if (!subject) {
      return { ok: false, code: 'unsigned', at, reason: `${req.rule}: ${t.repo}@${digest} is not under a pinned digest whose signature could cover it` };
    }
    // Content under the pinned digest shares its verdict (kept under the subject too: one lookup upstream for all of it).
    if (subject !== digest) return { ...(await this.check(t, subject, req)), subject, at };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<SignatureVerdict>((resolve) => {
      timer = setTimeout(
        () =>
          resolve({
            ok: false,
            code: 'upstream_failed',
            reason: `${req.rule}: looking up the signatures of ${t.repo}@${subject} took over ${LOOKUP_DEADLINE_MS / 1000} s`,
          }),
        LOOKUP_DEADLINE_MS,
      );
      timer.unref();
    });
    const v = await Promise.race([this.verifySubject(t, subject, req), late]).finally(() => clearTimeout(timer));
    return { ...v, subject, at };
  }

  /** The pinned digest a manifest is approved through: itself, or the index (or signed image) it was reached from. */
  private async pinnedAncestor(repo: string, digest: string, depth = 0): Promise<string | null> {
    if (this.d.live.policy.oci.decideDigest(repo, digest).allow) return digest;
    if (depth >= 3) return null;
    for (const p of await this.d.meta.getOciParents(repo, digest)) {
      const a = await this.pinnedAncestor(repo, p.parent, depth + 1);
      if (a) return a;
    }
    return null;
  }

  private async verifySubject(t: UpstreamTarget, subject: string, req: SignatureRequirement): Promise<SignatureVerdict> {
    const f: Found = { notes: [], failures: [], errored: false, examined: 0 };
    const want = req.require === 'attested' ? 'an attestation' : 'a signature';
    // 1. The referrers API; 2. the referrers tag schema (when the API is absent or lists nothing).
    let entries = await this.referrersApi(t, subject, f);
    let source: SignatureVerdict['source'] = 'referrers';
    if (entries.length === 0) {
      entries = await this.tagIndex(t, `sha256-${subject.slice(7)}`, f);
      source = 'tag';
    }
    for (const e of entries) {
      if (e.artifactType !== undefined && e.artifactType !== BUNDLE_MT) continue;
      const ok = await this.verifyManifest(t, subject, e, req, f);
      if (ok) return { ...ok, source };
      if (f.examined >= MAX_OBJECTS) break;
    }
    // 3. cosign's legacy scheme (signatures only).
    if (req.require === 'signed' && f.examined < MAX_OBJECTS) {
      const legacy = await this.legacy(t, subject, req, f);
      if (legacy) return { ...legacy, source: 'sig-tag' };
    }
    const found = f.failures.length
      ? `found ${f.failures.length}: ${f.failures.slice(0, 3).join('; ')}`
      : `found none (${f.notes.join('; ') || 'no referrers'})`;
    if (f.failures.length === 0 && f.errored) {
      return {
        ok: false,
        code: 'upstream_failed',
        reason: `${req.rule}: the signatures of ${t.repo}@${subject} could not be looked up: ${f.notes.join('; ')}`,
      };
    }
    const first = f.firstFailed;
    return {
      ok: false,
      ...(first ? { identity: first.identity, bundleDigest: first.bundleDigest, trustVersion: first.trustVersion } : {}),
      ...(f.errored ? { transient: true } : {}),
      code: f.failures.length ? 'bad_signature' : 'unsigned',
      reason: `${req.rule} requires ${want} of ${t.repo}@${subject} by ${req.signers.map((s) => s.name).join(', ')}; ${found}`.slice(0, 900),
    };
  }

  private async referrersApi(t: UpstreamTarget, subject: string, f: Found): Promise<ReferrerEntry[]> {
    try {
      const res = await t.client.request(t.upstreamName, `referrers/${subject}`, { accept: MT.ociIndex });
      if (res.status !== 200) {
        res.body.resume();
        f.notes.push(`referrers API: ${res.status}`);
        if (res.status !== 404 && res.status !== 400) f.errored = true;
        return [];
      }
      const list = referrerEntries(await readBoundedBytes(res.body, this.d.maxManifestBytes));
      if (list.total > MAX_REFERRERS) f.notes.push(`referrers API: ${list.total} entries, the first ${MAX_REFERRERS} looked at`);
      else f.notes.push(`referrers API: ${list.total} entries`);
      return list.entries;
    } catch (e) {
      f.notes.push(`referrers API: ${(e as Error).message}`);
      return [];
    }
  }

  /** An index (or single manifest) at a tag: its entries (a manifest is its own entry). */
  private async tagIndex(t: UpstreamTarget, tag: string, f: Found): Promise<ReferrerEntry[]> {
    try {
      const m = await this.d.upstream.resolveTag(t, tag);
      if (m.mediaType !== MT.ociIndex && m.mediaType !== MT.dockerList) return [{ digest: m.digest, size: m.bytes.length, mediaType: m.mediaType }];
      const list = referrerEntries(m.bytes);
      f.notes.push(`tag ${tag}: ${list.total} entries`);
      return list.entries;
    } catch (e) {
      if (e instanceof OciError && e.status === 404) f.notes.push(`tag ${tag}: none`);
      else {
        f.notes.push(`tag ${tag}: ${(e as Error).message}`);
        f.errored = true;
      }
      return [];
    }
  }

  /** A signature manifest's layers of one media type (bounded), fetched verified; null when the manifest is unusable. */
  private async layers(
    t: UpstreamTarget,
    e: ReferrerEntry,
    mediaType: string,
    f: Found,
  ): Promise<{ digest: string; size: number; annotations: Record<string, string> }[]> {
    if (e.size > this.d.maxManifestBytes) {
      f.failures.push(`${e.digest} is ${e.size} bytes (manifest bound ${this.d.maxManifestBytes}); ignored`);
      return [];
    }
    let doc: { layers?: { mediaType?: string; digest?: string; size?: number; annotations?: Record<string, string> }[] };
    try {
      const m = await this.d.upstream.manifest(t, e.digest, e.size);
      doc = JSON.parse(m.bytes.toString('utf8'));
    } catch (err) {
      f.failures.push(`${e.digest}: ${(err as Error).message}`);
      return [];
    }
    return (Array.isArray(doc.layers) ? doc.layers : [])
      .filter((l) => l && l.mediaType === mediaType && typeof l.digest === 'string' && checkDigest(l.digest).ok && typeof l.size === 'number')
      .slice(0, 4)
      .map((l) => ({ digest: l.digest!, size: l.size!, annotations: l.annotations && typeof l.annotations === 'object' ? l.annotations : {} }));
  }

  /** A signature object's bytes, bounded and checked against its digest (then kept in the cache for clients). */
  private async object(t: UpstreamTarget, l: { digest: string; size: number }, f: Found): Promise<Buffer | null> {
    f.examined++;
    if (l.size > MAX_SIGNATURE_BYTES) {
      f.failures.push(`${l.digest} is ${l.size} bytes, over the ${MAX_SIGNATURE_BYTES}-byte bound for a signature object; ignored`);
      return null;
    }
    const held = await this.d.cache.readSmall(l.digest.slice(7), MAX_SIGNATURE_BYTES).catch(() => null);
    if (held) return held;
    try {
      const ac = new AbortController();
      const { body } = await this.d.upstream.openBlob(t, l.digest, ac.signal, { size: l.size });
      const bytes = await readBoundedBytes(body, MAX_SIGNATURE_BYTES, 30_000);
      if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== l.digest) {
        f.failures.push(`${l.digest}: the registry sent other bytes; ignored`);
        return null;
      }
      await this.d.cache.putSmall(bytes);
      return bytes;
    } catch (err) {
      f.failures.push(`${l.digest}: ${(err as Error).message}`);
      f.errored = true;
      return null;
    }
  }

  private async verifyManifest(t: UpstreamTarget, subject: string, e: ReferrerEntry, req: SignatureRequirement, f: Found): Promise<CosignResult | null> {
    for (const l of await this.layers(t, e, BUNDLE_MT, f)) {
      if (f.examined >= MAX_OBJECTS) return null;
      const bytes = await this.object(t, l, f);
      if (!bytes) continue;
      const trust = this.d.trust?.current() ?? null;
      const r = this.bundles.through(subject, l.digest, trust?.version ?? 'none', req.cacheKey, () => verifyCosignBundle(bytes, subject, req.signers, trust));
      if (!r.ok) {
        f.failures.push(`bundle ${l.digest.slice(0, 19)}…: ${r.reason ?? 'refused'}`);
        f.firstFailed ??= r;
      } else if (req.require === 'attested' && r.kind !== 'attestation') f.notes.push(`a signature by ${r.identity} (not an attestation)`);
      else return r;
    }
    return null;
  }

  private async legacy(t: UpstreamTarget, subject: string, req: SignatureRequirement, f: Found): Promise<CosignResult | null> {
    const entries = await this.tagIndex(t, `sha256-${subject.slice(7)}.sig`, f);
    // Fail closed as every bundle verification does (verify.ts): no usable trusted root, no signature accepted, by a key either.
    const trust = this.d.trust?.current() ?? null;
    const unusable = !trust
      ? 'no usable Sigstore trusted root (see airlock trust import)'
      : !trust.usableAt(Date.now())
        ? `the trusted root ${trust.version} has expired (import a current one: airlock trust import FILE)`
        : null;
    for (const e of entries.slice(0, 1)) {
      for (const l of await this.layers(t, e, SIMPLESIGNING_MT, f)) {
        if (unusable) {
          f.failures.push(`${l.digest.slice(0, 19)}…: ${req.rule}: ${unusable}`);
          return null;
        }
        if (f.examined >= MAX_OBJECTS) return null;
        const bytes = await this.object(t, l, f);
        if (!bytes) continue;
        const r = verifyLegacySignature(bytes, l.annotations[LEGACY_SIGNATURE_ANNOTATION], subject, req.signers);
        if (r.ok) return r;
        f.firstFailed ??= r;
        f.failures.push(`${l.digest.slice(0, 19)}…: ${r.reason ?? 'refused'}`);
      }
    }
    return null;
  }
}
