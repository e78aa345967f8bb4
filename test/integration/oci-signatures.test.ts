import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { BUNDLE_MT, fixtureBundle, subjectImage, SUBJECT_DIGEST } from '../helpers/cosign-fixture.js';
import { FakeRegistry, digestOf, makeImage, makeIndex, type Image } from '../helpers/fake-registry.js';
import { records } from '../helpers/http.js';

/**
 * Issue 26, images, against stub registries: one with the referrers API, one with tags only (the
 * referrers path 404s) and one answering every referrers request with an empty 200; what Airlock
 * serves to clients in each case; bad input (a huge referrers list, oversized and malformed
 * signature objects); cosign's legacy .sig signatures with a key, covering an index's platforms.
 */
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = [OCI_MANIFEST, 'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';

const fixture = subjectImage();
const subject: Image = {
  manifest: fixture.manifest.bytes,
  digest: SUBJECT_DIGEST,
  mediaType: fixture.manifest.mediaType,
  config: fixture.config.bytes,
  layers: [],
};
const subjectDesc = (img: Image) => ({ mediaType: img.mediaType, digest: img.digest, size: img.manifest.length });

/** An artifact manifest (cosign's shape): empty config, the given layers, a subject. */
function artifact(
  subj: Image,
  layers: { bytes: Buffer; mediaType: string; size?: number; annotations?: Record<string, string> }[],
  artifactType = BUNDLE_MT,
): Image {
  const config = Buffer.from('{}');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(config), size: 2 },
      layers: layers.map((l) => ({
        mediaType: l.mediaType,
        digest: digestOf(l.bytes),
        size: l.size ?? l.bytes.length,
        ...(l.annotations ? { annotations: l.annotations } : {}),
      })),
      subject: subjectDesc(subj),
    }),
  );
  return { manifest, digest: digestOf(manifest), mediaType: OCI_MANIFEST, config, layers: layers.map((l) => l.bytes) };
}

function tagIndex(entries: Image[]): { bytes: Buffer; digest: string; mediaType: string } {
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: entries.map((e) => ({ mediaType: e.mediaType, digest: e.digest, size: e.manifest.length, artifactType: BUNDLE_MT })),
    }),
  );
  return { bytes, digest: digestOf(bytes), mediaType };
}

/** Push the subject and, as cosign does without a referrers API, its bundle manifest and the index at tag sha256-<hex>. */
function pushTagSigned(reg: FakeRegistry, repo: string, subj: Image, sig?: Image): void {
  reg.push(repo, subj);
  if (!sig) return;
  reg.push(repo, sig);
  const idx = tagIndex([sig]);
  reg.manifests.set(`${repo}@${idx.digest}`, { bytes: idx.bytes, mediaType: idx.mediaType });
  reg.tags.set(`${repo}:sha256-${subj.digest.slice(7)}`, idx.digest);
}

const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const PUB = keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** A legacy cosign signature image (tag sha256-<hex>.sig) of `digest`, signed with the test key. */
function legacySig(subj: Image, signedDigest = subj.digest): Image {
  const payload = Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': signedDigest }, type: 'cosign container image signature' },
      optional: null,
    }),
  );
  const signature = sign('sha256', payload, keys.privateKey).toString('base64');
  return artifact(subj, [{ bytes: payload, mediaType: SIMPLESIGNING, annotations: { 'dev.cosignproject.cosign/signature': signature } }], SIMPLESIGNING);
}

