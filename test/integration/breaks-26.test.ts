import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { BUNDLE_MT, fixtureBundle, subjectImage, SUBJECT_DIGEST } from '../helpers/cosign-fixture.js';
import { FakeRegistry, digestOf, makeImage, makeIndex, type Image } from '../helpers/fake-registry.js';
import { FakeHub, hfUpstream, type HubFile } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';
import { fixtureFiles, MODE_DIR, MODELS, startSignedModels } from '../helpers/signed-models.js';

/**
 * Issue 26, attacked from the side (helper break26): each `it` is one guarantee that a hostile
 * upstream (or a hijacked publisher account pushing to it) could break, failing before its fix.
 */
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const ACCEPT = [OCI_MANIFEST, OCI_INDEX, 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');

const fixture = subjectImage();
const subject: Image = {
  manifest: fixture.manifest.bytes,
  digest: SUBJECT_DIGEST,
  mediaType: fixture.manifest.mediaType,
  config: fixture.config.bytes,
  layers: [],
};

/** cosign v3's bundle manifest (an artifact naming the subject). */
function bundleManifest(bundle: Buffer): Image {
  const config = Buffer.from('{}');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_MT,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(config), size: 2 },
      layers: [{ mediaType: BUNDLE_MT, digest: digestOf(bundle), size: bundle.length }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.manifest.length },
    }),
  );
  return { manifest, digest: digestOf(manifest), mediaType: OCI_MANIFEST, config, layers: [bundle] };
}

