import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex, sha256, type FakeFile } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';
import { buildDist, pip } from '../helpers/pip.js';

/**
 * PEP 740 provenance through Airlock with the real pip (issue 26, item 4): the signed dists of
 * test/fixtures/signatures/pypi/ (made and attested by their real publishers) served by a local
 * index with an integrity API, and `require: attested` rules with their trusted publishers.
 */
const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
const SHIM = new URL('../helpers/build_shim/', import.meta.url).pathname;
const read = (f: string) => readFileSync(join(FIX, f));
/** A single attestation as PyPI serves it: a provenance object with one bundle. */
const wrap = (attestation: Buffer, publisher: object) =>
  Buffer.from(JSON.stringify({ version: 1, attestation_bundles: [{ publisher, attestations: [JSON.parse(attestation.toString('utf8'))] }] }));

const PA = 'pypi_attestations-0.0.19.tar.gz';
const GL = 'gitlab_oidc_project-0.0.3.tar.gz';
const RFC = 'rfc8785-0.1.2-py3-none-any.whl';
const signed = {
  pa: (): FakeFile => ({ filename: PA, bytes: read(PA), provenance: read(`${PA}.provenance`) }),
  gl: (): FakeFile => ({
    filename: GL,
    bytes: read(GL),
    provenance: wrap(read(`${GL}.publish.attestation`), { kind: 'GitLab', repository: 'facutuesca/gitlab-oidc-project', workflow_filepath: '.gitlab-ci.yml' }),
  }),
  rfc: (): FakeFile => ({
    filename: RFC,
    bytes: read(RFC),
    provenance: wrap(read(`${RFC}.publish.attestation`), { kind: 'GitHub', repository: 'trailofbits/rfc8785.py', workflow: 'release.yml', environment: null }),
  }),
};
const flip = (b: Buffer, at = b.length >> 1) => Buffer.concat([b.subarray(0, at), Buffer.from([b[at] ^ 0x01]), b.subarray(at + 1)]);

const RULES = {
  pa: `{ name: pypi-attestations, require: attested, publisher: { github: trailofbits/pypi-attestations, workflow: release.yml } }`,
  gl: `{ name: gitlab-oidc-project, require: attested, publisher: { gitlab: facutuesca/gitlab-oidc-project, workflow: .gitlab-ci.yml } }`,
  rfc: `{ name: rfc8785, require: attested, publisher: { github: trailofbits/rfc8785.py, workflow: release.yml } }`,
};
const SOME = `publisher: { github: acme/lib, workflow: release.yml }`;

async function airlock(up: FakeIndex, rules: string[], extra = ''): Promise<TestAirlock> {
  return startAirlock(`${extra}
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]
policy:
  pypi:
    allow:
${rules.map((r) => `      - ${r}`).join('\n')}
`);
}

/** pip download of one pinned file (sdists through the metadata stand-ins of helpers/build_shim, without build isolation). */
async function download(a: TestAirlock, req: string, sdist = true) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-prov-'));
  const kind = sdist ? ['--no-binary', ':all:', '--no-build-isolation'] : ['--only-binary', ':all:'];
  const r = await pip(['download', '--retries', '0', '--index-url', `${a.url}/pypi/simple/`, '--no-deps', ...kind, '-d', dir, req], { PYTHONPATH: SHIM });
  return { ...r, dir };
}

async function lastRow(a: TestAirlock, name: string) {
  const rows = await records(a, `name=${name}`);
  return rows[0];
}

