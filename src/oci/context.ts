import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/tokens.js';
import { AirlockError } from '../core/errors.js';
import type { BlobCache } from '../core/cache.js';
import type { LivePolicy } from '../core/live-policy.js';
import type { Recorder, RecordRow } from '../core/records.js';
import { Refusal, type RefusalRow } from '../http/refusal.js';
import { clientAddress, sendBytes, type AppEnv } from '../http/send.js';
import type { Decision } from '../policy/types.js';
import type { OciStore } from '../storage/meta-store.js';
import { API_VERSION, OciError, errorBody, headerSafe } from './errors.js';
import type { FirstSeen } from './first-seen.js';
import type { ImageGate } from './gate.js';
import type { ImageInventories } from './inventory.js';
import type { RegistryClient } from './registry-client.js';
import type { PinnedLinks } from './pinned-links.js';
import type { ImageSignatures } from './signatures.js';
import type { TrustRoots } from '../signing/trust.js';
import type { Continuity } from '../signing/continuity.js';
import type { OciUpstream, UpstreamTarget } from './upstream.js';

export interface OciDeps {
  authenticator: Authenticator;
  /** The policy in force (swapped whole on reload). */
  live: LivePolicy;
  /** Upstream registries by the name clients use for them (docker.io, ghcr.io, ...). */
  registries: Map<string, RegistryClient>;
  defaultRegistry: string;
  cache: BlobCache;
  meta: OciStore;
  recorder: Recorder;
  log: Logger;
  maxManifestBytes: number;
  /** Image inventories. */
  inventories: ImageInventories;
  /** Read layers for their inventory as they are filled (oci.inventory: on-fill), not only when an image is judged. */
  inventoryOnFill: boolean;
  /** The advisory gate on image manifests. */
  gate: ImageGate;
  /** The OCI upstream, when the caller shares it (the background image judge); else one is made. */
  upstream?: OciUpstream;
  /** The Sigstore trusted root in use (signing rules, issue 26); none: every signature check refuses. */
  trust?: TrustRoots;
  /** Continuity of signers per repository (signing/continuity.ts), shared by the front-ends. */
  continuity: Continuity;
  /** The answer to a blob no approved manifest of an allowed repository references (oci.unknown_blob_status; default 403). */
  unknownBlobStatus?: 403 | 404;
}

export type Target = UpstreamTarget;

export interface Approval {
  decision: Decision;
  /** Size declared by the approving parent manifest (for content reached through one). */
  size?: number;
  /**
   * Approved only as (part of) a signature object of an approved manifest: listed by the upstream's
   * referrers API or signature tag, which the upstream chooses. Such a manifest is served only when
   * it carries no filesystem layer (signatureObjectOnly), so it cannot smuggle an unpinned image in.
   */
  referrer?: boolean;
}

/** Image layer media types (OCI and Docker): what a runtime unpacks into a filesystem. */
const FS_LAYER = /^application\/vnd\.(oci\.image\.layer\.|docker\.image\.rootfs\.)/;

/**
 * Why a manifest reached only through a referrer link may not be served, or null: an image manifest
 * with a filesystem layer (or a layer of no media type, or bytes that do not parse) is an image, not
 * a signature, attestation or SBOM. An index is allowed: what it lists is checked in turn.
 */
export function notSignatureObject(bytes: Buffer): string | null {
  let doc: { layers?: unknown; fsLayers?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return 'it does not parse';
  }
  if (!doc || typeof doc !== 'object') return 'it does not parse';
  if (doc.fsLayers !== undefined) return 'it is a schema 1 image';
  if (doc.layers === undefined) return null;
  if (!Array.isArray(doc.layers)) return 'its layers are not a list';
  const l = doc.layers.find((x) => !x || typeof x !== 'object' || typeof x.mediaType !== 'string' || FS_LAYER.test(x.mediaType));
  return l ? `it is an image (layer ${JSON.stringify(String(l?.mediaType ?? '(no media type)').slice(0, 80))})` : null;
}