describe('issue 26 breaks: images', () => {
  const api = new FakeRegistry();
  const tags = new FakeRegistry();
  let a: TestAirlock;
  const bundle = fixtureBundle();
  const sig = bundleManifest(bundle);
  // What a hostile upstream slips in: a runnable image nobody pinned or signed.
  const evil = makeImage([randomBytes(400)]);
  const evilArm = makeImage([randomBytes(400)], 'arm64');
  const evilIndex = makeIndex([{ img: evilArm, arch: 'arm64' }]);
  const get = (path: string, method = 'GET') => fetch(`${a.url}/v2/${path}`, { method, headers: { accept: ACCEPT } });
  const rule = (repo: string, signed = true) =>
    `      - repository: ${repo}\n        digests: ["${SUBJECT_DIGEST}"]\n` + (signed ? `        require: attested\n        signers: [cody]\n` : '');

  beforeAll(async () => {
    tags.referrersMode = 'none';
    for (const r of [api, tags]) await r.start();
    // The referrers API lists the real bundle, and an image.
    api.push('cosign/app', subject);
    api.push('cosign/app', sig);
    api.push('cosign/app', evil);
    api.referrers.set(`cosign/app@${SUBJECT_DIGEST}`, [sig, evil]);
    api.referrerTypes.set(sig.digest, BUNDLE_MT);
    api.referrerTypes.set(evil.digest, BUNDLE_MT);
    // Tags only: the referrers tag schema's tag names an image; in another repository an index of images.
    tags.push('cosign/tag', subject);
    tags.push('cosign/tag', evil, `sha256-${SUBJECT_DIGEST.slice(7)}`);
    // The referrers tag schema's index lists the real bundle (the subject verifies) and an image index.
    tags.push('cosign/index', subject);
    tags.push('cosign/index', sig);
    tags.pushIndex('cosign/index', evilIndex, [evilArm]);
    const schema = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          { mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.manifest.length, artifactType: BUNDLE_MT },
          { mediaType: OCI_INDEX, digest: evilIndex.digest, size: evilIndex.bytes.length, artifactType: BUNDLE_MT },
        ],
      }),
    );
    tags.manifests.set(`cosign/index@${digestOf(schema)}`, { bytes: schema, mediaType: OCI_INDEX });
    tags.tags.set(`cosign/index:sha256-${SUBJECT_DIGEST.slice(7)}`, digestOf(schema));
    a = await startAirlock(`
oci:
  default_registry: api.test
  registries:
    api.test: { url: "${api.url}", blob_hosts: ["127.0.0.1:${api.cdnPort}"] }
    tags.test: { url: "${tags.url}", blob_hosts: ["127.0.0.1:${tags.cdnPort}"] }
policy:
  signing:
    signers:
      cody: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }
  oci:
    allow:
${rule('api.test/cosign/app')}${rule('tags.test/cosign/tag', false)}${rule('tags.test/cosign/index')}
`);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    for (const r of [api, tags]) await r.stop();
  });

  it('referrers served for a signed pinned digest: an image the upstream lists among them is not approved through it (manifest or layers)', async () => {
    expect((await get(`api.test/cosign/app/manifests/${SUBJECT_DIGEST}`)).status).toBe(200);
    const list = await get(`api.test/cosign/app/referrers/${SUBJECT_DIGEST}`);
    expect(list.status).toBe(200);
    expect(((await list.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([sig.digest, evil.digest]);
    // The signature objects themselves stay servable (clients verify again downstream).
    expect((await get(`api.test/cosign/app/manifests/${sig.digest}`)).status).toBe(200);
    expect((await get(`api.test/cosign/app/blobs/${digestOf(bundle)}`)).status).toBe(200);
    // The image listed beside them is neither pinned nor signed: refused, and so are its layers.
    const m = await get(`api.test/cosign/app/manifests/${evil.digest}`);
    expect(m.status).toBe(403);
    expect(await m.text()).toMatch(/DENIED.*not pinned|not pinned.*DENIED/s);
    expect((await get(`api.test/cosign/app/manifests/${evil.digest}`, 'HEAD')).status).toBe(403);
    expect((await get(`api.test/cosign/app/blobs/${digestOf(evil.layers[0])}`)).status).toBe(403);
    expect((await get(`api.test/cosign/app/blobs/${digestOf(evil.config)}`)).status).toBe(403);
    const denied = (await records(a, `ecosystem=oci&name=api.test/cosign/app&decision=deny`)).filter((r) => r.sha256 === evil.digest.slice(7));
    expect(denied.length).toBeGreaterThan(0);
  });

  it('signature tags are served only as signature objects of an approved subject: the tag sha256-<hex> naming an image (or an index of images) is refused', async () => {
    // A pinned digest without a signing rule: its signature tag is still served, but only as a signature object.
    expect((await get(`tags.test/cosign/tag/manifests/${SUBJECT_DIGEST}`)).status).toBe(200);
    const tagged = await get(`tags.test/cosign/tag/manifests/sha256-${SUBJECT_DIGEST.slice(7)}`);
    expect(tagged.status).toBe(403);
    expect((await get(`tags.test/cosign/tag/manifests/${evil.digest}`)).status).toBe(403);
    expect((await get(`tags.test/cosign/tag/blobs/${digestOf(evil.layers[0])}`)).status).toBe(403);
    // A signed subject whose tag schema index lists its bundle and an index of images: the subject and
    // its bundle are served; the images are refused, with their layers.
    expect((await get(`tags.test/cosign/index/manifests/${SUBJECT_DIGEST}`)).status).toBe(200);
    expect((await get(`tags.test/cosign/index/manifests/sha256-${SUBJECT_DIGEST.slice(7)}`)).status).toBe(200);
    expect((await get(`tags.test/cosign/index/manifests/${sig.digest}`)).status).toBe(200);
    await get(`tags.test/cosign/index/manifests/${evilIndex.digest}`);
    expect((await get(`tags.test/cosign/index/manifests/${evilArm.digest}`)).status).toBe(403);
    expect((await get(`tags.test/cosign/index/blobs/${digestOf(evilArm.layers[0])}`)).status).toBe(403);
  });
});

describe('issue 26 breaks: trust material', () => {
  const tags = new FakeRegistry();
  let a: TestAirlock;
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = keys.publicKey
    .export({ type: 'spki', format: 'pem' })
    .toString()
    .trim()
    .split('\n')
    .map((l) => `          ${l}`)
    .join('\n');
  const img = makeImage([randomBytes(300)]);
  const get = (path: string, method = 'GET') => fetch(`${a.url}/v2/${path}`, { method, headers: { accept: ACCEPT } });

  beforeAll(async () => {
    tags.referrersMode = 'none';
    await tags.start();
    // A legacy cosign .sig signature of the image, by the rule's key.
    const payload = Buffer.from(
      JSON.stringify({
        critical: { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': img.digest }, type: 'cosign container image signature' },
        optional: null,
      }),
    );
    const signature = sign('sha256', payload, keys.privateKey).toString('base64');
    const config = Buffer.from('{}');
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
        layers: [
          { mediaType: SIMPLESIGNING, digest: digestOf(payload), size: payload.length, annotations: { 'dev.cosignproject.cosign/signature': signature } },
        ],
      }),
    );
    tags.push('legacy/key', img);
    tags.push('legacy/key', { manifest, digest: digestOf(manifest), mediaType: OCI_MANIFEST, config, layers: [payload] }, `sha256-${img.digest.slice(7)}.sig`);
    a = await startAirlock(`
oci:
  default_registry: tags.test
  registries:
    tags.test: { url: "${tags.url}", blob_hosts: ["127.0.0.1:${tags.cdnPort}"] }
policy:
  signing:
    signers:
      acme-key:
        key: |
${pem}
  oci:
    allow:
      - repository: tags.test/legacy/key
        digests: ["${img.digest}"]
        require: signed
        signers: [acme-key]
`);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await tags.stop();
  });

  it('a missing or broken trusted root refuses where a rule requires a signature: a legacy .sig signed by a key too (fail closed)', async () => {
    expect((await get(`tags.test/legacy/key/manifests/${img.digest}`)).status).toBe(200);
    // The stored root no longer loads: nothing verifies, and there is no fallback.
    await a.airlock.meta.putTrustRoot({ sha256: 'f'.repeat(64), root: '{"mediaType": "not a trusted root"}' });
    expect(await a.airlock.reloadTrust()).toBeNull();
    for (const method of ['GET', 'HEAD']) {
      const res = await get(`tags.test/legacy/key/manifests/${img.digest}`, method);
      expect(res.status).toBe(403);
      if (method === 'GET') expect(await res.text()).toMatch(/no usable Sigstore trusted root/);
    }
    expect((await get(`tags.test/legacy/key/blobs/${digestOf(img.layers[0])}`)).status).toBe(403);
  });
});

