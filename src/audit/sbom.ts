import * as CDX from '@cyclonedx/cyclonedx-library';
import { PackageURL } from 'packageurl-js';
import { parseSignature, signerLabel, type RecordSignature } from '../signing/record.js';
import type { PullFilter, PullLog, StoredPullRecord } from '../storage/meta-store.js';
import { eachPull } from '../storage/pull-pages.js';
import type { InventoryStore } from '../storage/inventory-store.js';

export interface SbomOptions {
  since?: number;
  until?: number;
  ecosystem?: PullFilter['ecosystem'];
  client?: string;
  /** Airlock's own version, for the tool entry. */
  version: string;
  /** These pulls instead of a query (an incident's: the console's advisory export); the served ones are listed. */
  rows?: StoredPullRecord[];
  /** The served pulls matching this filter instead of the window (an artefact's: the console's page of it). */
  pulls?: PullFilter;
  /** What the document is about (airlock:subject), e.g. the advisory of an incident. */
  subject?: string;
}

interface Artefact {
  ecosystem: StoredPullRecord['ecosystem'];
  name: string;
  version: string | null;
  filename: string | null;
  sha256: string | null;
  first: number;
  last: number;
  pulls: number;
  clients: Set<string>;
  /** What verified it (issue 26): the newest signature-checked pull's record. */
  signature: RecordSignature | null;
}

/** The package URL of an artefact as Airlock records it. */
export function purlOf(a: { ecosystem: string; name: string; version: string | null; filename: string | null; sha256: string | null }): PackageURL | undefined {
  if (a.ecosystem === 'pypi')
    return new PackageURL('pypi', undefined, a.name, a.version ?? undefined, a.filename ? { file_name: a.filename } : undefined, undefined);
  if (a.ecosystem === 'hf') {
    const dataset = a.name.startsWith('datasets/');
    const repo = dataset ? a.name.slice('datasets/'.length) : a.name;
    const slash = repo.indexOf('/');
    const ns = slash > 0 ? repo.slice(0, slash) : undefined;
    const name = slash > 0 ? repo.slice(slash + 1) : repo;
    const q: Record<string, string> = {};
    if (dataset) q.repository_type = 'dataset';
    if (a.filename) q.file = a.filename;
    return new PackageURL('huggingface', ns, name, a.version ?? undefined, Object.keys(q).length ? q : undefined, undefined);
  }
  if (a.ecosystem === 'oci') {
    // pkg:oci/<last name segment>@sha256:<digest>?repository_url=<registry/name>
    const last = a.name.split('/').pop()!;
    return new PackageURL('oci', undefined, last, a.sha256 ? `sha256:${a.sha256}` : undefined, { repository_url: a.name }, undefined);
  }
  return undefined;
}

/** What an image inventory (src/image) holds, as far as the SBOM reads it. */
interface StoredInventory {
  os?: { id: string; versionId?: string; prettyName?: string };
  packages: { type: 'deb' | 'apk' | 'rpm' | 'pypi'; name: string; version: string; arch?: string; source?: string; location: string }[];
}

/**
 * The package URL of a package inside an image (purl-spec types deb, apk, rpm, pypi):
 * pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12, pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.0,
 * pkg:rpm/almalinux/openssl@3.0.7-24.el9?arch=x86_64&epoch=1&distro=almalinux-9.4, pkg:pypi/urllib3@2.8.0.
 */
export function purlOfImagePackage(p: StoredInventory['packages'][number], os: StoredInventory['os']): PackageURL {
  if (p.type === 'pypi') return new PackageURL('pypi', undefined, p.name, p.version, undefined, undefined);
  const ns = os?.id ?? (p.type === 'apk' ? 'alpine' : p.type === 'deb' ? 'debian' : undefined);
  const q: Record<string, string> = {};
  if (p.arch) q.arch = p.arch;
  let version = p.version;
  if (p.type === 'rpm') {
    const colon = version.indexOf(':');
    if (colon > 0) {
      q.epoch = version.slice(0, colon);
      version = version.slice(colon + 1);
    }
  }
  if (os?.id && os.versionId) q.distro = `${os.id}-${os.versionId}`;
  if (p.source && p.source !== p.name && p.type !== 'apk') q.upstream = p.source;
  return new PackageURL(p.type, ns, p.name, version, Object.keys(q).length ? q : undefined, undefined);
}

/** A verified signature as component properties: airlock:signer (who), and what verified it. */
export function signatureProperties(s: RecordSignature): [string, string][] {
  const out: [string, string][] = [['airlock:signer', signerLabel(s)]];
  if (s.identity) out.push(['airlock:signer_identity', s.identity]);
  if (s.publisher) out.push(['airlock:signer_publisher', `${s.publisher.kind}:${s.publisher.repository} ${s.publisher.workflow}`]);
  if (s.bundleDigest) out.push(['airlock:signature_bundle', s.bundleDigest]);
  if (s.tlogIndex) out.push(['airlock:signature_tlog_index', s.tlogIndex]);
  if (s.integratedTime) out.push(['airlock:signature_logged', new Date(s.integratedTime * 1000).toISOString()]);
  if (s.trustVersion) out.push(['airlock:signature_trust_root', s.trustVersion]);
  return out;
}

const REGISTRY: Record<string, string> = {
  pypi: 'PyPI (through Airlock /pypi)',
  hf: 'Hugging Face Hub (through Airlock /hf)',
  oci: 'OCI registry (through Airlock /v2)',
};

/**
 * CycloneDX 1.6 JSON of the artefacts served (decision allow) in a time window: one component per
 * file, manifest or blob digest, with its package URL, SHA-256, version/commit/digest, source and
 * first/last pulled, via the CycloneDX library (serialisation and normalisation per the spec).
 * Image manifests with an inventory nest their OS and packages (deb, apk, rpm, pypi package URLs).
 */
