import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMeta } from '../../src/backends.js';
import { loadConfig } from '../../src/config/load.js';
import { airlockCli } from '../helpers/cli.js';
import { BUNDLE_MT, bundleObjects, fixtureBundle, subjectImage, SUBJECT_DIGEST } from '../helpers/cosign-fixture.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeRegistry, type Image } from '../helpers/fake-registry.js';
import { diff } from '../helpers/line-diff.js';
import { FakeHub, hfUpstream } from '../helpers/fake-hub.js';
import { fixtureFiles, MODE_DIR, MODELS } from '../helpers/signed-models.js';

/**
 * `airlock pin` records the verified identity beside each pin (issue 26, item 6), through the
 * built CLI against local upstreams with the real signed fixtures: where a signing rule applies,
 * the pin is verified as the server would verify it, its signer recorded in the signers table
 * (continuity's first signer) and named in one comment line above the pin's entry (no other line
 * changes). A pin that does not verify is pinned with a warning naming why the server will refuse it.
 */
const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
const PA = 'pypi_attestations-0.0.19.tar.gz';
const PUBLISHER = 'github:trailofbits/pypi-attestations release.yml';
const CODY = 'https://github.com/login/oauth cody@soyland.com';
const today = new Date().toISOString().slice(0, 10);

describe('airlock pin records the verified signer', () => {
  const pub = new FakeIndex();
  const reg = new FakeRegistry();
  let dir: string;
  let config: string;
  let policyFile: string;
  let configText = '';
  const policyText = `# Reviewed in Git.
policy:
  signing:
    signers:
      cody: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }
  pypi:
    allow:
      - name: pypi-attestations   # attested by its publisher
        versions: ">=0.0.1"
        require: attested
        publisher: { github: trailofbits/pypi-attestations, workflow: release.yml }
      - { name: certifi }
  oci:
    allow:
      - repository: reg.test/cosign/app
        digests: ["sha256:${'e'.repeat(64)}"]
        require: attested
        signers: [cody]
`;
  const fixture = subjectImage();
  const subject: Image = {
    manifest: fixture.manifest.bytes,
    digest: SUBJECT_DIGEST,
    mediaType: fixture.manifest.mediaType,
    config: fixture.config.bytes,
    layers: [],
  };
  const objs = bundleObjects(fixtureBundle(), fixture.manifest);
  const sig: Image = {
    manifest: objs.manifest.bytes,
    digest: objs.manifest.digest,
    mediaType: objs.manifest.mediaType,
    config: objs.empty.bytes,
    layers: [objs.layer.bytes],
  };

  beforeAll(async () => {
    await pub.start();
    await reg.start();
    pub
      .add('pypi-attestations', { filename: PA, bytes: readFileSync(join(FIX, PA)), provenance: readFileSync(join(FIX, `${PA}.provenance`)) })
      .add('pypi-attestations', { filename: 'pypi_attestations-0.0.20.tar.gz', bytes: Buffer.from('unsigned release') })
      .add('certifi', { filename: 'certifi-2024.7.4-py3-none-any.whl', bytes: Buffer.from('certifi') });
    for (const repo of ['cosign/app', 'team/base']) reg.push(repo, subject);
    reg.push('cosign/app', sig);
    reg.referrers.set(`cosign/app@${SUBJECT_DIGEST}`, [sig]);
    reg.referrerTypes.set(sig.digest, BUNDLE_MT);
    dir = mkdtempSync(join(tmpdir(), 'airlock-pin-signer-'));
    policyFile = join(dir, 'airlock.yaml');
    config = policyFile;
    configText = `data_dir: ${join(dir, 'data')}
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
oci:
  default_registry: reg.test
  registries:
    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }
${policyText}`;
    writeFileSync(config, configText);
  });
  afterAll(async () => {
    await pub.stop();
    await reg.stop();
  });

  const signer = async (eco: string, project: string) => {
    const meta = await openMeta(loadConfig(config), { create: true });
    try {
      return await meta.getSigner(eco, project);
    } finally {
      await meta.close();
    }
  };

  it('pypi: verifies the release at pin time, records its publisher and notes it above the new entry; nothing else changes', async () => {
    const before = readFileSync(policyFile, 'utf8');
    const r = await airlockCli(['pin', 'pypi', 'pypi-attestations==0.0.19', '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`attested: pypi-attestations==0.0.19 (1 file) by ${PUBLISHER} (recorded as the signer of pypi-attestations)\n`);
    const after = readFileSync(policyFile, 'utf8');
    const d = diff(before, after);
    expect(d.removed).toEqual([]);
    expect(d.added[0]).toBe(`      # airlock pin ${today}: pypi-attestations==0.0.19 (1 file) attested by ${PUBLISHER}`);
    // The new entry in the style of its neighbours (flow), the comment line above it.
    expect(d.added[1]).toMatch(/^ {6}- \{ name: pypi-attestations, versions: "==0\.0\.19", sha256: \[/);
    expect(d.added).toHaveLength(2);
    expect(after).toContain(sha256(readFileSync(join(FIX, PA))));
    expect(await signer('pypi', 'pypi-attestations')).toMatchObject({ identity: PUBLISHER, version: '0.0.19' });
  });

  it('pypi: a release without provenance is pinned with a warning that the server will refuse it; no note, nothing recorded for it', async () => {
    const before = readFileSync(policyFile, 'utf8');
    const r = await airlockCli(['pin', 'pypi', 'pypi-attestations==0.0.20', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^warning: pypi-attestations==0\.0\.20: the server will refuse it: pypi_attestations-0\.0\.20\.tar\.gz: policy rule pypi\.allow\[0\] requires a PEP 740 attestation .* no provenance/,
    );
    const d = diff(before, readFileSync(policyFile, 'utf8'));
    expect(d.removed).toEqual([]);
    expect(d.added.some((l) => l.includes('#'))).toBe(false);
    expect(await signer('pypi', 'pypi-attestations')).toMatchObject({ identity: PUBLISHER, version: '0.0.19' });
  });

  it('a pin under no signing rule prints and writes nothing more', async () => {
    const r = await airlockCli(['pin', 'pypi', 'certifi==2024.7.4', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/signed|attested/);
    expect(readFileSync(policyFile, 'utf8')).not.toMatch(/# airlock pin .*certifi/);
  });

  it('oci: verifies the digest through the referrers API, records the repository signer and notes it above the entry', async () => {
    const before = readFileSync(policyFile, 'utf8');
    const r = await airlockCli(['pin', 'oci', `reg.test/cosign/app@${SUBJECT_DIGEST}`, '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`attested: reg.test/cosign/app@${SUBJECT_DIGEST.slice(0, 19)}… by ${CODY} (recorded as the signer of reg.test/cosign/app)\n`);
    // The pin's own change (the digest added to the entry's flow list), and the comment line above the entry.
    const d = diff(before, readFileSync(policyFile, 'utf8'));
    expect(d.removed).toEqual([`        digests: ["sha256:${'e'.repeat(64)}"]`]);
    expect(d.added).toEqual([
      `      # airlock pin ${today}: reg.test/cosign/app@${SUBJECT_DIGEST.slice(0, 19)}… attested by ${CODY}`,
      `        digests: ["sha256:${'e'.repeat(64)}", "${SUBJECT_DIGEST}"]`,
    ]);
    expect(await signer('oci', 'reg.test/cosign/app')).toMatchObject({ identity: CODY, version: SUBJECT_DIGEST });
    // The same image where no rule asks for a signature: pinned as before.
    const plain = await airlockCli(['pin', 'oci', `reg.test/team/base@${SUBJECT_DIGEST}`, '--config', config]);
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
    expect(plain.stdout).not.toMatch(/attested|signed:/);
    expect(await signer('oci', 'reg.test/team/base')).toBeNull();
  });

  it('bulk: pin pypi -r records and notes the signer of each release a signing rule applies to', async () => {
    const meta = await openMeta(loadConfig(config), { create: true });
    await meta.setSigner('pypi', 'pypi-attestations', null);
    await meta.close();
    // An exact entry of the release that requires its attestation, with another file's hash: the bulk pin adds the real one.
    const exact = `      - name: pypi-attestations\n        versions: "==0.0.19"\n        sha256: ["${'f'.repeat(64)}"]\n        require: attested\n        publisher: { github: trailofbits/pypi-attestations, workflow: release.yml }\n`;
    writeFileSync(
      policyFile,
      configText.replace('versions: ">=0.0.1"', 'versions: "<0.0.19"').replace('      - { name: certifi }\n', `      - { name: certifi }\n${exact}`),
    );
    const before = readFileSync(policyFile, 'utf8');
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, 'pypi-attestations==0.0.19\n');
    const r = await airlockCli(['pin', 'pypi', '-r', req, '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`attested: pypi-attestations==0.0.19 (1 file) by ${PUBLISHER} (recorded as the signer of pypi-attestations)\n`);
    const d = diff(before, readFileSync(policyFile, 'utf8'));
    expect(d.removed).toEqual([`        sha256: ["${'f'.repeat(64)}"]`]);
    expect(d.added).toEqual([
      `      # airlock pin ${today}: pypi-attestations==0.0.19 (1 file) attested by ${PUBLISHER}`,
      `        sha256: ["${'f'.repeat(64)}", "${sha256(readFileSync(join(FIX, PA)))}"]`,
    ]);
    expect(await signer('pypi', 'pypi-attestations')).toMatchObject({ identity: PUBLISHER, version: '0.0.19' });
  });

  describe('hf', () => {
    const hub = new FakeHub();
    let hfConfig: string;
    const commits: Record<string, string> = {};
    beforeAll(async () => {
      await hub.start();
      commits.key = hub.commit('model', 'acme/key', fixtureFiles(MODE_DIR.key));
      commits.unsigned = hub.commit(
        'model',
        'acme/unsigned',
        fixtureFiles(MODE_DIR.key, (f) => f.filter((x) => x.path !== 'model.sig')),
      );
      hfConfig = join(dir, 'hf.yaml');
      writeFileSync(
        hfConfig,
        `data_dir: ${join(dir, 'hf-data')}
${hfUpstream(hub)}policy:
  signing:
    signers:
      acme-key: { key_file: ${join(MODELS, 'keys/signing-key-pub.pem')} }
  hf:
    allow:
      - repo: acme/key
        commits: ["${'0'.repeat(40)}"]
        require: signed
        signers: [acme-key]
      - repo: acme/unsigned
        commits: ["${'0'.repeat(40)}"]
        require: signed
        signers: [acme-key]
`,
      );
    });
    afterAll(() => hub.stop());

    it('verifies model.sig against the commit at pin time, records the key and notes it; an unsigned commit is pinned with a warning', async () => {
      const before = readFileSync(hfConfig, 'utf8');
      const r = await airlockCli(['pin', 'hf', `acme/key@${commits.key}`, '--config', hfConfig]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`signed: acme/key@${commits.key.slice(0, 12)} by key:c1e49d63327f (recorded as the signer of acme/key)\n`);
      const d = diff(before, readFileSync(hfConfig, 'utf8'));
      expect(d.added).toEqual([
        `      # airlock pin ${today}: acme/key@${commits.key.slice(0, 12)} signed by key:c1e49d63327f`,
        `        commits: ["${'0'.repeat(40)}", "${commits.key}"]`,
      ]);
      const meta = await openMeta(loadConfig(hfConfig), { create: true });
      try {
        expect(await meta.getSigner('hf', 'acme/key')).toMatchObject({ identity: 'key:c1e49d63327f', version: commits.key });
        const u = await airlockCli(['pin', 'hf', `acme/unsigned@${commits.unsigned}`, '--config', hfConfig]);
        expect(u.code).toBe(0);
        expect(u.stderr).toMatch(/^warning: acme\/unsigned@[0-9a-f]{40}: the server will refuse it: acme\/unsigned@[0-9a-f]{40} has no model\.sig/);
        expect(await meta.getSigner('hf', 'acme/unsigned')).toBeNull();
      } finally {
        await meta.close();
      }
    });
  });
});