describe('issue 26 breaks: model signatures and trust material', () => {
  let hub: FakeHub;
  let a: TestAirlock;

  beforeAll(async () => {
    ({ hub, a } = await startSignedModels());
  });

  afterAll(async () => {
    await a?.stop();
    await hub?.stop();
  });

  it('a missing or broken trusted root refuses where a rule requires a signature: a model signed in key mode too (fail closed)', async () => {
    const hf = (p: string, method = 'GET') => fetch(`${a.url}/hf/${p}`, { method });
    expect((await hf('acme/key/resolve/main/signme-1')).status).toBe(200);
    await a.airlock.meta.putTrustRoot({ sha256: 'f'.repeat(64), root: '{"mediaType": "not a trusted root"}' });
    expect(await a.airlock.reloadTrust()).toBeNull();
    const res = await hf('acme/key/resolve/main/signme-2');
    expect(res.status).toBe(403);
    expect(res.headers.get('x-error-message')).toMatch(/no usable Sigstore trusted root/);
    const head = await hf('acme/key/resolve/main/signme-1', 'HEAD');
    expect(head.status).toBe(404);
    expect(head.headers.get('x-error-message')).toMatch(/no usable Sigstore trusted root/);
    expect((await records(a, 'name=acme/key')).filter((r) => r.code === 'bad_signature').length).toBeGreaterThan(0);
  });
});

