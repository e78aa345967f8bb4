/**
 * Breaks of issue 27's guarantees found by an attacker/tester (break27): bulk and single pins, the
 * byte-preserving policy editor, minimum age and look-alike names, attacked from the side. Each
 * `it` is named after the guarantee it broke; each failed before its fix (in the same commit).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { startAirlock } from '../helpers/airlock.js';
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

  // The atomic write replaces the file: its mode must be the old file's (not the umask's), and a
  // temporary file left by a pin killed outright (the same pid in a container) must not stop the next.
  it('the policy replaced atomically keeps its mode, and a pin after a killed one writes', async () => {
    const wheel = Buffer.from('foo 1.0 wheel');
    const { cfg, policyFile, dir } = await setup('pypi:\n  allow: []\n', [{ project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: wheel }]);
    chmodSync(policyFile, 0o664);
    for (let pid = 1; pid < 5; pid++) writeFileSync(join(dir, `.policy.yaml.airlock-${pid}.tmp`), 'left by a killed pin');
    const r = await airlockCli(['pin', 'pypi', 'foo==1.0', '--config', cfg]);
    expect(r.stderr).toBe('');
    expect(statSync(policyFile).mode & 0o777).toBe(0o664);
    expect(loadConfig(cfg).policy.pypi.decideFile('foo', '1.0', sha256(wheel)).allow).toBe(true);
  });
});

describe('minimum age: upload time is per file', () => {
  // `airlock pin pypi NAME` takes the newest release old enough for pypi.min_age. It chose the
  // release by any one old file, then pinned every file of it with its hash, a wheel uploaded an
  // hour ago to a month-old release included; and an exact pin with hashes overrides the minimum
  // age, so that wheel was served at once, though no one named the version.
  it('a bare-name pin does not approve a file younger than min_age of an old release', async () => {
    const sdist = Buffer.from('foo 1.0 sdist');
    const lateWheel = Buffer.from('foo 1.0 wheel, uploaded an hour ago');
    const { cfg, policyFile } = await setup('pypi:\n  min_age: 7d\n  allow: []\n', [
      { project: 'foo', filename: 'foo-1.0.tar.gz', bytes: sdist, uploadTime: ago(30 * DAY) },
      { project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: lateWheel, uploadTime: ago(3_600_000) },
    ]);
    const r = await airlockCli(['pin', 'pypi', 'foo', '--config', cfg]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const pypi = loadConfig(cfg).policy.pypi;
    expect(pypi.decideFile('foo', '1.0', sha256(sdist)).allow).toBe(true);
    // The late wheel is not approved by the pin: refused (not pinned), or at least still aged.
    const d = pypi.decideFile('foo', '1.0', sha256(lateWheel));
    const aged = pypi.decideAge('foo', '1.0', sha256(lateWheel), parseInstant(ago(3_600_000)), Date.now());
    expect(!d.allow || aged !== null).toBe(true);
    expect(readFileSync(policyFile, 'utf8')).not.toContain(sha256(lateWheel));
  });
});

describe('bulk approval from requirements files', () => {
  // pip-compile can write sha384/sha512 hashes (pip accepts them). A line with only such hashes was
  // read as a line without hashes, so "resolved upstream and hashed": every file of the release the
  // index lists was approved, whatever the lock file named, and a lock hash that matches no upstream
  // file was never noticed. It must be refused, saying why (Airlock pins and checks sha256).
  it('a requirement whose hashes are all non-sha256 is refused, not widened to every upstream file', async () => {
    const wheel = Buffer.from('foo 1.0 wheel');
    const other = Buffer.from('foo 1.0 another wheel, not in the lock file');
    const { dir, cfg, policyFile } = await setup('pypi:\n  allow: []\n', [
      { project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: wheel },
      { project: 'foo', filename: 'foo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl', bytes: other },
    ]);
    const req = join(dir, 'requirements.txt');
    const sha512 = createHash('sha512').update('not the wheel at all').digest('hex');
    writeFileSync(req, `foo==1.0 \\\n    --hash=sha512:${sha512}\n`);
    const before = readFileSync(policyFile, 'utf8');
    const r = await airlockCli(['pin', 'pypi', '-r', req, '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/refused foo==1\.0 .*sha256/);
    expect(readFileSync(policyFile, 'utf8')).toBe(before);
  });

  // pip reads `-rbase.txt` and `--requirement=base.txt` (optparse: the value may follow the short
  // option directly). The attached form was taken for an unknown option and skipped without a
  // word, so the summary said "pinned" while the included file's releases were not.
  it('every release of a requirements file is pinned, -r FILE written as pip allows (-rFILE)', async () => {
    const wheel = Buffer.from('foo 1.0 wheel');
    const { dir, cfg } = await setup('pypi:\n  allow: []\n', [{ project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: wheel }]);
    writeFileSync(join(dir, 'base.txt'), `foo==1.0 --hash=sha256:${sha256(wheel)}\n`);
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, '-rbase.txt\n');
    const r = await airlockCli(['pin', 'pypi', '-r', req, '--config', cfg]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('added foo==1.0');
    expect(loadConfig(cfg).policy.pypi.decideFile('foo', '1.0', sha256(wheel)).allow).toBe(true);
  });
});

describe('look-alike names: an accepted look-alike is recorded beside its entry', () => {
  const wheel = Buffer.from('reqeusts 1.0 wheel');
  const files = [{ project: 'reqeusts', filename: 'reqeusts-1.0-py3-none-any.whl', bytes: wheel }];
  /** The comment line just above the line that starts the allow entry of reqeusts (block or flow). */
  const commentAbove = (text: string) => {
    const lines = text.split(/\r?\n/);
    const at = lines.findIndex((l) => /^\s*- (\{ )?name: reqeusts\b/.test(l));
    return at > 0 ? lines[at - 1] : null;
  };

  // The comment was placed by a search of the text for the last line `- name: NAME`: in a policy
  // whose deny list (after the allow list) names the same project, it went above the deny rule,
  // not above the entry the pin wrote.
  it('the comment of a single pin goes above the entry the pin added, not another rule of that name', async () => {
    const before = 'pypi:\n  allow:\n    - name: certifi\n  deny:\n    - name: reqeusts\n      versions: "<1.0"\n      reason: broken before 1.0\n';
    const { cfg, policyFile } = await setup(before, files);
    const r = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--accept-lookalike', '--config', cfg]);
    expect(r.code).toBe(0);
    const after = readFileSync(policyFile, 'utf8');
    const allowPart = after.slice(0, after.indexOf('  deny:'));
    expect(commentAbove(allowPart)).toMatch(/^\s+# look-alike of requests accepted/);
    expect(after.slice(after.indexOf('  deny:'))).toBe(before.slice(before.indexOf('  deny:')));
  });

  // The same comment, in a policy with CRLF line endings: the editor writes new lines as the
  // file's lines end, but the comment was added afterwards with a bare LF, a mixed-ending file.
  it('the comment of a single pin ends its line as the policy does (CRLF)', async () => {
    const before = 'pypi:\r\n  allow:\r\n    - name: certifi\r\n';
    const { cfg, policyFile } = await setup(before, files);
    const r = await airlockCli(['pin', 'pypi', 'reqeusts==1.0', '--accept-lookalike', '--config', cfg]);
    expect(r.code).toBe(0);
    const after = readFileSync(policyFile, 'utf8');
    expect(after.startsWith(before)).toBe(true);
    expect(commentAbove(after)).toMatch(/# look-alike of requests accepted/);
    expect(after.replace(/\r\n/g, '')).not.toContain('\n');
  });

  // A bulk pin writes the comment through the editor, which writes none in a flow list
  // (`allow: [ ... ]`, a common hand-written style): the look-alike went in with no trace in the
  // file, and nothing said so.
  it('a bulk pin into a flow-style allow list records the accepted look-alike beside its entry', async () => {
    const { dir, cfg, policyFile } = await setup('pypi:\n  allow: [{ name: certifi }]\n', files);
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, `reqeusts==1.0 --hash=sha256:${sha256(wheel)}\n`);
    const r = await airlockCli(['pin', 'pypi', '-r', req, '--accept-lookalike', '--config', cfg]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('added reqeusts==1.0');
    const after = readFileSync(policyFile, 'utf8');
    expect(commentAbove(after) ?? after).toMatch(/# look-alike of requests accepted/);
    expect(loadConfig(cfg).policy.pypi.decideFile('reqeusts', '1.0', sha256(wheel)).allow).toBe(true);
  });
});

describe('minimum age: PEP 700 upload-time through Airlock', () => {
  // Airlock reads any RFC 3339 upload time (an offset, a space for the T, lower case), and served it
  // on its own JSON pages as the upstream wrote it. PEP 700 fixes the form (yyyy-mm-ddThh:mm:ss.ffffffZ,
  // UTC), which uv's exclude-newer reads; the page must say the same instant in that form.
  it('the upload-time on Airlock\u2019s JSON pages is PEP 700\u2019s UTC form, the same instant', async () => {
    const idx = new FakeIndex();
    idx.add('foo', { filename: 'foo-1.0-py3-none-any.whl', bytes: Buffer.from('a'), uploadTime: '2024-03-01 01:30:00.25+02:00' });
    idx.add('foo', { filename: 'foo-1.1-py3-none-any.whl', bytes: Buffer.from('b'), uploadTime: '2024-03-02T10:00:00.123456Z' });
    await idx.start();
    cleanup.push(() => idx.stop());
    const a = await startAirlock(
      `pypi:\n  upstream: ${idx.simpleUrl}\n  file_hosts: ["127.0.0.1:${idx.port}"]\npolicy:\n  pypi:\n    allow: [{ name: foo }]\n`,
    );
    cleanup.push(() => a.stop());
    const r = await fetch(`${a.url}/pypi/simple/foo/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } });
    expect(r.status).toBe(200);
    const doc = (await r.json()) as { files: { filename: string; 'upload-time': string }[] };
    const times = Object.fromEntries(doc.files.map((f) => [f.filename, f['upload-time']]));
    // PEP 700's form exactly: six fractional digits.
    expect(times['foo-1.0-py3-none-any.whl']).toBe('2024-02-29T23:30:00.250000Z');
    // A time already in that form is passed on as written (microseconds kept).
    expect(times['foo-1.1-py3-none-any.whl']).toBe('2024-03-02T10:00:00.123456Z');
  });
});

describe('look-alike names: a near copy of an internal name is refused outright', () => {
  // The one-keystroke test leaves out every edit that involves a digit (a version or a size:
  // Qwen3.5 and Qwen3.6). A letter typed as a digit is no version: `5ecretlib` for the internal
  // `secretlib`, `4cme-utils` for the internal `acme-*`, the oldest dependency-confusion spellings,
  // went in without a word, single pin and bulk pin alike.
  it('a letter typed as a digit in an internal name is refused, single pin and bulk', async () => {
    const files = ['5ecretlib', '4cme-utils'].map((p) => ({ project: p, filename: `${p.replace(/-/g, '_')}-1.0-py3-none-any.whl`, bytes: Buffer.from(p) }));
    const before = 'pypi:\n  internal: ["acme-*", "secretlib"]\n  allow: []\n';
    const { dir, cfg, policyFile } = await setup(before, files);
    const single = await airlockCli(['pin', 'pypi', '5ecretlib==1.0', '--accept-lookalike', '--config', cfg]);
    expect(single.code).not.toBe(0);
    expect(single.stderr).toContain('looks like the internal name "secretlib"');
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, `4cme-utils==1.0 --hash=sha256:${sha256(Buffer.from('4cme-utils'))}\n`);
    const bulk = await airlockCli(['pin', 'pypi', '-r', req, '--accept-lookalike', '--config', cfg]);
    expect(bulk.code).toBe(1);
    expect(bulk.stdout).toMatch(/refused 4cme-utils==1\.0 .*look-alike of the internal name acme-\*/);
    expect(readFileSync(policyFile, 'utf8')).toBe(before);
  });
});

describe('minimum age per rule', () => {
  // `airlock pin pypi NAME` took the newest release old enough for pypi.min_age alone: with the
  // project's own rule asking 30 days, it pinned a 10-day-old release with its hashes, and the
  // exact pin (exempt from the minimum age) served it at once, past the rule written for it.
  it('a bare-name pin takes the newest release old enough for the rule of that name, not only the ecosystem', async () => {
    const old = Buffer.from('foo 1.0');
    const young = Buffer.from('foo 2.0, ten days old');
    const { cfg } = await setup('pypi:\n  min_age: 7d\n  allow:\n    - name: foo\n      min_age: 30d\n', [
      { project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: old, uploadTime: ago(60 * DAY) },
      { project: 'foo', filename: 'foo-2.0-py3-none-any.whl', bytes: young, uploadTime: ago(10 * DAY) },
    ]);
    const r = await airlockCli(['pin', 'pypi', 'foo', '--config', cfg]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('foo==1.0');
    const pypi = loadConfig(cfg).policy.pypi;
    expect(pypi.decideAge('foo', '2.0', sha256(young), parseInstant(ago(10 * DAY)), Date.now())).not.toBeNull();
  });
});

describe('bulk approval merges with the policy as it is when written', () => {
  // A bulk pin read the policy before resolving every release upstream (for a real lock file, a
  // minute) and wrote its edit of those old bytes at the end: a pin or a reviewer's edit made in
  // that minute was silently thrown away, though its command had said "added".
  it('an edit made to the policy while a bulk pin resolves is not lost', async () => {
    const wheel = Buffer.from('foo 1.0 wheel');
    const { idx, dir, cfg, policyFile } = await setup('pypi:\n  allow:\n    - name: certifi\n', [
      { project: 'foo', filename: 'foo-1.0-py3-none-any.whl', bytes: wheel },
    ]);
    // Hold the project page until the test has edited the policy.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let asked!: () => void;
    const seen = new Promise<void>((r) => (asked = r));
    const handle = (idx as unknown as { handle: (req: unknown, res: unknown) => void }).handle.bind(idx);
    (idx as unknown as { handle: (req: { url?: string }, res: unknown) => void }).handle = (req, res) => {
      if (req.url?.startsWith('/simple/foo/')) {
        asked();
        void held.then(() => handle(req, res));
      } else handle(req, res);
    };
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, `foo==1.0 --hash=sha256:${sha256(wheel)}\n`);
    const bulk = airlockCli(['pin', 'pypi', '-r', req, '--config', cfg]);
    await seen;
    const colleague = readFileSync(policyFile, 'utf8').replace(
      '    - name: certifi\n',
      '    - name: certifi\n    - name: idna  # approved by the security team meanwhile\n',
    );
    writeFileSync(policyFile, colleague);
    release();
    const r = await bulk;
    const after = readFileSync(policyFile, 'utf8');
    // Either merged into the new bytes, or refused with the colleague's edit kept: never lost.
    expect(after).toContain('- name: idna  # approved by the security team meanwhile');
    if (r.code === 0) expect(loadConfig(cfg).policy.pypi.decideFile('foo', '1.0', sha256(wheel)).allow).toBe(true);
    else expect(r.stderr).toMatch(/^airlock: .*changed.*\n$/);
  });
});