describe('OCI signature rules against stub registries', () => {
  const api = new FakeRegistry();
  const tags = new FakeRegistry();
  const empty = new FakeRegistry();
  let a: TestAirlock;
  const bundle = fixtureBundle();
  const sig = artifact(subject, [{ bytes: bundle, mediaType: BUNDLE_MT }]);
  const sbom = artifact(subject, [{ bytes: Buffer.from('{"spdxVersion":"SPDX-2.3"}'), mediaType: 'application/spdx+json' }], 'application/spdx+json');
  const huge = randomBytes(5 * 1024 * 1024);
  const hugeSig = artifact(subject, [{ bytes: huge, mediaType: BUNDLE_MT }]);
  const liarSig = artifact(subject, [{ bytes: huge, mediaType: BUNDLE_MT, size: 2000 }]);
  const malformed = artifact(subject, [{ bytes: Buffer.from(`{"mediaType":"${BUNDLE_MT}","verificationMaterial":7`), mediaType: BUNDLE_MT }]);
  const amd = makeImage([randomBytes(300)], 'amd64');
  const arm = makeImage([randomBytes(300)], 'arm64');
  const multi = makeIndex([
    { img: amd, arch: 'amd64' },
    { img: arm, arch: 'arm64' },
  ]);
  const multiImg: Image = { manifest: multi.bytes, digest: multi.digest, mediaType: multi.mediaType, config: Buffer.from('{}'), layers: [] };
  const get = (path: string, method = 'GET') => fetch(`${a.url}/v2/${path}`, { method, headers: { accept: ACCEPT } });
  const rule = (repo: string, digest: string, signers: string, require = 'signed') =>
    `      - repository: ${repo}\n        digests: ["${digest}"]\n        require: ${require}\n        signers: [${signers}]\n`;

  beforeAll(async () => {
    tags.referrersMode = 'none';
    empty.referrersMode = 'empty200';
    for (const r of [api, tags, empty]) await r.start();
    // The referrers API lists the bundle (and an SBOM, not a signature).
    api.push('cosign/app', subject);
    for (const s of [sig, sbom]) api.push('cosign/app', s);
    api.referrers.set(`cosign/app@${SUBJECT_DIGEST}`, [sbom, sig]);
    api.referrerTypes.set(sig.digest, BUNDLE_MT);
    api.referrerTypes.set(sbom.digest, 'application/spdx+json');
    // Bad input behind the referrers API.
    for (const [repo, s] of [
      ['bad/huge', hugeSig],
      ['bad/liar', liarSig],
      ['bad/malformed', malformed],
    ] as const) {
      api.push(repo, subject);
      api.push(repo, s);
      api.referrers.set(`${repo}@${SUBJECT_DIGEST}`, [s]);
      api.referrerTypes.set(s.digest, BUNDLE_MT);
    }
    api.push('bad/many', subject);
    const many = Array.from({ length: 10_000 }, (_, i) => ({ mediaType: OCI_MANIFEST, digest: digestOf(`junk ${i}`), size: 500, artifactType: BUNDLE_MT }));
    api.referrersRaw.set(
      `bad/many@${SUBJECT_DIGEST}`,
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: many })),
    );
    pushTagSigned(tags, 'cosign/app', subject, sig);
    pushTagSigned(empty, 'cosign/app', subject, sig);
    pushTagSigned(empty, 'cosign/none', subject);
    // Legacy .sig, key-signed: the subject; an index (covering its platforms); the same under a keyless rule.
    for (const [repo, subj] of [
      ['legacy/key', subject],
      ['legacy/cert', subject],
    ] as const) {
      tags.push(repo, subj);
      tags.push(repo, legacySig(subj), `sha256-${subj.digest.slice(7)}.sig`);
    }
    tags.pushIndex('legacy/multi', multi, [amd, arm]);
    tags.push('legacy/multi', legacySig(multiImg), `sha256-${multi.digest.slice(7)}.sig`);
    tags.pushIndex('legacy/unsignedmulti', multi, [amd, arm]);
    tags.push('legacy/other', subject);
    tags.push('legacy/other', legacySig(subject, multi.digest), `sha256-${SUBJECT_DIGEST.slice(7)}.sig`);
    const pem = PUB.trim()
      .split('\n')
      .map((l) => `          ${l}`)
      .join('\n');
    a = await startAirlock(`
oci:
  default_registry: api.test
  registries:
    api.test: { url: "${api.url}", blob_hosts: ["127.0.0.1:${api.cdnPort}"] }
    tags.test: { url: "${tags.url}", blob_hosts: ["127.0.0.1:${tags.cdnPort}"] }
    empty.test: { url: "${empty.url}", blob_hosts: ["127.0.0.1:${empty.cdnPort}"] }
policy:
  signing:
    signers:
      cody: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }
      acme-key:
        key: |
${pem}
  oci:
    allow:
${rule('api.test/cosign/app', SUBJECT_DIGEST, 'cody', 'attested')}${rule('tags.test/cosign/app', SUBJECT_DIGEST, 'cody', 'attested')}${rule('empty.test/cosign/app', SUBJECT_DIGEST, 'cody', 'attested')}${rule('empty.test/cosign/none', SUBJECT_DIGEST, 'cody')}${rule('api.test/bad/many', SUBJECT_DIGEST, 'cody')}${rule('api.test/bad/huge', SUBJECT_DIGEST, 'cody')}${rule('api.test/bad/liar', SUBJECT_DIGEST, 'cody')}${rule('api.test/bad/malformed', SUBJECT_DIGEST, 'cody')}${rule('tags.test/legacy/key', SUBJECT_DIGEST, 'acme-key')}${rule('tags.test/legacy/cert', SUBJECT_DIGEST, 'cody')}${rule('tags.test/legacy/multi', multi.digest, 'acme-key')}${rule('tags.test/legacy/unsignedmulti', multi.digest, 'acme-key')}${rule('tags.test/legacy/other', SUBJECT_DIGEST, 'acme-key')}
`);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    for (const r of [api, tags, empty]) await r.stop();
  });

  const denied = async (repo: string) => (await records(a, `ecosystem=oci&name=${repo}&decision=deny`)).filter((r) => r.filename === 'manifest');

  it('referrers API: verifies the bundle it lists, serves the image, and warm GET/HEAD pay no upstream lookup', async () => {
    const res = await get(`api.test/cosign/app/manifests/${SUBJECT_DIGEST}`);
    expect(res.status).toBe(200);
    expect(api.count(`referrers:${SUBJECT_DIGEST}`)).toBe(1);
    // The SBOM is listed with another artifactType: not fetched.
    expect(api.count(`manifest:cosign/app:${sbom.digest}`)).toBe(0);
    for (const method of ['GET', 'HEAD', 'GET']) expect((await get(`api.test/cosign/app/manifests/${SUBJECT_DIGEST}`, method)).status).toBe(200);
    expect(api.count(`referrers:${SUBJECT_DIGEST}`)).toBe(1);
    expect(api.count(`manifest:cosign/app:${sig.digest}`)).toBe(1);
  });

  it('referrers API: Airlock serves the upstream list (Link-free) and the signature objects listed', async () => {
    const res = await get(`api.test/cosign/app/referrers/${SUBJECT_DIGEST}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('link')).toBeNull();
    const idx = (await res.json()) as { manifests: { digest: string }[] };
    expect(idx.manifests.map((m) => m.digest)).toEqual([sbom.digest, sig.digest]);
    expect((await get(`api.test/cosign/app/manifests/${sig.digest}`)).status).toBe(200);
    const b = await get(`api.test/cosign/app/blobs/${digestOf(bundle)}`);
    expect(Buffer.from(await b.arrayBuffer()).equals(bundle)).toBe(true);
    const filtered = await get(`api.test/cosign/app/referrers/${SUBJECT_DIGEST}?artifactType=${encodeURIComponent(BUNDLE_MT)}`);
    expect(((await filtered.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([sig.digest]);
    expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
  });

  it("referrers API paging: the upstream's next page is linked at Airlock and asked for with the same query", async () => {
    api.referrersLink.set(`cosign/app@${SUBJECT_DIGEST}`, `</v2/cosign/app/referrers/${SUBJECT_DIGEST}?n=2&last=${sig.digest}>; rel="next"`);
    try {
      const res = await get(`api.test/cosign/app/referrers/${SUBJECT_DIGEST}`);
      expect(res.status).toBe(200);
      const next = `/v2/api.test/cosign/app/referrers/${SUBJECT_DIGEST}?n=2&last=${encodeURIComponent(sig.digest)}`;
      expect(res.headers.get('link')).toBe(`<${next}>; rel="next"`);
      expect((await fetch(`${a.url}${next}`)).status).toBe(200);
      expect(api.referrersQueries.at(-1)).toBe(`?n=2&last=${encodeURIComponent(sig.digest)}`);
    } finally {
      api.referrersLink.clear();
    }
  });

  it('tags only (referrers 404): the tag index is found and verified; Airlock answers referrers from it', async () => {
    expect((await get(`tags.test/cosign/app/manifests/${SUBJECT_DIGEST}`)).status).toBe(200);
    const res = await get(`tags.test/cosign/app/referrers/${SUBJECT_DIGEST}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([sig.digest]);
    const tag = await get(`tags.test/cosign/app/manifests/sha256-${SUBJECT_DIGEST.slice(7)}`);
    expect(tag.status).toBe(200);
    expect(digestOf(Buffer.from(await tag.arrayBuffer()))).toBe(tagIndex([sig]).digest);
  });

  it('an empty 200 on the referrers path: the tag schema is still looked at; nothing found is a 404, never an empty 200', async () => {
    expect((await get(`empty.test/cosign/app/manifests/${SUBJECT_DIGEST}`)).status).toBe(200);
    const listed = await get(`empty.test/cosign/app/referrers/${SUBJECT_DIGEST}`);
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { manifests: unknown[] }).manifests).toHaveLength(1);
    const none = await get(`empty.test/cosign/none/manifests/${SUBJECT_DIGEST}`);
    expect(none.status).toBe(403);
    expect(((await none.json()) as { errors: { code: string; message: string }[] }).errors[0]).toMatchObject({
      code: 'DENIED',
      message: expect.stringMatching(/requires a signature/),
    });
    expect((await denied('empty.test/cosign/none'))[0]).toMatchObject({ code: 'unsigned', rule: 'oci.allow[3]' });
    const list = await get(`empty.test/cosign/none/referrers/${SUBJECT_DIGEST}`);
    expect(list.status).toBe(404);
  });

  it('a referrers list of 10,000 entries: bounded lookups, refused, and at most 256 entries served', async () => {
    const t0 = Date.now();
    const res = await get(`api.test/bad/many/manifests/${SUBJECT_DIGEST}`);
    expect(res.status).toBe(403);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const fetched = [...api.hits.keys()].filter((k) => k.startsWith('manifest:bad/many:sha256:') && k !== `manifest:bad/many:${SUBJECT_DIGEST}`);
    expect(fetched.length).toBeLessThanOrEqual(32);
    expect((await denied('api.test/bad/many'))[0].code).toBe('bad_signature');
    const list = await get(`api.test/bad/many/referrers/${SUBJECT_DIGEST}`);
    expect(((await list.json()) as { manifests: unknown[] }).manifests).toHaveLength(256);
  });

  it('a referrers list longer than a page is served in pages of 256, each linked at Airlock, until every entry was served once', async () => {
    const first = `/v2/api.test/bad/many/referrers/${SUBJECT_DIGEST}`;
    const seen: string[] = [];
    const queries = api.referrersQueries.length;
    let next: string | null = first;
    let pages = 0;
    while (next) {
      const res: Response = await fetch(`${a.url}${next}`, { headers: { accept: ACCEPT } });
      expect(res.status).toBe(200);
      const page = ((await res.json()) as { manifests: { digest: string }[] }).manifests;
      expect(page.length).toBeLessThanOrEqual(256);
      seen.push(...page.map((m) => m.digest));
      const link: string | null = res.headers.get('link');
      next = link ? /^<(\/v2\/api\.test\/bad\/many\/referrers\/[^>]+)>; rel="next"$/.exec(link)![1] : null;
      expect(++pages).toBeLessThanOrEqual(40);
    }
    expect(pages).toBe(40);
    expect(seen).toHaveLength(10_000);
    expect(new Set(seen).size).toBe(10_000);
    expect(seen[256]).toBe(digestOf('junk 256'));
    // The page parameter is Airlock's: never passed upstream.
    expect(api.referrersQueries.slice(queries).every((q) => !q.includes('airlock'))).toBe(true);
    // Filtered: pages of what matches; a bad page number is a one-line 400.
    const filtered = await get(`api.test/bad/many/referrers/${SUBJECT_DIGEST}?artifactType=${encodeURIComponent(BUNDLE_MT)}&airlock.from=9984`);
    expect(((await filtered.json()) as { manifests: unknown[] }).manifests).toHaveLength(16);
    expect(filtered.headers.get('link')).toBeNull();
    const bad = await get(`api.test/bad/many/referrers/${SUBJECT_DIGEST}?airlock.from=-1`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { code: string }[] }).errors[0].code).toBe('PAGINATION_NUMBER_INVALID');
  });

  it('a multi-megabyte signature object is not fetched, one that lies about its size is cut, a malformed bundle refused', async () => {
    expect((await get(`api.test/bad/huge/manifests/${SUBJECT_DIGEST}`)).status).toBe(403);
    expect(api.count(`blob:${digestOf(huge)}`)).toBe(0);
    expect((await denied('api.test/bad/huge'))[0].reason).toMatch(/over the 1048576-byte bound/);
    expect((await get(`api.test/bad/liar/manifests/${SUBJECT_DIGEST}`)).status).toBe(403);
    expect((await denied('api.test/bad/liar'))[0].reason).toMatch(/exceeds 1048576 bytes/);
    expect((await get(`api.test/bad/malformed/manifests/${SUBJECT_DIGEST}`)).status).toBe(403);
    expect((await denied('api.test/bad/malformed'))[0]).toMatchObject({ code: 'bad_signature', reason: expect.stringMatching(/not JSON/) });
  });

  it('legacy .sig: a key signature is verified with node:crypto; a keyless rule says it is unsupported; another digest is refused', async () => {
    expect((await get(`tags.test/legacy/key/manifests/${SUBJECT_DIGEST}`)).status).toBe(200);
    const served = (await records(a, 'ecosystem=oci&name=tags.test/legacy/key&decision=allow')).find((r) => r.sha256 === SUBJECT_DIGEST.slice(7));
    expect(JSON.stringify(served.signature)).toMatch(/key:[0-9a-f]{12}/);
    // The .sig tag of an approved subject is served (cosign verify downstream); other tags of that shape are not.
    expect((await get(`tags.test/legacy/key/manifests/sha256-${SUBJECT_DIGEST.slice(7)}.sig`)).status).toBe(200);
    expect((await get(`tags.test/legacy/key/manifests/sha256-${SUBJECT_DIGEST.slice(7)}.att`)).status).toBe(403);
    expect((await get(`tags.test/legacy/cert/manifests/${SUBJECT_DIGEST}`)).status).toBe(403);
    expect((await denied('tags.test/legacy/cert'))[0]).toMatchObject({ code: 'bad_signature', reason: expect.stringMatching(/signed with a certificate/) });
    expect((await get(`tags.test/legacy/other/manifests/${SUBJECT_DIGEST}`)).status).toBe(403);
    expect((await denied('tags.test/legacy/other'))[0].reason).toMatch(new RegExp(`names ${multi.digest}`));
  });

  it('a platform manifest under a verified index is covered; under an unsigned one it is refused', async () => {
    expect((await get(`tags.test/legacy/multi/manifests/${multi.digest}`)).status).toBe(200);
    expect((await get(`tags.test/legacy/multi/manifests/${amd.digest}`)).status).toBe(200);
    expect((await get(`tags.test/legacy/unsignedmulti/manifests/${multi.digest}`)).status).toBe(403);
    // The child is not approved at all until its index was (it is reached through it).
    expect((await get(`tags.test/legacy/unsignedmulti/manifests/${amd.digest}`)).status).toBe(403);
    expect((await get(`tags.test/legacy/unsignedmulti/blobs/${digestOf(amd.layers[0])}`)).status).toBe(403);
    expect((await get(`tags.test/legacy/multi/blobs/${digestOf(amd.layers[0])}`)).status).toBe(200);
    expect((await denied('tags.test/legacy/unsignedmulti')).every((r) => r.code === 'unsigned' || r.code === 'digest_not_pinned')).toBe(true);
  });
});