describe('issue 26 breaks: model signatures against a hostile Hub', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  let commit: string;
  const evil = Buffer.from('weights the signer never saw\n');
  let files: HubFile[];

  beforeAll(async () => {
    await hub.start();
    // The key-signed fixture, and its tree listing signme-2 twice: the signed git file, then an LFS file of other bytes.
    files = fixtureFiles(MODE_DIR.key, (f) => [...f, { path: 'signme-2', bytes: evil, lfs: true }]);
    commit = hub.commit('model', 'acme/dup', files);
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  signing:
    signers:
      acme-key: { key_file: ${join(MODELS, 'keys/signing-key-pub.pem')} }
  hf:
    allow:
      - repo: acme/dup
        refs: { main: "${commit}" }
        require: signed
        signers: [acme-key]
`);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  it('a signed snapshot serves only what the signature covers: a tree that lists a path twice is refused, not served as the entry the signature did not check', async () => {
    const hf = (p: string, method = 'GET') => fetch(`${a.url}/hf/${p}`, { method });
    const first = await hf('acme/dup/resolve/main/signme-1');
    // The Hub now answers the path with the other entry (a hostile Hub answers as it likes).
    const i = files.findIndex((f) => f.path === 'signme-2' && f.lfs);
    files.unshift(...files.splice(i, 1));
    const res = await hf('acme/dup/resolve/main/signme-2');
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.equals(evil)).toBe(false);
    expect(res.status).not.toBe(200);
    expect(first.status).not.toBe(200);
    expect(res.headers.get('x-error-message') ?? '').toMatch(/signme-2.*twice|twice.*signme-2/);
  });
});

describe('issue 26 breaks: PEP 740 provenance', () => {
  const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
  const PA = 'pypi_attestations-0.0.19.tar.gz';
  const OTHER = 'pypi_attestations-0.0.19-py3-none-any.whl';
  const LATER = 'pypi_attestations-0.0.20.tar.gz';
  const dist = readFileSync(join(FIX, PA));
  const provenance = readFileSync(join(FIX, `${PA}.provenance`));
  const up = new FakeIndex();
  let a: TestAirlock;

  beforeAll(async () => {
    await up.start();
    // The attested sdist, and the same bytes and provenance listed under another file name.
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
    up.add('pypi-attestations', { filename: OTHER, bytes: dist, provenance });
    // A later release with no provenance at all, admitted by a rule of its own (as a later pin adds one).
    up.add('pypi-attestations', { filename: LATER, bytes: randomBytes(2000) });
    a = await startAirlock(`
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]
policy:
  pypi:
    allow:
      - { name: pypi-attestations, versions: "<0.0.20", require: attested, publisher: { github: trailofbits/pypi-attestations, workflow: release.yml } }
      - { name: pypi-attestations, versions: "==0.0.20" }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await up.stop();
  });

  it("every attestation names the file served: a verified provenance is not reused for another file name with the same sha256 (the cache's key)", async () => {
    const first = await fetch(`${a.url}/pypi/files/pypi-attestations/${PA}`);
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const other = await fetch(`${a.url}/pypi/files/pypi-attestations/${OTHER}`);
    expect(other.status).toBe(403);
    expect(await other.text()).toContain('not this file');
    const rows = (await records(a, 'name=pypi-attestations')).filter((r) => r.filename === OTHER);
    expect(rows[0]).toMatchObject({ decision: 'deny', code: 'bad_signature' });
  });

  // Continuity is consulted under every rule once a project's signer is on record (src/pypi/continuity.ts): a later
  // release admitted by a rule without `require` (a later pin) is no longer served unsigned.
  it('continuity: a later release of a project whose signer is on record is refused when it is unsigned, even under a rule without require', async () => {
    const first = await fetch(`${a.url}/pypi/files/pypi-attestations/${PA}`);
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const later = await fetch(`${a.url}/pypi/files/pypi-attestations/${LATER}`);
    const text = await later.text();
    expect(later.status).toBe(403);
    expect(text).toContain(
      'signer changed: pypi-attestations 0.0.20 is not signed, but earlier versions (first 0.0.19) were signed by github:trailofbits/pypi-attestations release.yml',
    );
    expect(text).toContain('airlock trust accept pypi pypi-attestations');
    const head = await fetch(`${a.url}/pypi/files/pypi-attestations/${LATER}`, { method: 'HEAD' });
    expect(head.status).toBe(403);
    const rows = (await records(a, 'name=pypi-attestations')).filter((r) => r.filename === LATER);
    expect(rows.length).toBe(2);
    for (const r of rows) expect(r).toMatchObject({ decision: 'deny', code: 'unsigned', rule: 'pypi.allow[1]', version: '0.0.20' });
  });
});
