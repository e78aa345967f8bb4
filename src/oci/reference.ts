/**
 * The /v2/ path split and the manifest shapes Airlock reads (the name grammar is in
 * names/oci.ts). Pure functions; no I/O.
 */
import { checkDigest } from '../names/oci.js';

export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'unknown' };

/**
 * Split a /v2/ path. Names contain slashes, so the split is on the last /manifests/, /blobs/,
 * /tags/list or /referrers/ marker. `rest` is the path after "/v2/", still percent-encoded: a
 * percent sign anywhere is refused by the caller (an encoded slash must not smuggle a name).
 */
export function parseV2Path(rest: string): V2Route {
  if (rest === '') return { kind: 'base' };
  if (rest === '_catalog') return { kind: 'catalog' };
  if (rest.endsWith('/tags/list')) return { kind: 'tags', name: rest.slice(0, -'/tags/list'.length) };
  const markers: [string, 'manifest' | 'blob' | 'referrers' | 'uploads'][] = [
    ['/manifests/', 'manifest'],
    ['/blobs/uploads', 'uploads'],
    ['/blobs/', 'blob'],
    ['/referrers/', 'referrers'],
  ];
  let best: { at: number; marker: string; kind: 'manifest' | 'blob' | 'referrers' | 'uploads' } | undefined;
  for (const [marker, kind] of markers) {
    const at = rest.lastIndexOf(marker);
    if (at > 0 && (!best || at > best.at)) best = { at, marker, kind };
  }
  if (!best) return { kind: 'unknown' };
  const name = rest.slice(0, best.at);
  const tail = rest.slice(best.at + best.marker.length);
  if (best.kind === 'uploads') return { kind: 'uploads', name };
  if (tail === '' || tail.includes('/')) return { kind: 'unknown' };
  if (best.kind === 'manifest') return { kind: 'manifest', name, reference: tail };
  if (best.kind === 'blob') return { kind: 'blob', name, digest: tail };
  return { kind: 'referrers', name, digest: tail };
}

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  schema1: 'application/vnd.docker.distribution.manifest.v1+json',
  schema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What Airlock asks upstreams for: every modern manifest type, never schema1. */
export const MANIFEST_ACCEPT = [MT.ociIndex, MT.ociManifest, MT.dockerList, MT.dockerManifest].join(', ');

const INDEX_TYPES = new Set<string>([MT.ociIndex, MT.dockerList]);

/** Whether a manifest media type (as parseManifest reports it) is an index of other manifests. */
export function isIndexType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType);
}
const MANIFEST_TYPES = new Set<string>([MT.ociManifest, MT.dockerManifest]);

export interface Child {
  digest: string;
  size: number;
  /** 'manifest' for the entries of an index; 'blob' for a manifest's config and layers. */
  kind: 'manifest' | 'blob';
}

export interface ParsedManifest {
  mediaType: string;
  isIndex: boolean;
  children: Child[];
}

export class ManifestError extends Error {
  constructor(
    readonly code: 'MANIFEST_INVALID' | 'UNSUPPORTED',
    message: string,
  ) {
    super(message);
  }
}

function mediaTypeOnly(ct: string | undefined): string | undefined {
  return ct?.split(';')[0].trim().toLowerCase() || undefined;
}

function descriptor(v: unknown, where: string, kind: Child['kind']): Child {
  const d = v as { digest?: unknown; size?: unknown; urls?: unknown };
  if (!d || typeof d !== 'object') throw new ManifestError('MANIFEST_INVALID', `${where}: expected a descriptor object`);
  if (typeof d.digest !== 'string' || !checkDigest(d.digest).ok) {
    throw new ManifestError(
      'MANIFEST_INVALID',
      `${where}.digest: expected a sha256 digest Airlock can verify, got ${JSON.stringify(String(d.digest).slice(0, 80))}`,
    );
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ManifestError('MANIFEST_INVALID', `${where}.size: expected a non-negative whole number`);
  }
  return { digest: d.digest, size: d.size, kind };
}