/** What the OCI handlers (pull.ts, listing.ts, token.ts) are given: the deps and the upstream they share. */
export interface OciContext extends OciDeps {
  upstream: OciUpstream;
  /** The signature gate (signatures.ts). */
  signatures: ImageSignatures;
  /** When Airlock first saw each manifest digest (first-seen.ts): what oci.min_age counts from. */
  firstSeen: FirstSeen;
  /** What the approved manifests of a repository reference, linked on demand (pinned-links.ts). */
  links: PinnedLinks;
}

/** An OciError in the spec's envelope (the shared error handler's render). */
export function refuse(c: Context<AppEnv>, e: OciError): Response {
  return sendBytes(
    c,
    e.status,
    {
      ...API_VERSION,
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'x-airlock-reason': headerSafe(e.message),
      ...e.extraHeaders,
    },
    errorBody(e.code, e.message),
  );
}

/** A manifest or blob digest is approved when pinned, or referenced by an approved manifest of the same repository. */
export async function approve(d: OciContext, repo: string, digest: string, depth = 0): Promise<Approval> {
  const policy = d.live.policy;
  const direct = policy.oci.decideDigest(repo, digest);
  if (direct.allow || direct.code !== 'digest_not_pinned' || depth >= 3) return { decision: direct };
  let viaReferrer: Approval | undefined;
  let denied: Decision | undefined;
  for (const p of await d.meta.getOciParents(repo, digest)) {
    const parent = await approve(d, repo, p.parent, depth + 1);
    if (!parent.decision.allow) {
      // Content of a denied image is denied with it, not unknown (which oci.unknown_blob_status may answer 404: try elsewhere).
      if (parent.decision.code === 'denied') denied ??= parent.decision;
      continue;
    }
    const referrer = parent.referrer || p.kind === 'referrer';
    if (!referrer) return { decision: policy.oci.decideReferenced(repo, digest, parent.decision), size: p.size };
    // Through a signature object: only when that parent is one (no filesystem layer); the child itself is checked when served.
    if (parent.referrer) {
      const held = await d.upstream.held(repo, p.parent);
      if (!held || notSignatureObject(held.bytes)) continue;
    }
    viaReferrer ??= { decision: policy.oci.decideReferenced(repo, digest, parent.decision), size: p.size, referrer: true };
  }
  // A denied image's content stays denied even when a signature object also lists it (that approval is the weaker).
  return denied ? { decision: denied } : (viaReferrer ?? { decision: direct });
}

export function baseRecord(c: Context<AppEnv>, t: Target, reference: string, kind: 'manifest' | 'blob'): Omit<RecordRow, 'cache' | 'decision'> {
  return { ts: Date.now(), client: clientAddress(c), ecosystem: 'oci', name: t.repo, version: reference, filename: kind, requestId: c.get('requestId') };
}

/** A policy refusal: on record (the shared error handler writes the row), DENIED to the client. */
export function deny(
  t: Target,
  reference: string | null,
  kind: RefusalRow['filename'],
  decision: Decision & { allow: false },
  sha256?: string,
  scan?: string,
): never {
  throw new Refusal({
    status: 403,
    code: decision.code,
    rule: decision.rule,
    reason: decision.reason,
    row: { name: t.repo, version: reference, filename: kind, sha256: sha256 ?? null, scan: scan ?? null },
    answer: new OciError(403, 'DENIED', decision.reason),
  });
}

/** An upstream failure (or a digest that disagrees) while loading what was approved: on record, answered as the error it is. */
export function failed(e: unknown, t: Target, reference: string, sha256: string, rule: string, cache: RefusalRow['cache'] = 'none', judging = false): Refusal {
  // While the gate judges the image, any failure (a layer it must read) is an error: the manifest itself verified.
  const mismatch = !judging && e instanceof AirlockError && e.code === 'DIGEST_MISMATCH';
  return new Refusal({
    status: e instanceof AirlockError || e instanceof OciError ? e.status : 500,
    code: mismatch ? 'digest_mismatch' : 'upstream_failed',
    decision: mismatch ? 'deny' : 'error',
    rule,
    reason: (e as Error).message,
    row: { name: t.repo, version: reference, filename: 'manifest', sha256, cache },
    answer: e as Error,
  });
}
