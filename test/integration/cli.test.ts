import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeRegistry, digestOf, makeImage, makeIndex } from '../helpers/fake-registry.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { BUNDLE_MT, bundleObjects, fixtureBundle, subjectImage, SUBJECT_DIGEST } from '../helpers/cosign-fixture.js';
import { loadConfig } from '../../src/config/load.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

describe('airlock CLI', () => {
  const pub = new FakeIndex();
  let dir: string;
  let config: string;
  beforeAll(async () => {
    await pub.start();
    pub
      .add('requests', { filename: 'requests-2.32.3-py3-none-any.whl', bytes: Buffer.from('wheel') })
      .add('requests', { filename: 'requests-2.32.3.tar.gz', bytes: Buffer.from('sdist') })
      .add('requests', { filename: 'requests-2.31.0-py3-none-any.whl', bytes: Buffer.from('old') })
      .add('idna', { filename: 'idna-3.6-py3-none-any.whl', bytes: Buffer.from('idna 3.6') })
      .add('idna', { filename: 'idna-3.7-py3-none-any.whl', bytes: Buffer.from('idna 3.7') })
      .add('idna', { filename: 'idna-4.0rc1-py3-none-any.whl', bytes: Buffer.from('idna 4.0rc1') });
    dir = mkdtempSync(join(tmpdir(), 'airlock-cli-'));
    config = join(dir, 'airlock.yaml');
    writeFileSync(
      config,
      `# top comment
listen: 127.0.0.1:0
data_dir: ${join(dir, 'data')}
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
policy:
  pypi:
    # approved packages
    allow:
      - { name: certifi } # keep me
`,
    );
  });
  afterAll(() => pub.stop());

  it('pins a release with its file hashes, keeping comments and order', async () => {
    const r = await airlockCli(['pin', 'pypi', 'Requests==2.32.3', '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('added requests==2.32.3 (2 files, from the public index)');
    const text = readFileSync(config, 'utf8');
    expect(text).toContain('# top comment');
    expect(text).toContain('# approved packages');
    expect(text).toContain('- { name: certifi } # keep me');
    expect(text).toContain(sha256('wheel'));
    expect(text).toContain(sha256('sdist'));
    expect(text).not.toContain(sha256('old'));
    expect(text.indexOf('certifi')).toBeLessThan(text.indexOf('requests'));
    // Pinning again replaces the entry instead of adding a twin.
    const again = await airlockCli(['pin', 'pypi', 'requests==2.32.3', '--config', config]);
    expect(again.stdout).toContain('updated requests==2.32.3');
    expect(readFileSync(config, 'utf8').match(/name: requests/g)).toHaveLength(1);
    const check = await airlockCli(['check', '--config', config]);
    expect(check.stdout).toContain('OK (2 PyPI allow entries');
  });

  it('pins a bare name to the release pip would take (the newest final one), saying which', async () => {
    // The console's approval of a refused project page, where pip names no version.
    const r = await airlockCli(['pin', 'pypi', 'IDNA', '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('added idna==3.7 (1 file, from the public index)');
    const text = readFileSync(config, 'utf8');
    expect(text).toContain(sha256('idna 3.7'));
    expect(text).not.toContain(sha256('idna 3.6'));
    expect(text).not.toContain(sha256('idna 4.0rc1'));
  });

  it('explains what it cannot pin', async () => {
    const r = await airlockCli(['pin', 'pypi', 'requests>=2', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('expected NAME or NAME==VERSION');
    const missing = await airlockCli(['pin', 'pypi', 'requests==9.9', '--config', config]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('has no files with a sha256 for requests==9.9');
  });

  it('stops on a bad configuration naming file, line and field', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'pypi:\n  upstream: https://pypi.org/simple/\npolicy:\n  pypi:\n    allow:\n      - { name: x, versions: "~=" }\n');
    const r = await airlockCli(['serve', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}:6: policy.pypi.allow[0].versions: bad version specifier "~="`);
  });

  it('check validates what serve will use; start-up failures are one line, never a stack trace', async () => {
    const write = (name: string, listen: string, dataDir: string) => {
      const f = join(dir, name);
      writeFileSync(f, `listen: ${listen}\ndata_dir: ${dataDir}\npolicy:\n  pypi:\n    allow: [{ name: certifi }]\n`);
      return f;
    };
    const oneLine = (r: { stderr: string }) => {
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('{'));
      expect(lines).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      return lines[0];
    };
    // A port that cannot exist is caught by check (it used to pass and crash serve).
    const badPort = write('port.yaml', '127.0.0.1:99999', join(dir, 'data-port'));
    const c1 = await airlockCli(['check', '--config', badPort]);
    expect(c1.code).toBe(2);
    expect(oneLine(c1)).toBe(`airlock: ${badPort}:1: listen: port out of range: expected 0 to 65535`);
    // A data directory that cannot be written (immutable: even root cannot write it).
    const locked = join(dir, 'locked');
    mkdirSync(locked);
    execFileSync('chattr', ['+i', locked]);
    try {
      const ro = write('ro.yaml', '127.0.0.1:0', locked);
      const c2 = await airlockCli(['check', '--config', ro]);
      expect(c2.code).toBe(2);
      expect(oneLine(c2)).toBe(`airlock: ${ro}: data_dir ${locked} is not a writable directory: operation not permitted (EPERM)`);
      const s2 = await airlockCli(['serve', '--config', ro]);
      expect(s2.code).toBe(1);
      expect(oneLine(s2)).toBe(`airlock: cannot start: data_dir ${locked} is not a writable directory: operation not permitted (EPERM)`);
    } finally {
      execFileSync('chattr', ['-i', locked]);
    }
    // An address in use: check notes it (it may be this Airlock running); serve says so in one line.
    const taken = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const busy = write('busy.yaml', `127.0.0.1:${(taken.address() as AddressInfo).port}`, join(dir, 'data-busy'));
      const c3 = await airlockCli(['check', '--config', busy]);
      expect(c3.code).toBe(0);
      expect(c3.stderr).toMatch(/note: listen 127\.0\.0\.1:\d+ is in use/);
      const s3 = await airlockCli(['serve', '--config', busy]);
      expect(s3.code).toBe(1);
      expect(oneLine(s3)).toMatch(/^airlock: cannot start: listen 127\.0\.0\.1:\d+: address in use \(EADDRINUSE\)$/);
    } finally {
      taken.close();
    }
  });

  it('pins an OCI tag to the digest of its exact manifest bytes, as a tag alias', async () => {
    const reg = await new FakeRegistry().start();
    try {
      const amd = makeImage([Buffer.from('layer-amd')], 'amd64');
      const arm = makeImage([Buffer.from('layer-arm')], 'arm64');
      const index = makeIndex([
        { img: amd, arch: 'amd64' },
        { img: arm, arch: 'arm64' },
      ]);
      reg.pushIndex('library/python', index, [amd, arm], '3.12-slim');
      const cfg = join(dir, 'oci.yaml');
      writeFileSync(
        cfg,
        `data_dir: ${join(dir, 'data-oci')}
oci:
  registries:
    docker.io: { url: "${reg.url}" }
policy:
  oci:
    # approved images
    allow: []
`,
      );
      const r = await airlockCli(['pin', 'oci', 'python:3.12-slim', '--config', cfg]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(`added docker.io/library/python:3.12-slim -> ${index.digest} (index of 2 platforms)`);
      const pinned = await airlockCli(['pin', 'oci', `docker.io/library/python@${amd.digest}`, '--config', cfg]);
      expect(pinned.stdout).toContain(`updated docker.io/library/python -> ${amd.digest} (manifest with 2 blobs)`);
      // Pinned through the mirror's own store: the manifests are kept as the server keeps them.
      const kept = new SqliteMetaStore(join(dir, 'data-oci', 'airlock.db'));
      try {
        expect((await kept.getOciManifest(index.digest))?.mediaType).toBe(index.mediaType);
        expect(await kept.getOciManifest(amd.digest)).not.toBeNull();
      } finally {
        await kept.close();
      }
      // A pin by digest asks the registry even though the store now holds the manifest.
      expect(reg.count(`manifest:library/python:${amd.digest}`)).toBe(1);
      expect((await airlockCli(['pin', 'oci', `docker.io/library/python@${amd.digest}`, '--config', cfg])).code).toBe(0);
      expect(reg.count(`manifest:library/python:${amd.digest}`)).toBe(2);
      const text = readFileSync(cfg, 'utf8');
      expect(text).toContain('# approved images');
      const policy = loadConfig(cfg).policy.oci;
      expect(policy.resolveTag('docker.io/library/python', '3.12-slim').digest).toBe(index.digest);
      expect(policy.decideDigest('docker.io/library/python', amd.digest).allow).toBe(true);
      // The upstream tag moves; the pin does not.
      reg.tags.set('library/python:3.12-slim', amd.digest);
      expect(loadConfig(cfg).policy.oci.resolveTag('docker.io/library/python', '3.12-slim').digest).toBe(index.digest);
      const missing = await airlockCli(['pin', 'oci', 'python:nope', '--config', cfg]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('answered 404');
      const bad = await airlockCli(['pin', 'oci', 'python', '--config', cfg]);
      expect(bad.stderr).toContain('expected REGISTRY/NAME:TAG');
      const check = await airlockCli(['check', '--config', cfg]);
      expect(check.stdout).toContain('1 OCI repositories');
    } finally {
      await reg.stop();
    }
  });

  it('image check fills layers through the configured cache: its size limit holds as it does for the server', async () => {
    const reg = await new FakeRegistry().start();
    try {
      const img = makeImage([randomBytes(300_000), randomBytes(300_000), randomBytes(300_000)]);
      reg.push('team/app', img, 'v1');
      const data = join(dir, 'data-limit');
      const cfg = join(dir, 'limit.yaml');
      writeFileSync(
        cfg,
        `data_dir: ${data}\ncache:\n  max_bytes: 500000\noci:\n  default_registry: reg.test\n  registries:\n    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }\n`,
      );
      const r = await airlockCli(['image', 'check', 'reg.test/team/app:v1', '--config', cfg]);
      expect(r.stderr).toBe('');
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toContain(`reg.test/team/app@${img.digest}`);
      // Every layer was filled (and inventoried), yet the store holds no more than cache.max_bytes.
      for (const l of img.layers) expect(reg.count(`blob:${digestOf(l)}`)).toBe(1);
      const meta = new SqliteMetaStore(join(data, 'airlock.db'));
      try {
        const totals = await meta.blobTotals();
        expect(totals.bytes).toBeGreaterThan(0);
        expect(totals.bytes).toBeLessThanOrEqual(500_000);
        expect(await meta.inventories.getInventory(img.digest)).not.toBeNull();
      } finally {
        await meta.close();
      }
      const bad = await airlockCli(['image', 'check', 'reg.test/Team/App:v1', '--config', cfg]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^airlock: image check: "reg\.test\/Team\/App:v1" is not an image reference: "Team\/App" is not a repository name/);
      const unknown = await airlockCli(['image', 'check', 'ghcr.io/x/y:1', '--config', cfg]);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain('registry ghcr.io is not configured in oci.registries (configured: reg.test)');
    } finally {
      await reg.stop();
    }
  });

  it('image check verifies signatures when the rule requires them: the signer, or the refusal and why (the cosign fixture)', async () => {
    const reg = await new FakeRegistry().start();
    try {
      // The fixture's subject image and its attestation bundle, listed by the referrers API (as in oci-signatures.test.ts).
      const fx = subjectImage();
      const subject = { manifest: fx.manifest.bytes, digest: SUBJECT_DIGEST, mediaType: fx.manifest.mediaType, config: fx.config.bytes, layers: [] };
      const o = bundleObjects(fixtureBundle(), fx.manifest);
      const sig = { manifest: o.manifest.bytes, digest: o.manifest.digest, mediaType: o.manifest.mediaType, config: o.empty.bytes, layers: [o.layer.bytes] };
      for (const repo of ['cosign/app', 'cosign/wrongid', 'cosign/unsigned', 'cosign/plain']) reg.push(repo, subject, 'v1');
      for (const repo of ['cosign/app', 'cosign/wrongid']) {
        reg.push(repo, sig);
        reg.referrers.set(`${repo}@${SUBJECT_DIGEST}`, [sig]);
      }
      reg.referrerTypes.set(sig.digest, BUNDLE_MT);
      const cfg = join(dir, 'signed.yaml');
      const rule = (repo: string, extra: string) => `      - { repository: reg.test/${repo}, digests: ["${SUBJECT_DIGEST}"]${extra} }\n`;
      writeFileSync(
        cfg,
        `data_dir: ${join(dir, 'data-signed')}\noci:\n  default_registry: reg.test\n  registries:\n    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }\n` +
          `policy:\n  signing:\n    signers:\n      cody: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }\n      someone: { issuer: https://github.com/login/oauth, subject: someone@soyland.com }\n` +
          `  oci:\n    allow:\n` +
          rule('cosign/app', ', require: attested, signers: [cody]') +
          rule('cosign/wrongid', ', require: attested, signers: [someone]') +
          rule('cosign/unsigned', ', require: signed, signers: [cody]') +
          rule('cosign/plain', ''),
      );
      const ok = await airlockCli(['image', 'check', 'reg.test/cosign/app:v1', '--config', cfg]);
      expect(ok.stderr).toBe('');
      expect(ok.code, ok.stdout).toBe(0);
      expect(ok.stdout).toContain('attestation: verified (oci.allow[0]): signer https://github.com/login/oauth cody@soyland.com, found by referrers');
      expect(reg.count(`referrers:${SUBJECT_DIGEST}`)).toBe(1);
      const json = JSON.parse((await airlockCli(['image', 'check', `reg.test/cosign/app@${SUBJECT_DIGEST}`, '--config', cfg, '--json'])).stdout);
      expect(json.signature).toMatchObject({ rule: 'oci.allow[0]', require: 'attested', ok: true, signer: 'https://github.com/login/oauth cody@soyland.com' });
      expect(json.signature.bundleDigest).toBe(o.layer.digest);
      // Another signer required: refused, naming the rule and what was found; exit 1 as for a finding.
      const wrong = await airlockCli(['image', 'check', 'reg.test/cosign/wrongid:v1', '--config', cfg]);
      expect(wrong.code, wrong.stdout).toBe(1);
      expect(wrong.stdout).toMatch(
        /^attestation: FAIL: oci\.allow\[1\] requires an attestation of reg\.test\/cosign\/wrongid@sha256:7321.* by someone; found 1: /m,
      );
      const unsigned = await airlockCli(['image', 'check', 'reg.test/cosign/unsigned:v1', '--config', cfg]);
      expect(unsigned.code, unsigned.stdout).toBe(1);
      expect(unsigned.stdout).toMatch(
        /^signature: FAIL: oci\.allow\[2\] requires a signature of reg\.test\/cosign\/unsigned@sha256:7321.* by cody; found none/m,
      );
      // A local layout of the same image under the signing rule: not looked up, and said so (exit 0: nothing was refused).
      const layout = join(dir, 'signed-layout');
      mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
      for (const b of [fx.manifest, fx.config]) writeFileSync(join(layout, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
      writeFileSync(
        join(layout, 'index.json'),
        JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: fx.manifest.mediaType, digest: SUBJECT_DIGEST, size: fx.manifest.bytes.length }] }),
      );
      const local = await airlockCli(['image', 'check', `oci:${layout}`, '--config', cfg, '--repository', 'reg.test/cosign/app']);
      expect(local.code, local.stderr).toBe(0);
      expect(local.stdout).toContain(
        `attestation: not checked: oci.allow[0] requires an attestation, which lives in a registry; check docker://reg.test/cosign/app@${SUBJECT_DIGEST}`,
      );
      // No signing rule: nothing looked up, no signature line.
      const before = reg.count(`referrers:${SUBJECT_DIGEST}`);
      const plain = await airlockCli(['image', 'check', 'reg.test/cosign/plain:v1', '--config', cfg]);
      expect(plain.code, plain.stdout).toBe(0);
      expect(plain.stdout).not.toMatch(/signature|attestation/);
      expect(reg.count(`referrers:${SUBJECT_DIGEST}`)).toBe(before);
    } finally {
      await reg.stop();
    }
  });

  it('pins a Hugging Face branch to its commit, for models and datasets', async () => {
    const hub = await new FakeHub().start();
    try {
      const c1 = hub.commit('model', 'openai-community/gpt2', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
      const d1 = hub.commit('dataset', 'org/corpus', [{ path: 'a.txt', bytes: Buffer.from('a') }], ['main', 'v1.0']);
      const cfg = join(dir, 'hf.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data-hf')}\nhf:\n  upstream: "${hub.url}"\npolicy:\n  hf:\n    allow: []  # models\n`);
      const r = await airlockCli(['pin', 'hf', 'openai-community/gpt2@main', '--config', cfg]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(`added openai-community/gpt2@main -> ${c1}`);
      const d = await airlockCli(['pin', 'hf', 'datasets/org/corpus@v1.0', '--config', cfg]);
      expect(d.stdout).toContain(`added datasets/org/corpus@v1.0 -> ${d1}`);
      const c2 = hub.commit('model', 'openai-community/gpt2', [{ path: 'config.json', bytes: Buffer.from('{"v": 2}') }]);
      const again = await airlockCli(['pin', 'hf', 'openai-community/gpt2@main', '--config', cfg]);
      expect(again.stdout).toContain(`updated openai-community/gpt2@main -> ${c2}`);
      const policy = loadConfig(cfg).policy.hf;
      expect(policy.resolveRevision('model', 'openai-community/gpt2', 'main').commit).toBe(c2);
      // Moving the pin replaces it: the old commit stays approved only if listed under commits.
      expect(policy.resolveRevision('model', 'openai-community/gpt2', c1).commit).toBeUndefined();
      expect(policy.resolveRevision('dataset', 'org/corpus', 'v1.0').commit).toBe(d1);
      const missing = await airlockCli(['pin', 'hf', 'nobody/nothing@main', '--config', cfg]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('the Hub answered 404 RepoNotFound');
      const bad = await airlockCli(['pin', 'hf', 'gpt2', '--config', cfg]);
      expect(bad.stderr).toContain('expected [datasets/]REPO@REVISION');
    } finally {
      await hub.stop();
    }
  });

  it('lists pull records', async () => {
    const r = await airlockCli(['records', '--config', config, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });
});
