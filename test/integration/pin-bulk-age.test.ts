import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeRegistry, makeImage } from '../helpers/fake-registry.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { openMeta } from '../../src/backends.js';
import { loadConfig } from '../../src/config/load.js';

/**
 * Minimum age in a bulk pin's summary (issue 27, src/cli/pin-bulk.ts): a release, tag or branch
 * younger than the minimum age is refused as "cooldown" and not added; what the file names
 * exactly, which a person reviewed (--hash lines, an image by digest, a commit id), is the
 * override and is added with a note; --accept-new adds the rest, as a single `pin hf` does. The
 * built CLI (npm run build first) against local upstreams whose times the test sets.
 */
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const whl = (name: string) => `${name}-1.0-py3-none-any.whl`;

describe('airlock pin from files: minimum age (cooldown)', () => {
  const pub = new FakeIndex();
  let dir: string;
  beforeAll(async () => {
    await pub.start();
    pub.add('coolaged', { filename: whl('coolaged'), bytes: Buffer.from('coolaged 1.0'), uploadTime: ago(30 * DAY) });
    pub.add('coolfresh', { filename: whl('coolfresh'), bytes: Buffer.from('coolfresh 1.0'), uploadTime: ago(HOUR) });
    pub.add('coolhashed', { filename: whl('coolhashed'), bytes: Buffer.from('coolhashed 1.0'), uploadTime: ago(HOUR) });
    dir = mkdtempSync(join(tmpdir(), 'airlock-pin-age-'));
  });
  afterAll(() => pub.stop());

  it('PyPI: a young release without hashes in the file is refused as cooldown; hashes in the file are the override; --accept-new adds it', async () => {
    const config = join(dir, 'pypi.yaml');
    const policyText = 'policy:\n  pypi:\n    min_age: 7d\n    allow: []\n';
    writeFileSync(config, `data_dir: ${join(dir, 'data')}\npypi:\n  upstream: ${pub.simpleUrl}\n  file_hosts: ["127.0.0.1:${pub.port}"]\n${policyText}`);
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, `coolaged==1.0\ncoolfresh==1.0\ncoolhashed==1.0 --hash=sha256:${sha256('coolhashed 1.0')}\n`);
    const printed = await airlockCli(['pin', 'pypi', '-r', req, '--print', '--config', config]);
    expect(printed.stderr).toBe('');
    expect(printed.code).toBe(1);
    const lines = printed.stdout.trim().split('\n');
    expect(lines[0]).toBe('would be added coolaged==1.0 (1 file)');
    expect(lines[1]).toMatch(
      new RegExp(
        `^refused coolfresh==1\\.0 \\(${req}:2\\): cooldown: coolfresh==1\\.0 was published \\S+, (59m|1h) ago, younger than the minimum age 7d \\(policy pypi\\.min_age\\); it is served from \\S+\\. Not pinned: add its --hash lines to the file after review, wait, or review it and pin again with --accept-new$`,
      ),
    );
    expect(lines[2]).toMatch(
      /^would be added coolhashed==1\.0 \(1 file\) \[younger than the minimum age; its hashes in .*requirements\.txt:3 are the override: coolhashed==1\.0 was published/,
    );
    expect(lines[3]).toBe(
      `would pin (--print: nothing written): 2 added, 0 updated, 0 already allowed, 1 refused (1 cooldown: younger than the minimum age), in ${config}`,
    );
    expect(readFileSync(config, 'utf8')).toContain(policyText);

    const r = await airlockCli(['pin', 'pypi', '-r', req, '--config', config]);
    expect(r.code).toBe(1);
    expect(loadConfig(config).policy.pypi.names().allowed.sort()).toEqual(['coolaged', 'coolhashed']);
    const ok = await airlockCli(['pin', 'pypi', '-r', req, '--accept-new', '--config', config]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/added coolfresh==1\.0 \(1 file\) \[younger than the minimum age, accepted with --accept-new: coolfresh==1\.0 was published/);
    expect(ok.stdout).toContain('pinned: 1 added, 0 updated, 2 already allowed, 0 refused');
  });

  it('OCI: a tag whose digest Airlock first saw just now is refused as cooldown; an image by digest, and one seen long ago, are pinned', async () => {
    const reg = await new FakeRegistry().start();
    try {
      const young = makeImage([Buffer.from('young layer')]);
      const byDigest = makeImage([Buffer.from('by digest layer')]);
      const seasoned = makeImage([Buffer.from('seasoned layer')]);
      reg.push('team/young', young, 'v1');
      reg.push('team/bydigest', byDigest, 'v1');
      reg.push('team/seasoned', seasoned, 'v1');
      const cfg = join(dir, 'oci.yaml');
      writeFileSync(
        cfg,
        `data_dir: ${join(dir, 'data-oci')}\noci:\n  default_registry: reg.test\n  registries:\n    reg.test: { url: "${reg.url}" }\npolicy:\n  oci:\n    min_age: 7d\n    allow: []\n`,
      );
      // Airlock first saw team/seasoned's digest eight days ago (a pull through the server, on any replica).
      const meta = await openMeta(loadConfig(cfg), { create: true });
      await meta.recordOciFirstSeen(seasoned.digest, Date.now() - 8 * DAY);
      await meta.close();
      const df = join(dir, 'Dockerfile');
      writeFileSync(df, `FROM reg.test/team/young:v1\nFROM reg.test/team/bydigest:v1@${byDigest.digest}\nFROM reg.test/team/seasoned:v1\n`);
      const r = await airlockCli(['pin', 'oci', '-f', df, '--config', cfg]);
      expect(r.code).toBe(1);
      const lines = r.stdout.trim().split('\n');
      expect(lines[0]).toMatch(
        new RegExp(
          `^refused reg\\.test/team/young:v1 \\(${df}:1\\): cooldown: reg\\.test/team/young:v1 \\(${young.digest}\\) was first seen by Airlock \\S+, \\d+s ago, younger than the minimum age 7d \\(policy oci\\.min_age\\); it is served from \\S+\\. Not pinned: pin it by digest \\(reg\\.test/team/young@${young.digest}\\) after review, wait, or review it and pin again with --accept-new$`,
        ),
      );
      expect(lines[1]).toBe(`added reg.test/team/bydigest:v1@${byDigest.digest} -> ${byDigest.digest}`);
      expect(lines[2]).toBe(`added reg.test/team/seasoned:v1 -> ${seasoned.digest}`);
      expect(lines[3]).toContain('pinned: 2 added, 0 updated, 0 already allowed, 1 refused (1 cooldown: younger than the minimum age)');
      // The pin's sight of the young digest is kept: the server counts from it too.
      const after = await openMeta(loadConfig(cfg), { create: true });
      const seen = await after.getOciFirstSeen(young.digest);
      await after.close();
      expect(seen).toBeGreaterThan(Date.now() - 60_000);
      expect(loadConfig(cfg).policy.oci.repositories()).toEqual(['reg.test/team/bydigest', 'reg.test/team/seasoned']);
      // A single pin decides the same: the young tag is refused (exit 1, one line), by digest it is pinned, --accept-new writes the tag.
      const single = await airlockCli(['pin', 'oci', 'reg.test/team/young:v1', '--config', cfg]);
      expect(single.code).toBe(1);
      expect(single.stderr.trim().split('\n')).toHaveLength(1);
      expect(single.stderr).toMatch(
        /was first seen by Airlock \S+, \d+s ago, younger than the minimum age 7d \(policy oci\.min_age\).*Not pinned: pin it by digest/,
      );
      const digestPin = await airlockCli(['pin', 'oci', `reg.test/team/young@${young.digest}`, '--config', cfg]);
      expect(digestPin.stderr).toBe('');
      expect(digestPin.code).toBe(0);
      const accepted = await airlockCli(['pin', 'oci', 'reg.test/team/young:v1', '--accept-new', '--config', cfg]);
      expect(accepted.code).toBe(0);
      expect(accepted.stderr).toContain('pinned anyway (--accept-new): pulls by this tag are refused until then, a pull by digest is served now');
      expect(loadConfig(cfg).policy.oci.resolveTag('reg.test/team/young', 'v1').digest).toBe(young.digest);
    } finally {
      await reg.stop();
    }
  });

  it('Hugging Face: a branch at a young commit is refused as cooldown; the same commit by its id is pinned', async () => {
    const hub = await new FakeHub().start();
    try {
      const fresh = hub.commit('model', 'coolorg/fresh-model', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
      const old = hub.commit('model', 'coolorg/seasoned-model', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
      hub.commitDates.set(fresh, ago(HOUR));
      hub.commitDates.set(old, ago(30 * DAY));
      const cfg = join(dir, 'hf.yaml');
      writeFileSync(cfg, `data_dir: ${join(dir, 'data-hf')}\nhf:\n  upstream: "${hub.url}"\npolicy:\n  hf:\n    min_age: 7d\n    allow: []\n`);
      const list = join(dir, 'models.txt');
      writeFileSync(list, 'coolorg/fresh-model@main\ncoolorg/seasoned-model@main\n');
      const r = await airlockCli(['pin', 'hf', '-f', list, '--config', cfg]);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        new RegExp(
          `refused coolorg/fresh-model@main \\(${list}:1\\): cooldown: coolorg/fresh-model@main \\(commit ${fresh}\\) was published \\S+, (59m|1h) ago, younger than the minimum age 7d \\(policy hf\\.min_age\\); it is served from \\S+\\. Not pinned: pin an older commit by its id, wait`,
        ),
      );
      expect(r.stdout).toContain(`added coolorg/seasoned-model@main -> ${old}`);
      expect(r.stdout).toContain('pinned: 1 added, 0 updated, 0 already allowed, 1 refused (1 cooldown: younger than the minimum age)');
      writeFileSync(list, `coolorg/fresh-model@${fresh}\n`);
      const byId = await airlockCli(['pin', 'hf', '-f', list, '--config', cfg]);
      expect(byId.code, byId.stdout).toBe(0);
      expect(byId.stdout).toContain(`added coolorg/fresh-model@${fresh} -> ${fresh}`);
    } finally {
      await hub.stop();
    }
  });
});