export async function buildSbom(meta: PullLog & { inventories: InventoryStore }, o: SbomOptions): Promise<string> {
  const arts = new Map<string, Artefact>();
  const add = (r: StoredPullRecord) => {
    if (o.client && r.client !== o.client) return;
    const key = [r.ecosystem, r.name, r.version ?? '', r.filename ?? '', r.sha256 ?? ''].join('\0');
    const a = arts.get(key) ?? {
      ecosystem: r.ecosystem,
      name: r.name,
      version: r.version ?? null,
      filename: r.filename ?? null,
      sha256: r.sha256 ?? null,
      first: r.ts,
      last: r.ts,
      pulls: 0,
      clients: new Set<string>(),
      signature: null,
    };
    // Rows come newest first: the newest verified signature names the signer.
    if (!a.signature) {
      const sig = parseSignature(r.signature);
      if (sig?.ok) a.signature = sig;
    }
    a.first = Math.min(a.first, r.ts);
    a.last = Math.max(a.last, r.ts);
    a.pulls++;
    a.clients.add(r.client);
    arts.set(key, a);
  };
  // Every served row of the window, a page at a time (pull-pages.ts): an SBOM cut at one page would leave out what was pulled before it.
  if (o.rows) for (const r of o.rows) if (r.decision === 'allow') add(r);
  if (!o.rows) await eachPull(meta, { ...(o.pulls ?? { since: o.since, until: o.until, ecosystem: o.ecosystem }), decision: 'allow' }, add);
  const bom = new CDX.Models.Bom();
  bom.metadata.timestamp = new Date();
  bom.metadata.tools.components.add(new CDX.Models.Component(CDX.Enums.ComponentType.Application, 'airlock', { version: o.version }));
  const window = `${o.since ? new Date(o.since).toISOString() : 'the first record'} to ${o.until ? new Date(o.until).toISOString() : 'now'}`;
  bom.metadata.properties.add(new CDX.Models.Property('airlock:window', window));
  if (o.client) bom.metadata.properties.add(new CDX.Models.Property('airlock:client', o.client));
  if (o.subject) bom.metadata.properties.add(new CDX.Models.Property('airlock:subject', o.subject));
  if (o.ecosystem) bom.metadata.properties.add(new CDX.Models.Property('airlock:ecosystem', o.ecosystem));
  let n = 0;
  for (const a of arts.values()) {
    const type =
      a.ecosystem === 'pypi'
        ? CDX.Enums.ComponentType.Library
        : a.ecosystem === 'oci'
          ? CDX.Enums.ComponentType.Container
          : a.name.startsWith('datasets/')
            ? CDX.Enums.ComponentType.Data
            : CDX.Enums.ComponentType.MachineLearningModel;
    const purl = purlOf(a);
    const hashes = new CDX.Models.HashDictionary();
    if (a.sha256) hashes.set(CDX.Enums.HashAlgorithm['SHA-256'], a.sha256);
    const props = new CDX.Models.PropertyRepository([
      new CDX.Models.Property('airlock:source', REGISTRY[a.ecosystem] ?? a.ecosystem),
      new CDX.Models.Property('airlock:first_pulled', new Date(a.first).toISOString()),
      new CDX.Models.Property('airlock:last_pulled', new Date(a.last).toISOString()),
      new CDX.Models.Property('airlock:pulls', String(a.pulls)),
      ...[...a.clients].sort().map((c) => new CDX.Models.Property('airlock:client', c)),
    ]);
    if (a.filename) props.add(new CDX.Models.Property('airlock:file', a.filename));
    if (a.signature) for (const [k, v] of signatureProperties(a.signature)) props.add(new CDX.Models.Property(k, v));
    const name = a.ecosystem === 'oci' && a.filename ? `${a.name} (${a.filename})` : a.name;
    const component = new CDX.Models.Component(type, name, {
      version: a.version ?? undefined,
      purl: purl?.toString(),
      hashes,
      properties: props,
      bomRef: `airlock-${++n}`,
    });
    // An image manifest with an inventory lists its OS and the packages inside it, nested.
    const stored = a.ecosystem === 'oci' && a.filename === 'manifest' && a.sha256 ? await meta.inventories.getInventory(`sha256:${a.sha256}`) : null;
    if (stored) {
      const inv = JSON.parse(stored.inventory) as StoredInventory;
      if (inv.os) {
        component.components.add(
          new CDX.Models.Component(CDX.Enums.ComponentType.OperatingSystem, inv.os.id, {
            version: inv.os.versionId,
            description: inv.os.prettyName,
            bomRef: `airlock-${++n}`,
          }),
        );
      }
      for (const p of inv.packages) {
        const purlP = purlOfImagePackage(p, inv.os);
        const pprops = new CDX.Models.PropertyRepository([new CDX.Models.Property('airlock:location', p.location)]);
        if (p.source && p.source !== p.name) pprops.add(new CDX.Models.Property('airlock:source_package', p.source));
        component.components.add(
          new CDX.Models.Component(CDX.Enums.ComponentType.Library, p.name, {
            version: p.version,
            purl: purlP.toString(),
            properties: pprops,
            bomRef: `airlock-${++n}`,
          }),
        );
      }
    }
    bom.components.add(component);
  }
  const serializer = new CDX.Serialize.JsonSerializer(new CDX.Serialize.JSON.Normalize.Factory(CDX.Spec.Spec1dot6));
  return serializer.serialize(bom, { sortLists: true, space: 2 });
}