/**
 * Read a manifest's type and the descriptors it references. The bytes themselves are stored and
 * served untouched; this only decides what they are and what they allow.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new ManifestError('MANIFEST_INVALID', 'the manifest is not JSON');
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new ManifestError('MANIFEST_INVALID', 'the manifest is not a JSON object');
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  const header = mediaTypeOnly(contentType);
  if (doc.schemaVersion === 1 || header === MT.schema1 || header === MT.schema1Signed) {
    throw new ManifestError(
      'UNSUPPORTED',
      'Docker schema1 manifests are not served (deprecated, and their digest cannot be checked over the bytes); ask the publisher for an OCI or schema2 image',
    );
  }
  if (doc.schemaVersion !== 2) throw new ManifestError('MANIFEST_INVALID', `schemaVersion: expected 2, got ${JSON.stringify(doc.schemaVersion)}`);
  if (declared && header && header !== 'application/json' && declared !== header) {
    throw new ManifestError('MANIFEST_INVALID', `the manifest says mediaType ${declared} but was sent as ${header}`);
  }
  let mediaType = declared ?? header;
  if (!mediaType || mediaType === 'application/json') {
    // OCI allows mediaType to be absent: tell an index from a manifest by its fields.
    mediaType = Array.isArray(doc.manifests) ? MT.ociIndex : MT.ociManifest;
  }
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw new ManifestError('MANIFEST_INVALID', 'manifests: an index must list its manifests');
    return { mediaType, isIndex: true, children: doc.manifests.map((m, i) => descriptor(m, `manifests[${i}]`, 'manifest')) };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    const children = [descriptor(doc.config, 'config', 'blob')];
    if (!Array.isArray(doc.layers)) throw new ManifestError('MANIFEST_INVALID', 'layers: an image manifest must list its layers');
    doc.layers.forEach((l, i) => {
      const urls = (l as { urls?: unknown }).urls;
      if (Array.isArray(urls) && urls.length > 0) {
        throw new ManifestError(
          'UNSUPPORTED',
          `layers[${i}] is a foreign layer fetched from ${JSON.stringify(urls[0])}; Airlock serves only layers held by the registry`,
        );
      }
      children.push(descriptor(l, `layers[${i}]`, 'blob'));
    });
    return { mediaType, isIndex: false, children };
  }
  throw new ManifestError('UNSUPPORTED', `manifest media type ${JSON.stringify(mediaType)} is not one Airlock serves`);
}

/** One entry of an index: a platform's manifest (or an attestation manifest, which describes no platform). */
export interface IndexEntry {
  digest: string;
  size: number;
  /** os/architecture[/variant], when the entry names one. */
  platform?: string;
  /** Build attestations (buildx lists them with architecture "unknown"): not an image to run. */
  attestation: boolean;
}

/** The entries of an index, with their platforms; parseManifest has checked their digests and sizes. */
export function indexEntries(bytes: Buffer): IndexEntry[] {
  const doc = JSON.parse(bytes.toString('utf8')) as {
    manifests?: { digest: string; size: number; platform?: { architecture?: string; os?: string; variant?: string } }[];
  };
  return (doc.manifests ?? []).map((m) => ({
    digest: m.digest,
    size: m.size,
    ...(m.platform ? { platform: [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/') } : {}),
    attestation: m.platform?.architecture === 'unknown',
  }));
}

/** Whether a client's Accept header admits a media type. No Accept header means anything. */
export function accepts(acceptHeader: string | undefined, mediaType: string): boolean {
  if (!acceptHeader || acceptHeader.trim() === '') return true;
  return acceptHeader.split(',').some((part) => {
    const [type, ...params] = part.trim().toLowerCase().split(';');
    const t = type.trim();
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (q && Number(q.slice(2)) === 0) return false;
    return t === mediaType || t === '*/*' || t === 'application/*';
  });
}
