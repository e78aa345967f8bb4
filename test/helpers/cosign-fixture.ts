import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * The cosign v3 fixture of /work/shared/fixtures/signatures (SOURCES.md): the subject image rebuilt
 * byte for byte, the attestation bundle that signs it, and the OCI objects cosign would write
 * beside it (a bundle manifest, and the referrers tag schema's index). Plus an HTTP push to a
 * registry (the distribution API's monolithic upload), for objects skopeo does not copy.
 */
export const FIXTURES = '/work/shared/fixtures/signatures/oci';
export const BUNDLE_MT = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const SUBJECT_DIGEST = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY_MT = 'application/vnd.oci.empty.v1+json';

export const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface Obj {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}
const obj = (text: string, mediaType: string): Obj => {
  const bytes = Buffer.from(text);
  return { bytes, digest: sha(bytes), mediaType };
};

/** An image with no layers whose config is given (the fixture's subject for the default config). */
export function subjectImage(
  configText = '{"architecture":"","created":"0001-01-01T00:00:00Z","os":"","rootfs":{"type":"layers","diff_ids":null},"config":{}}',
): { config: Obj; manifest: Obj } {
  const config = obj(configText, 'application/vnd.docker.container.image.v1+json');
  const manifest = obj(
    `{"schemaVersion":2,"mediaType":"${DOCKER_MANIFEST}","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":${config.bytes.length},"digest":"${config.digest}"},"layers":[]}`,
    DOCKER_MANIFEST,
  );
  return { config, manifest };
}

export function fixtureBundle(): Buffer {
  return readFileSync(`${FIXTURES}/oci-attestation.sigstore.json`);
}

/** What cosign v3 writes for a bundle: an artifact manifest (one layer, the bundle) and, without a referrers API, an index at tag sha256-<hex>. */
export function bundleObjects(bundle: Buffer, subject: Obj): { empty: Obj; layer: Obj; manifest: Obj; index: Obj; tag: string } {
  const empty = obj('{}', EMPTY_MT);
  const layer = { bytes: bundle, digest: sha(bundle), mediaType: BUNDLE_MT };
  const manifest = obj(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_MT,
      config: { mediaType: EMPTY_MT, digest: empty.digest, size: 2 },
      layers: [{ mediaType: BUNDLE_MT, digest: layer.digest, size: bundle.length }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.bytes.length },
    }),
    OCI_MANIFEST,
  );
  const index = obj(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: manifest.digest, size: manifest.bytes.length, artifactType: BUNDLE_MT }],
    }),
    OCI_INDEX,
  );
  return { empty, layer, manifest, index, tag: `sha256-${subject.digest.slice(7)}` };
}

/** Push a blob to a registry at base (http://host:port) under repo. */
export async function putBlob(base: string, repo: string, bytes: Buffer): Promise<void> {
  const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`upload start: ${start.status} ${await start.text()}`);
  const loc = new URL(start.headers.get('location')!, base);
  loc.searchParams.set('digest', sha(bytes));
  const put = await fetch(loc, { method: 'PUT', body: new Uint8Array(bytes), headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`upload: ${put.status} ${await put.text()}`);
}

export async function putManifest(base: string, repo: string, ref: string, m: Obj): Promise<void> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body: new Uint8Array(m.bytes), headers: { 'content-type': m.mediaType } });
  if (res.status !== 201) throw new Error(`manifest ${ref}: ${res.status} ${await res.text()}`);
}

/** Push the subject image, and (when given) a bundle for it as cosign does against a registry without the referrers API. */
export async function pushSigned(base: string, repo: string, img: { config: Obj; manifest: Obj }, bundle?: Buffer): Promise<void> {
  await putBlob(base, repo, img.config.bytes);
  await putManifest(base, repo, img.manifest.digest, img.manifest);
  if (!bundle) return;
  const o = bundleObjects(bundle, img.manifest);
  await putBlob(base, repo, o.empty.bytes);
  await putBlob(base, repo, o.layer.bytes);
  await putManifest(base, repo, o.manifest.digest, o.manifest);
  await putManifest(base, repo, o.tag, o.index);
}
