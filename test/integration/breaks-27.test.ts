/**
 * Breaks of issue 27's guarantees found by an attacker/tester (break27): bulk and single pins, the
 * byte-preserving policy editor, minimum age and look-alike names, attacked from the side. Each
 * `it` is named after the guarantee it broke; each failed before its fix (in the same commit).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { loadConfig } from '../../src/config/load.js';
import { parseInstant } from '../../src/policy/index.js';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
  cleanup = [];
});

const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const DAY = 86_400_000;

/** A local index, a config whose policy is in its own file (as reviewers keep it), and the paths. */
async function setup(policy: string, files: { project: string; filename: string; bytes: Buffer; uploadTime?: string | null }[] = [], extra = '') {
  const idx = new FakeIndex();
  for (const f of files) idx.add(f.project, f);
  await idx.start();
  cleanup.push(() => idx.stop());
  const dir = mkdtempSync(join(tmpdir(), 'airlock-breaks27-'));
  const cfg = join(dir, 'airlock.yaml');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    cfg,
    `data_dir: ${join(dir, 'data')}\npypi:\n  upstream: ${idx.simpleUrl}\n  file_hosts: ["127.0.0.1:${idx.port}"]\n${extra}policy_file: policy.yaml\n`,
  );
  writeFileSync(policyFile, policy);
  return { idx, dir, cfg, policyFile };
}

describe('the policy file stays the reviewers\u2019 file', () => {
  // A single pin that leaves a policy the loader refuses must put the old bytes back (as the bulk
  // pin does): here the editor, rightly, does not edit an anchored entry, so it appends a second
  // entry for the same repository, which the policy refuses ("merge the two entries"). The pin
  // failed, and left that policy behind: the next reload of the server fails on it.
  it('a single pin that fails never leaves a policy that does not load (the old bytes stay)', async () => {
    const hub = await new FakeHub().start();
    cleanup.push(() => hub.stop());
    const c0 = hub.commit('model', 'openai-community/gpt2', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
    hub.commit('model', 'openai-community/gpt2', [{ path: 'config.json', bytes: Buffer.from('{"v": 2}') }]);
    const dir = mkdtempSync(join(tmpdir(), 'airlock-breaks27-'));
    const cfg = join(dir, 'airlock.yaml');
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(cfg, `data_dir: ${join(dir, 'data')}\nhf:\n  upstream: "${hub.url}"\npolicy_file: policy.yaml\n`);
    const before = `# models we use\nhf:\n  allow:\n    - &gpt2 # shared with the eval config\n      repo: openai-community/gpt2\n      commits: ["${c0}"]\n`;
    writeFileSync(policyFile, before);
    expect(() => loadConfig(cfg)).not.toThrow();
    const r = await airlockCli(['pin', 'hf', 'openai-community/gpt2@main', '--config', cfg]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^airlock: .*\n$/);
    expect(readFileSync(policyFile, 'utf8')).toBe(before);
    expect(() => loadConfig(cfg)).not.toThrow();
  });

  // Windows editors save UTF-8 with a byte order mark; js-yaml and the `yaml` package both read
  // such a policy. A pin that adds a top-level key (the first PyPI pin of a policy that had only
  // Hugging Face rules) wrote it one column in (the BOM counted as a column) and died with a
  // js-yaml stack trace ("unexpected error"), pinning nothing.
  it('a pin edits a policy saved with a byte order mark, adding only its lines', async () => {
    const wheel = Buffer.from('foo 1.0 wheel');
    const before = '\uFEFFhf: # approved models\n  allow: []\n';
    const { cfg, policyFile } = await setup(before, [{ project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: wheel }]);
    const r = await airlockCli(['pin', 'pypi', 'foo==1.0', '--config', cfg]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const after = readFileSync(policyFile, 'utf8');
    expect(after.startsWith(before)).toBe(true);
    expect(after.slice(before.length)).toBe(`pypi:\n  allow:\n    - name: foo\n      versions: "==1.0"\n      sha256:\n        - ${sha256(wheel)}\n`);
    expect(loadConfig(cfg).policy.pypi.decideFile('foo', '1.0', sha256(wheel)).allow).toBe(true);
  });
});

/** Run the built CLI under a file size limit (`ulimit -f`, in KiB): a write past it fails as on a full disk. */
function cliLimited(args: string[], limitKiB: number): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const cli = join(process.cwd(), 'dist', 'cli', 'main.js');
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    execFile('bash', ['-c', `ulimit -f ${limitKiB}; exec node ${cli} ${quoted}`], { timeout: 60_000 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number; signal?: string }) | null;
      resolve({ code: e ? (e.code ?? null) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

describe('a pin that fails halfway leaves the policy untouched', () => {
  // The policy was written in place (truncate, then write): a pin that died in the middle of the
  // write (a full disk, a quota, a file size limit, a kill) left a truncated policy, which the next
  // reload or start reads (here: a prefix of the new policy that still parses, with entries cut off).
  it('a pin killed while writing the policy leaves the old policy byte for byte', async () => {
    const wheel = Buffer.from('foo 1.0 wheel');
    const { cfg, policyFile, dir } = await setup('pypi:\n  allow: []\n', [{ project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: wheel }]);
    // The metadata store is made first, without a limit; the limit then falls between the old and the new policy's size.
    expect((await airlockCli(['pin', 'pypi', 'foo==1.0', '--print', '--config', cfg])).code).toBe(0);
    const limit = 1024; // KiB
    const pad = `# ${'reviewed and approved by the platform team; '.repeat(40)}\n`;
    let before = '# approved packages\npypi:\n  allow:\n';
    for (let i = 0; before.length + pad.length + 40 < limit * 1024; i++) before += `    - name: pkg${i}\n${pad}`;
    before += `    - name: last  # ${'x'.repeat(limit * 1024 - before.length - 40)}\n`;
    expect(before.length).toBeLessThan(limit * 1024);
    expect(before.length).toBeGreaterThan(limit * 1024 - 200);
    writeFileSync(policyFile, before);
    const r = await cliLimited(['pin', 'pypi', 'foo==1.0', '--config', cfg], limit);
    expect(r.code === 0 && r.signal === null).toBe(false);
    expect(r.stderr).toMatch(/^airlock: .*\n$/);
    expect(readFileSync(policyFile, 'utf8') === before).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });
});
