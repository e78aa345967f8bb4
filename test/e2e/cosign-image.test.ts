import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { bundleObjects, fixtureBundle, pushSigned, sha, subjectImage, SUBJECT_DIGEST } from '../helpers/cosign-fixture.js';
import { records } from '../helpers/http.js';
import { haveTool, RealRegistry, skopeo } from '../helpers/oci-tools.js';

/**
 * Issue 26, images: the cosign v3 fixture's subject rebuilt byte for byte and pushed to Debian's
 * docker-registry (distribution 2.8: no referrers API, so the bundle is found through the
 * referrers tag schema, an index at tag sha256-<hex>), pulled through Airlock with the real skopeo.
 */
describe('cosign-signed images through Airlock, from a real distribution registry', () => {
  const reg = new RealRegistry();
  let a: TestAirlock;
  const subject = subjectImage();
  // Another image (its config differs), carrying the fixture's bundle, which names the subject above.
  const other = subjectImage('{"architecture":"amd64","created":"0001-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":null},"config":{}}');
  const bundle = fixtureBundle();
  const objs = bundleObjects(bundle, subject.manifest);
  const out = () => mkdtempSync(join(tmpdir(), 'airlock-pull-'));
  const via = (ref: string) => `docker://127.0.0.1:${a.port}/registry.test/${ref}`;
  const copy = (ref: string) => skopeo(['copy', '--preserve-digests', '--src-tls-verify=false', via(ref), `oci:${out()}:pulled`]);

  beforeAll(async () => {
    for (const tool of ['skopeo', 'docker-registry']) {
      if (!haveTool(tool)) throw new Error(`${tool} is not installed: .ci/run installs it with apt-get (see docs/testing.md)`);
    }
    await reg.start();
    const base = `http://127.0.0.1:${reg.port}`;
    await pushSigned(base, 'cosign/subject', subject, bundle);
    await pushSigned(base, 'cosign/wrongid', subject, bundle);
    await pushSigned(base, 'cosign/unsigned', subject);
    await pushSigned(base, 'cosign/other', other, bundle);
    a = await startAirlock(`
oci:
  default_registry: registry.test
  registries:
    registry.test:
      url: http://127.0.0.1:${reg.port}
policy:
  signing:
    signers:
      cody: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }
      someone: { issuer: https://github.com/login/oauth, subject: someone@soyland.com }
  oci:
    allow:
      - repository: registry.test/cosign/subject
        digests: ["${SUBJECT_DIGEST}"]
        require: attested
        signers: [cody]
      - repository: registry.test/cosign/wrongid
        digests: ["${SUBJECT_DIGEST}"]
        require: attested
        signers: [someone]
      - repository: registry.test/cosign/unsigned
        digests: ["${SUBJECT_DIGEST}"]
        require: signed
        signers: [cody]
      - repository: registry.test/cosign/other
        digests: ["${other.manifest.digest}"]
        require: attested
        signers: [cody]
`);
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  it('rebuilds the fixture subject byte for byte', () => {
    expect(subject.manifest.digest).toBe(SUBJECT_DIGEST);
  });

  it('serves the attested image to skopeo, and the row carries the signer', async () => {
    const r = await copy(`cosign/subject@${SUBJECT_DIGEST}`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = await records(a, 'ecosystem=oci&name=registry.test/cosign/subject&decision=allow');
    const row = rows.find((x) => x.filename === 'manifest' && x.sha256 === SUBJECT_DIGEST.slice(7));
    expect(row).toBeTruthy();
    const sig = typeof row.signature === 'string' ? JSON.parse(row.signature) : row.signature;
    expect(sig).toMatchObject({ ok: true, identity: 'https://github.com/login/oauth cody@soyland.com', bundleDigest: sha(bundle) });
    expect(sig.tlogIndex).toMatch(/^\d+$/);
  });

  it('serves the signature objects for downstream verification: the tag, the referrers list from it, the bundle unchanged', async () => {
    const tag = await skopeo(['inspect', '--raw', '--tls-verify=false', via(`cosign/subject:${objs.tag}`)]);
    expect(tag.code).toBe(0);
    expect(sha(tag.stdout)).toBe(objs.index.digest);
    const list = await fetch(`${a.url}/v2/registry.test/cosign/subject/referrers/${SUBJECT_DIGEST}`);
    expect(list.status).toBe(200);
    const idx = (await list.json()) as { manifests: { digest: string; artifactType: string }[] };
    expect(idx.manifests).toEqual([expect.objectContaining({ digest: objs.manifest.digest, artifactType: objs.layer.mediaType })]);
    const man = await fetch(`${a.url}/v2/registry.test/cosign/subject/manifests/${objs.manifest.digest}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(man.status).toBe(200);
    expect(sha(Buffer.from(await man.arrayBuffer()))).toBe(objs.manifest.digest);
    const blob = await fetch(`${a.url}/v2/registry.test/cosign/subject/blobs/${objs.layer.digest}`);
    expect(blob.status).toBe(200);
    expect(Buffer.from(await blob.arrayBuffer()).equals(readFileSync('/work/shared/fixtures/signatures/oci/oci-attestation.sigstore.json'))).toBe(true);
    // The signature tag of an image that is not approved is not served.
    const notApproved = await fetch(`${a.url}/v2/registry.test/cosign/subject/manifests/sha256-${'0'.repeat(64)}`);
    expect(notApproved.status).toBe(403);
  });

  it('refuses an attestation by another identity: DENIED, the reason, a bad_signature row (HEAD too)', async () => {
    const r = await copy(`cosign/wrongid@${SUBJECT_DIGEST}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/denied/i);
    expect(r.stderr).toMatch(/subject is cody@soyland.com, expected someone@soyland.com/);
    const head = await fetch(`${a.url}/v2/registry.test/cosign/wrongid/manifests/${SUBJECT_DIGEST}`, { method: 'HEAD' });
    expect(head.status).toBe(403);
    const rows = await records(a, 'ecosystem=oci&name=registry.test/cosign/wrongid&decision=deny');
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows.every((x) => x.code === 'bad_signature' && x.rule === 'oci.allow[1]' && /someone@soyland.com/.test(x.reason))).toBe(true);
    expect(JSON.stringify(rows[0].signature)).toContain(sha(bundle).slice(7));
  });

  it('refuses an image with no signature as unsigned', async () => {
    const r = await copy(`cosign/unsigned@${SUBJECT_DIGEST}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/oci.allow\[2\] requires a signature/);
    const rows = await records(a, 'ecosystem=oci&name=registry.test/cosign/unsigned&decision=deny');
    expect(rows.some((x) => x.code === 'unsigned' && /found none/.test(x.reason))).toBe(true);
    // Its config blob was linked when the manifest was fetched to be judged: still not served.
    const blob = await fetch(`${a.url}/v2/registry.test/cosign/unsigned/blobs/${subject.config.digest}`);
    expect(blob.status).toBe(403);
    const blobRows = await records(a, 'ecosystem=oci&name=registry.test/cosign/unsigned&decision=deny');
    expect(blobRows.some((x) => x.filename === 'blob' && x.code === 'unsigned')).toBe(true);
    // Nothing to list: the referrers endpoint answers 404, never an empty 200.
    const list = await fetch(`${a.url}/v2/registry.test/cosign/unsigned/referrers/${SUBJECT_DIGEST}`);
    expect(list.status).toBe(404);
  });

  it('refuses an image whose only bundle names another digest', async () => {
    const r = await copy(`cosign/other@${other.manifest.digest}`);
    expect(r.code).not.toBe(0);
    const rows = await records(a, 'ecosystem=oci&name=registry.test/cosign/other&decision=deny');
    const row = rows.find((x) => x.sha256 === other.manifest.digest.slice(7));
    expect(row.code).toBe('bad_signature');
    expect(row.reason).toMatch(new RegExp(other.manifest.digest.slice(7, 20)));
  });
});