describe('PEP 740 provenance with the real pip', () => {
  const up = new FakeIndex();
  const evil = new FakeIndex();
  let good: TestAirlock;
  let wrong: TestAirlock;
  let bad: TestAirlock;
  const plain = buildDist({ name: 'plainlib', version: '1.0' });
  const nosig = buildDist({ name: 'nosig', version: '1.0' });
  const hugesig = buildDist({ name: 'hugesig', version: '1.0' });
  const junksig = buildDist({ name: 'junksig', version: '1.0' });

  beforeAll(async () => {
    await up.start();
    await evil.start();
    up.add('pypi-attestations', signed.pa())
      .add('gitlab-oidc-project', signed.gl())
      .add('rfc8785', signed.rfc())
      .add('plainlib', plain)
      .add('nosig', nosig)
      .add('hugesig', { ...hugesig, provenance: Buffer.alloc(6 << 20, 0x20), provenanceChunked: true })
      .add('junksig', { ...junksig, provenance: Buffer.from('{"version": 1, "attestation_bundles": [{"attestations": [{"envelope": 7}]}]}') });
    // Upstream tampering: a dist with one flipped byte (the page names the tampered bytes' sha256, so only the attestation can tell), an edited provenance.
    const pa = signed.pa();
    const tampered = flip(pa.bytes);
    const gl = signed.gl();
    const prov = JSON.parse(gl.provenance!.toString('utf8'));
    const att = prov.attestation_bundles[0].attestations[0];
    att.envelope.statement = Buffer.from(Buffer.from(att.envelope.statement, 'base64').toString('utf8').replace('0.0.3', '0.0.4')).toString('base64');
    evil.format = 'html';
    evil.add('pypi-attestations', { ...pa, bytes: tampered }).add('gitlab-oidc-project', { ...gl, provenance: Buffer.from(JSON.stringify(prov)) });
    good = await airlock(
      up,
      [RULES.pa, RULES.gl, RULES.rfc, '{ name: plainlib }', ...['nosig', 'hugesig', 'junksig'].map((n) => `{ name: ${n}, require: attested, ${SOME} }`)],
      'public_url: https://airlock.example.test/\n',
    );
    wrong = await airlock(up, [
      `{ name: pypi-attestations, require: attested, publisher: { github: trailofbits/sigstore-python, workflow: release.yml } }`,
      `{ name: gitlab-oidc-project, require: attested, publisher: { gitlab: facutuesca/gitlab-oidc-project, workflow: release.yml } }`,
    ]);
    bad = await airlock(evil, [RULES.pa, RULES.gl], 'public_url: https://airlock.example.test/\n');
  }, 60_000);
  afterAll(async () => {
    for (const a of [good, wrong, bad]) await a?.stop();
    await up.stop();
    await evil.stop();
  });

  it('serves an sdist attested by its GitHub publisher, and its row names the signer; warm, no upstream call', async () => {
    const r = await download(good, 'pypi-attestations==0.0.19');
    expect(r.code, r.out).toBe(0);
    expect(readFileSync(join(r.dir, PA)).equals(read(PA))).toBe(true);
    const row = await lastRow(good, 'pypi-attestations');
    expect(row.decision).toBe('allow');
    const sig = JSON.parse(row.signature);
    expect(sig).toMatchObject({ ok: true, publisher: { kind: 'github', repository: 'trailofbits/pypi-attestations', workflow: 'release.yml' } });
    expect(sig.identity).toContain('https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@');
    expect(sig.bundleDigest).toBe(`sha256:${sha256(read(`${PA}.provenance`))}`);
    const path = `/integrity/pypi-attestations/0.0.19/${PA}/provenance`;
    expect(up.count(path)).toBe(1);
    const again = await download(good, 'pypi-attestations==0.0.19');
    expect(again.code, again.out).toBe(0);
    expect(up.count(path)).toBe(1);
  });

  it('serves an sdist attested by its GitLab publisher', async () => {
    const r = await download(good, 'gitlab-oidc-project==0.0.3');
    expect(r.code, r.out).toBe(0);
    expect(existsSync(join(r.dir, GL))).toBe(true);
    const sig = JSON.parse((await lastRow(good, 'gitlab-oidc-project')).signature);
    expect(sig.publisher).toMatchObject({ kind: 'gitlab', repository: 'facutuesca/gitlab-oidc-project', workflow: '.gitlab-ci.yml' });
  });

  it('refuses a wheel whose attestation was signed by a person, not a trusted publisher', async () => {
    const r = await download(good, 'rfc8785==0.1.2', false);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('policy rule pypi.allow[2] requires a PEP 740 attestation from GitHub trailofbits/rfc8785.py');
    const row = await lastRow(good, 'rfc8785');
    expect(row).toMatchObject({ decision: 'deny', code: 'bad_signature', rule: 'pypi.allow[2]', filename: RFC });
    expect(existsSync(join(r.dir, RFC))).toBe(false);
  });

  it('refuses the wrong publisher and the wrong workflow, naming them in pip and in the row', async () => {
    const r = await download(wrong, 'pypi-attestations==0.0.19');
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('published from repository trailofbits/pypi-attestations, expected trailofbits/sigstore-python');
    expect(await lastRow(wrong, 'pypi-attestations')).toMatchObject({ code: 'bad_signature', decision: 'deny', rule: 'pypi.allow[0]' });
    const g = await download(wrong, 'gitlab-oidc-project==0.0.3');
    expect(g.code).not.toBe(0);
    expect(g.out).toContain('published by workflow .gitlab-ci.yml, expected release.yml');
    const row = await lastRow(wrong, 'gitlab-oidc-project');
    expect(row).toMatchObject({ code: 'bad_signature', rule: 'pypi.allow[1]' });
    expect(row.reason).toContain('published by workflow .gitlab-ci.yml, expected release.yml');
  });

  it('refuses a file with no provenance as unsigned', async () => {
    const r = await download(good, 'nosig==1.0', false);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('has no provenance for it');
    expect(await lastRow(good, 'nosig')).toMatchObject({ code: 'unsigned', decision: 'deny', rule: 'pypi.allow[4]' });
  });

  it('refuses a huge and a malformed provenance in bounded time', async () => {
    const t0 = Date.now();
    const h = await download(good, 'hugesig==1.0', false);
    expect(h.code).not.toBe(0);
    expect(h.out).toContain('byte limit');
    expect(await lastRow(good, 'hugesig')).toMatchObject({ code: 'bad_signature' });
    const j = await download(good, 'junksig==1.0', false);
    expect(j.code).not.toBe(0);
    expect(j.out).toContain('no verification_material');
    expect(await lastRow(good, 'junksig')).toMatchObject({ code: 'bad_signature' });
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('refuses a dist with a flipped byte and an edited provenance', async () => {
    const r = await download(bad, 'pypi-attestations==0.0.19');
    expect(r.code).not.toBe(0);
    expect(await lastRow(bad, 'pypi-attestations')).toMatchObject({ code: 'bad_signature', sha256: sha256(flip(read(PA))) });
    const g = await download(bad, 'gitlab-oidc-project==0.0.3');
    expect(g.code).not.toBe(0);
    expect(g.out).toContain('its provenance fails');
    expect(await lastRow(bad, 'gitlab-oidc-project')).toMatchObject({ code: 'bad_signature' });
    // Refused before the first byte, on HEAD too: nothing was fetched from the file URL.
    expect(evil.count(`/files/${PA}`) + evil.count(`/files/${GL}`)).toBe(0);
    const head = await fetch(`${bad.url}/pypi/files/gitlab-oidc-project/${GL}`, { method: 'HEAD' });
    expect(head.status).toBe(403);
  });

  it('links the verified provenance from JSON and HTML pages with an https base, and serves it as fetched', async () => {
    const json = await (await fetch(`${good.url}/pypi/simple/pypi-attestations/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })).json();
    const url = `https://airlock.example.test/pypi/integrity/pypi-attestations/0.0.19/${PA}/provenance`;
    expect(json.files[0].provenance).toBe(url);
    const html = await (await fetch(`${good.url}/pypi/simple/pypi-attestations/`, { headers: { accept: 'text/html' } })).text();
    expect(html).toContain(`data-provenance="${url}"`);
    // A file whose rule requires nothing has no provenance link.
    const plainPage = await (await fetch(`${good.url}/pypi/simple/plainlib/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })).json();
    expect(plainPage.files[0]).not.toHaveProperty('provenance');
    const served = await fetch(`${good.url}/pypi/integrity/pypi-attestations/0.0.19/${PA}/provenance`);
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toBe('application/vnd.pypi.integrity.v1+json');
    expect(Buffer.from(await served.arrayBuffer()).equals(read(`${PA}.provenance`))).toBe(true);
    const refused = await fetch(`${bad.url}/pypi/integrity/gitlab-oidc-project/0.0.3/${GL}/provenance`);
    expect(refused.status).toBe(403);
  });

  it('links nothing without an https base URL', async () => {
    const json = await (await fetch(`${wrong.url}/pypi/simple/pypi-attestations/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })).json();
    expect(json.files[0]).not.toHaveProperty('provenance');
    const html = await (await fetch(`${wrong.url}/pypi/simple/pypi-attestations/`, { headers: { accept: 'text/html' } })).text();
    expect(html).not.toContain('data-provenance');
  });
});
