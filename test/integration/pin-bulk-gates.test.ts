import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeRegistry, makeImage } from '../helpers/fake-registry.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { diff } from '../helpers/line-diff.js';
import { layerOf, rootfs } from '../helpers/layers.js';
import { loadConfig } from '../../src/config/load.js';

/**
 * The gates of a bulk pin (src/cli/pin-bulk.ts) that a single pin has: a look-alike name is
 * refused in the summary unless --accept-lookalike (then a comment beside the new entry, which a
 * re-pin keeps), a look-alike of an internal name always; a release an imported advisory refuses
 * is refused as the server would refuse it. The built CLI against local upstreams.
 */
describe('airlock pin from files: look-alikes and advisories', () => {
  const pub = new FakeIndex();
  let dir: string;
  let config: string;
  const policyText = `policy:
  advisories: { refuse: high }
  pypi:
    internal: ["acme-*"]
    # reviewed approvals
    allow:
      - name: certifi
  oci:
    allow: []
`;
  const policy = () => readFileSync(config, 'utf8');
  const whl = (name: string, v = '1.0') => `${name.replace(/-/g, '_')}-${v}-py3-none-any.whl`;
  beforeAll(async () => {
    await pub.start();
    for (const name of ['python3-dateutil', 'acrne-utils', 'torch', 'tinylib']) pub.add(name, { filename: whl(name), bytes: Buffer.from(`${name} 1.0`) });
    pub.add('tinylib', { filename: whl('tinylib', '1.1'), bytes: Buffer.from('tinylib 1.1') });
    dir = mkdtempSync(join(tmpdir(), 'airlock-pin-gates-'));
    config = join(dir, 'airlock.yaml');
    writeFileSync(
      config,
      `data_dir: ${join(dir, 'data')}\npypi:\n  upstream: ${pub.simpleUrl}\n  internal: ${pub.simpleUrl}\n  file_hosts: ["127.0.0.1:${pub.port}"]\n${policyText}`,
    );
    const adv = join(dir, 'osv');
    mkdirSync(adv);
    writeFileSync(
      join(adv, 'GHSA-aaaa-bbbb-cccc.json'),
      JSON.stringify({
        id: 'GHSA-aaaa-bbbb-cccc',
        aliases: ['CVE-2099-0042'],
        summary: 'remote code execution in tinylib',
        severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
        affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
      }),
    );
    const imp = await airlockCli(['advisories', 'import', adv, '--config', config]);
    expect(imp.code, imp.stderr).toBe(0);
  });
  afterAll(() => pub.stop());

  it('refuses look-alikes (--print too) and advisories in the summary; --accept-lookalike pins with a comment; a re-pin keeps it', async () => {
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, `torch==1.0\npython3-dateutil==1.0\nacrne-utils==1.0\ntinylib==1.0\ntinylib==1.1\n`);
    const lookalike = `refused python3-dateutil==1.0 (${req}:2): look-alike of python-dateutil (`;
    const internal = `refused acrne-utils==1.0 (${req}:3): look-alike of the internal name acme-* (`;
    const advisory = `refused tinylib==1.0 (${req}:4): tinylib 1.0 is affected by GHSA-aaaa-bbbb-cccc (CVE-2099-0042), severity CRITICAL 9.8`;

    const printed = await airlockCli(['pin', 'pypi', '-r', req, '--print', '--config', config]);
    expect(printed.code).toBe(1);
    expect(printed.stdout).toContain(lookalike);
    expect(printed.stdout).toContain(internal);
    expect(printed.stdout).toContain(advisory);
    expect(printed.stdout).toContain('would pin (--print: nothing written): 2 added, 0 updated, 0 already allowed, 3 refused');
    expect(policy()).toContain(policyText);

    const r = await airlockCli(['pin', 'pypi', '-r', req, '--config', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('added torch==1.0 (1 file)');
    expect(lines[1]).toMatch(new RegExp(`^${lookalike.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*\\); --accept-lookalike pins it with a comment$`));
    expect(lines[2]).toMatch(/\); no flag approves it$/);
    expect(lines[3]).toContain(advisory);
    expect(lines[4]).toBe('added tinylib==1.1 (1 file)');
    expect(lines[5]).toContain('pinned: 2 added, 0 updated, 0 already allowed, 3 refused');
    const before = policy();

    const ok = await airlockCli(['pin', 'pypi', '-r', req, '--accept-lookalike', '--config', config]);
    expect(ok.code).toBe(1); // acrne-utils and tinylib 1.0 still refused
    expect(ok.stdout).toContain('added python3-dateutil==1.0 (1 file) [look-alike of python-dateutil accepted]');
    expect(ok.stdout).toContain(internal);
    expect(ok.stdout).toContain('pinned: 1 added, 0 updated, 2 already allowed, 2 refused');
    const comment = diff(before, policy()).added[0];
    expect(comment).toMatch(/^ {6}# look-alike of python-dateutil accepted: .+/);
    expect(diff(before, policy())).toEqual({
      removed: [],
      added: [comment, '      - name: python3-dateutil', '        versions: "==1.0"', '        sha256:', `          - ${sha256('python3-dateutil 1.0')}`],
    });

    // A second file of the same release: the entry gains its hash, the comment stays (bulk and single pin).
    pub.add('python3-dateutil', { filename: 'python3_dateutil-1.0.tar.gz', bytes: Buffer.from('python3-dateutil sdist') });
    const again = await airlockCli(['pin', 'pypi', '-r', req, '--config', config]);
    expect(again.stdout).toContain('updated python3-dateutil==1.0 (2 files)');
    expect(policy()).toContain(`${comment}\n      - name: python3-dateutil\n`);
    pub.add('python3-dateutil', { filename: 'python3_dateutil-1.0-py2-none-any.whl', bytes: Buffer.from('python3-dateutil py2') });
    const single = await airlockCli(['pin', 'pypi', 'python3-dateutil==1.0', '--config', config]);
    expect(single.stderr).toBe('');
    expect(single.stdout).toContain('updated python3-dateutil==1.0 (3 files');
    const text = policy();
    expect(text.split(comment).length).toBe(2); // once
    expect(text).toContain(`${comment}\n      - name: python3-dateutil\n`);
    expect(loadConfig(config).policy.pypi.decideFile('python3-dateutil', '1.0', sha256('python3-dateutil py2')).allow).toBe(true);
  });

  it('OCI: a namespace imitating library/ in a Dockerfile is refused, then pinned with a comment', async () => {
    const reg = await new FakeRegistry().start();
    try {
      const img = makeImage([Buffer.from('layer')]);
      reg.push('libary/python', img, '3.12');
      const cfg = join(dir, 'oci.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data-oci')}\noci:\n  registries:\n    docker.io: { url: "${reg.url}" }\npolicy:\n  oci:\n    allow: []\n`);
      const df = join(dir, 'Dockerfile');
      writeFileSync(df, 'FROM libary/python:3.12\n');
      const r = await airlockCli(['pin', 'oci', '-f', df, '--config', cfg]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`refused docker.io/libary/python:3.12 (${df}:1): look-alike of docker.io/library/python (`);
      const ok = await airlockCli(['pin', 'oci', '-f', df, '--accept-lookalike', '--config', cfg]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain(`added docker.io/libary/python:3.12 -> ${img.digest} [look-alike of docker.io/library/python accepted]`);
      expect(readFileSync(cfg, 'utf8')).toMatch(
        /\n(\s*)# look-alike of docker\.io\/library\/python accepted: .*\n\1- repository: docker\.io\/libary\/python\n/,
      );
    } finally {
      await reg.stop();
    }
  });

  it('OCI: where the image gate applies, every image a bulk pin writes is judged at once, as a single pin does', async () => {
    const reg = await new FakeRegistry().start();
    try {
      const img = makeImage([layerOf(rootfs({ 'etc/os-release': 'ID=gated\nVERSION_ID=1\nPRETTY_NAME="gated 1"\n' }), 'none')]);
      reg.push('team/app', img, 'v1');
      const cfg = join(dir, 'gated.yaml');
      writeFileSync(
        cfg,
        `data_dir: ${join(dir, 'data-gated')}\noci:\n  default_registry: reg.test\n  registries:\n    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }\npolicy:\n  advisories: { refuse: critical }\n  oci:\n    allow: []\n`,
      );
      const compose = join(dir, 'compose-gated.yaml');
      writeFileSync(compose, 'services:\n  app:\n    image: reg.test/team/app:v1\n');
      const r = await airlockCli(['pin', 'oci', '-f', compose, '--config', cfg]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`added reg.test/team/app:v1 -> ${img.digest}`);
      expect(r.stdout).toContain(`reg.test/team/app@${img.digest}: gated 1, 0 packages, 0 advisories`);
    } finally {
      await reg.stop();
    }
  });

  it('Hugging Face: an owner imitating meta-llama in a model list is refused in the summary', async () => {
    const hub = await new FakeHub().start();
    try {
      hub.commit('model', 'meta_llama/Llama-3.1-8B-Instruct', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
      const gpt2 = hub.commit('model', 'openai-community/gpt2', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
      const cfg = join(dir, 'hf.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data-hf')}\nhf:\n  upstream: "${hub.url}"\npolicy:\n  hf:\n    allow: []\n`);
      const list = join(dir, 'models.txt');
      writeFileSync(list, 'openai-community/gpt2@main\nmeta_llama/Llama-3.1-8B-Instruct@main\n');
      const r = await airlockCli(['pin', 'hf', '-f', list, '--config', cfg]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`added openai-community/gpt2@main -> ${gpt2}`);
      expect(r.stdout).toContain(`refused meta_llama/Llama-3.1-8B-Instruct@main (${list}:2): look-alike of meta-llama/Llama-3.1-8B-Instruct (`);
      expect(r.stdout).toContain('pinned: 1 added, 0 updated, 0 already allowed, 1 refused');
    } finally {
      await hub.stop();
    }
  });
});
