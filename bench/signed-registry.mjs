// A minimal registry for bench section 11 (signed images): the cosign v3 fixture of
// /work/shared/fixtures/signatures/oci (SOURCES.md) as test/helpers/cosign-fixture.ts rebuilds it:
// the subject image byte for byte, and the bundle manifest cosign writes beside it, listed by the
// referrers API. Every repository serves the same objects; requests are counted by kind.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const FIXTURES = '/work/shared/fixtures/signatures/oci';
export const SUBJECT_DIGEST = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
const BUNDLE_MT = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY_MT = 'application/vnd.oci.empty.v1+json';
const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export async function startSignedRegistry() {
  const config = Buffer.from('{"architecture":"","created":"0001-01-01T00:00:00Z","os":"","rootfs":{"type":"layers","diff_ids":null},"config":{}}');
  const subject = Buffer.from(
    `{"schemaVersion":2,"mediaType":"${DOCKER_MANIFEST}","config":{"mediaType":"${DOCKER_CONFIG}","size":${config.length},"digest":"${sha(config)}"},"layers":[]}`,
  );
  if (sha(subject) !== SUBJECT_DIGEST) throw new Error('signed-registry: the fixture subject did not rebuild byte for byte');
  const bundle = readFileSync(`${FIXTURES}/oci-attestation.sigstore.json`);
  const empty = Buffer.from('{}');
  const sigManifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_MT,
      config: { mediaType: EMPTY_MT, digest: sha(empty), size: 2 },
      layers: [{ mediaType: BUNDLE_MT, digest: sha(bundle), size: bundle.length }],
      subject: { mediaType: DOCKER_MANIFEST, digest: SUBJECT_DIGEST, size: subject.length },
    }),
  );
  const referrers = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: sha(sigManifest), size: sigManifest.length, artifactType: BUNDLE_MT }],
    }),
  );
  const manifests = new Map([
    [SUBJECT_DIGEST, [subject, DOCKER_MANIFEST]],
    [sha(sigManifest), [sigManifest, OCI_MANIFEST]],
  ]);
  const blobs = new Map([config, empty, bundle].map((b) => [sha(b), b]));
  const counts = {};
  const hit = (k) => (counts[k] = (counts[k] ?? 0) + 1);
  const send = (res, status, type, body, head, extra = {}) => {
    res.writeHead(status, { 'content-type': type, 'content-length': String(body.length), ...extra });
    res.end(head ? undefined : body);
  };
  const notFound = (res) => send(res, 404, 'application/json', Buffer.from('{"errors":[{"code":"NOT_FOUND","message":"not found"}]}'), false);
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const head = req.method === 'HEAD';
    if (path === '/v2/' || path === '/v2') return send(res, 200, 'application/json', Buffer.from('{}'), head);
    let m = /^\/v2\/.+\/referrers\/(sha256:[0-9a-f]{64})$/.exec(path);
    if (m) {
      hit('referrers');
      return m[1] === SUBJECT_DIGEST ? send(res, 200, OCI_INDEX, referrers, head) : notFound(res);
    }
    m = /^\/v2\/.+\/manifests\/([^/]+)$/.exec(path);
    if (m) {
      hit(m[1] === SUBJECT_DIGEST ? 'subject' : 'manifest');
      const man = manifests.get(m[1]);
      return man ? send(res, 200, man[1], man[0], head, { 'docker-content-digest': m[1] }) : notFound(res);
    }
    m = /^\/v2\/.+\/blobs\/([^/]+)$/.exec(path);
    if (m) {
      hit('blob');
      const b = blobs.get(m[1]);
      return b ? send(res, 200, 'application/octet-stream', b, head, { 'docker-content-digest': m[1] }) : notFound(res);
    }
    notFound(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    counts,
    stop: () => new Promise((r) => server.close(r)),
  };
}
