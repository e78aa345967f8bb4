import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FakeRegistry, makeImage } from '../helpers/fake-registry.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { loadConfig } from '../../src/config/load.js';

/**
 * `airlock pin` refuses a look-alike name (src/cli/lookalike.ts), naming what it imitates and why;
 * --accept-lookalike pins it with a comment beside the entry; a look-alike of an internal name is
 * refused whatever the flag. The built CLI against local upstreams, for PyPI, OCI and the Hub.
 */
describe('airlock pin: look-alike names', () => {
  const pub = new FakeIndex();
  let dir: string;
  let config: string;
  const policy = () => readFileSync(config, 'utf8');
  beforeAll(async () => {
    await pub.start();
    for (const name of ['reqeusts', 'requests', 'acrne-utils', 'acme-utils', 'python3-dateutil', 'torch'])
      pub.add(name, { filename: `${name.replace(/-/g, '_')}-1.0-py3-none-any.whl`, bytes: Buffer.from(`${name} 1.0`) });
    dir = mkdtempSync(join(tmpdir(), 'airlock-lookalike-'));
    config = join(dir, 'airlock.yaml');
    writeFileSync(
      config,
      `data_dir: ${join(dir, 'data')}
pypi:
  upstream: ${pub.simpleUrl}
  internal: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
policy:
  pypi:
    internal: ["acme-*"]
    # approved packages
    allow:
      - { name: certifi } # keep me
`,
    );
  });
  afterAll(() => pub.stop());

  it('refuses a look-alike of a popular name, naming it and why, and writes nothing', async () => {
    const before = policy();
    const r = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`airlock: pin: "reqeusts" looks like "requests": "reqeusts" is one keystroke from "requests": 'ue' swapped (a popular name)`);
    expect(r.stderr).toContain('--accept-lookalike');
    expect(policy()).toBe(before);
    const affix = await airlockCli(['pin', 'pypi', 'python3-dateutil==1.0', '--config', config]);
    expect(affix.code).toBe(2);
    expect(affix.stderr).toContain('looks like "python-dateutil"');
  });

  it('--print runs the same gate: a look-alike is refused, or printed with its warning when accepted; nothing is written', async () => {
    const before = policy();
    const r = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--print', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`airlock: pin: "reqeusts" looks like "requests"`);
    const ok = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--print', '--accept-lookalike', '--config', config]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ name: 'reqeusts', versions: '==1.0' });
    expect(ok.stderr).toContain('warning: look-alike of requests accepted');
    const internal = await airlockCli(['pin', 'pypi', 'acrne-utils==1.0', '--print', '--accept-lookalike', '--config', config]);
    expect(internal.code).toBe(2);
    expect(internal.stderr).toContain('no flag approves it');
    const plain = await airlockCli(['pin', 'pypi', 'torch==1.0', '--print', '--config', config]);
    expect(plain.stderr).toBe('');
    expect(JSON.parse(plain.stdout)).toMatchObject({ name: 'torch' });
    expect(policy()).toBe(before);
  });

  it('pins it with --accept-lookalike, with a comment beside the entry', async () => {
    const r = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--accept-lookalike', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('added reqeusts==1.0');
    expect(r.stderr).toContain('warning: look-alike of requests accepted');
    const text = policy();
    expect(text).toMatch(
      /\n(\s*)# look-alike of requests accepted: "reqeusts" is one keystroke from "requests": 'ue' swapped \(a popular name\)\n\1- (\{ )?name: reqeusts[,\n]/,
    );
    expect(text).toContain('- { name: certifi } # keep me');
    expect(loadConfig(config).policy.pypi.names().allowed).toContain('reqeusts');
    // In the policy now: pinning it again is not a look-alike any more. (Whether the comment
    // survives the entry being rewritten is the policy writer's part, src/cli/pin.ts.)
    const again = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--config', config]);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
  });

  it('pins a popular name without a word', async () => {
    const r = await airlockCli(['pin', 'pypi', 'torch==1.0', '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('refuses a look-alike of an internal name whatever the flag; the internal name itself pins', async () => {
    const before = policy();
    for (const flags of [[], ['--accept-lookalike']]) {
      const r = await airlockCli(['pin', 'pypi', 'acrne-utils==1.0', ...flags, '--config', config]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('refused: "acrne-utils" looks like the internal name "acme-*"');
      expect(r.stderr).toContain('no flag approves it');
    }
    expect(policy()).toBe(before);
    const own = await airlockCli(['pin', 'pypi', 'acme-utils==1.0', '--config', config]);
    expect(own.stderr).toBe('');
    expect(own.stdout).toContain('from the internal index');
  });

  it('OCI: a namespace imitating library/ is refused, then accepted with a comment', async () => {
    const reg = await new FakeRegistry().start();
    try {
      const img = makeImage([Buffer.from('layer')]);
      reg.push('libary/python', img, '3.12');
      const cfg = join(dir, 'oci.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data-oci')}\noci:\n  registries:\n    docker.io: { url: "${reg.url}" }\npolicy:\n  oci:\n    allow: []\n`);
      const printed = await airlockCli(['pin', 'oci', 'docker.io/libary/python:3.12', '--print', '--config', cfg]);
      expect(printed.code).toBe(2);
      expect(printed.stderr).toContain(`looks like "docker.io/library/python"`);
      const r = await airlockCli(['pin', 'oci', 'docker.io/libary/python:3.12', '--config', cfg]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`looks like "docker.io/library/python"`);
      expect(r.stderr).toContain(`under an owner, "docker.io/libary", that is one keystroke from "docker.io/library"`);
      const ok = await airlockCli(['pin', 'oci', 'docker.io/libary/python:3.12', '--accept-lookalike', '--config', cfg]);
      expect(ok.code).toBe(0);
      expect(readFileSync(cfg, 'utf8')).toMatch(/# look-alike of docker\.io\/library\/python accepted: .*\n\s*- repository: docker\.io\/libary\/python\n/);
    } finally {
      await reg.stop();
    }
  });

  it('Hugging Face: an owner imitating meta-llama is refused', async () => {
    const hub = await new FakeHub().start();
    try {
      hub.commit('model', 'meta_llama/Llama-3.1-8B-Instruct', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
      const cfg = join(dir, 'hf.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data-hf')}\nhf:\n  upstream: "${hub.url}"\npolicy:\n  hf:\n    allow: []\n`);
      const printed = await airlockCli(['pin', 'hf', 'meta_llama/Llama-3.1-8B-Instruct@main', '--print', '--config', cfg]);
      expect(printed.code).toBe(2);
      expect(printed.stderr).toContain('looks like "meta-llama/Llama-3.1-8B-Instruct"');
      const r = await airlockCli(['pin', 'hf', 'meta_llama/Llama-3.1-8B-Instruct@main', '--config', cfg]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('looks like "meta-llama/Llama-3.1-8B-Instruct"');
      const ok = await airlockCli(['pin', 'hf', 'meta_llama/Llama-3.1-8B-Instruct@main', '--accept-lookalike', '--config', cfg]);
      expect(ok.code).toBe(0);
      expect(readFileSync(cfg, 'utf8')).toMatch(
        /# look-alike of meta-llama\/Llama-3\.1-8B-Instruct accepted: .*\n\s*- repo: meta_llama\/Llama-3\.1-8B-Instruct\n/,
      );
    } finally {
      await hub.stop();
    }
  });
});
