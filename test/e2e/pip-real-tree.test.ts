import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { pip } from '../helpers/pip.js';
import { loadConfig } from '../../src/config/load.js';

/**
 * A real dependency tree approved in one command (issue 27): pip's own resolver picks a real
 * project with many dependencies (transformers by default; AIRLOCK_TREE_ROOT to change it) from
 * this machine's configured package index (test/helpers/resolve_tree.py writes the hashed
 * requirements file and pylock.toml, as pip-compile and a PEP 751 locker would); those real wheels
 * are served by a local upstream, `airlock pin pypi -r` approves the file, and the real pip
 * installs it with --require-hashes through Airlock while a real package outside the file is
 * refused. Nothing large is committed: the wheels are resolved at test time, and where the
 * machine's index cannot give the tree the test skips and says why.
 */
const ROOT = process.env.AIRLOCK_TREE_ROOT ?? 'transformers';
const OUTSIDE = 'six';

interface Pkg {
  name: string;
  version: string;
  filename: string;
  sha256: string;
}

function resolveTree(out: string): Promise<{ ok: true; tree: { root: string; packages: Pkg[]; outside: Pkg[] } } | { ok: false; why: string }> {
  return new Promise((resolve) => {
    execFile('python3', ['test/helpers/resolve_tree.py', out, ROOT, OUTSIDE], { timeout: 90_000 }, (err, _stdout, stderr) => {
      if (err) resolve({ ok: false, why: stderr.trim() || err.message });
      else resolve({ ok: true, tree: JSON.parse(readFileSync(join(out, 'tree.json'), 'utf8')) });
    });
  });
}

describe('a real dependency tree, approved with airlock pin pypi -r and installed by the real pip', () => {
  const pub = new FakeIndex();
  let a: TestAirlock | undefined;
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  it(`resolves ${ROOT} with pip, pins the hashed file and the pylock.toml, pip --require-hashes installs it, ${OUTSIDE} is refused`, async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-real-tree-'));
    const got = await resolveTree(dir);
    if (!got.ok) {
      console.warn(`skipped: this machine's configured Python package index cannot give ${ROOT}'s tree: ${got.why}`);
      ctx.skip(`no package index here for ${ROOT}: ${got.why}`);
      return;
    }
    const { packages, outside } = got.tree;
    expect(packages.length).toBeGreaterThanOrEqual(10); // a tree, not a leaf
    expect(packages.map((p) => p.name)).toContain(ROOT);
    expect(packages.map((p) => p.name)).not.toContain(OUTSIDE);
    await pub.start();
    pub.format = 'html';
    for (const [sub, list] of [
      ['wheels', packages],
      ['outside', outside],
    ] as const)
      for (const p of list) pub.add(p.name, { filename: p.filename, bytes: readFileSync(join(dir, sub, p.filename)) });

    const upstream = `pypi:\n  upstream: ${pub.simpleUrl}\n  file_hosts: ["127.0.0.1:${pub.port}"]\n`;
    const pinWith = async (lock: string, name: string) => {
      const policyFile = join(dir, `${name}.policy.yaml`);
      writeFileSync(policyFile, '# reviewed in Git\npypi:\n  allow: []\n');
      const cfg = join(dir, `${name}.airlock.yaml`);
      writeFileSync(cfg, `data_dir: ${join(dir, `data-${name}`)}\n${upstream}policy_file: ${policyFile}\n`);
      const r = await airlockCli(['pin', 'pypi', '-r', join(dir, lock), '--config', cfg]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(`pinned: ${packages.length} added, 0 updated, 0 already allowed, 0 refused, in ${policyFile}`);
      const policy = loadConfig(cfg).policy.pypi;
      for (const p of packages) expect(policy.decideFile(p.name, p.version, p.sha256).allow, p.filename).toBe(true);
      return policyFile;
    };
    // The two lock files into two policies, at once (two processes).
    const [policyFile] = await Promise.all([pinWith('requirements.txt', 'req'), pinWith('pylock.toml', 'pylock')]);

    a = await startAirlock(`${upstream}policy_file: ${policyFile}\n`);
    const index = `${a.url}/pypi/simple/`;
    const target = join(dir, 'site');
    // The install and the refusal at once: two pip processes, one Airlock.
    const [ok, refused] = await Promise.all([
      pip([
        'install',
        '--index-url',
        index,
        '--require-hashes',
        '--only-binary',
        ':all:',
        '--no-compile',
        '--target',
        target,
        '-r',
        join(dir, 'requirements.txt'),
      ]),
      pip(['install', '--index-url', index, '--only-binary', ':all:', '--target', join(dir, 'other'), '-vv', OUTSIDE]),
    ]);
    expect(ok.code, ok.out).toBe(0);
    const installed = readdirSync(target).filter((f) => f.endsWith('.dist-info'));
    expect(installed).toHaveLength(packages.length);
    expect(installed).toContain(`${ROOT}-${packages.find((p) => p.name === ROOT)!.version}.dist-info`);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toContain(`${OUTSIDE} is not on the PyPI allowlist`);
  }, 180_000);
});
