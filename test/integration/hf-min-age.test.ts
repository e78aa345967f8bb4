import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { FakeHub } from '../helpers/fake-hub.js';

const DAY = 86_400_000;

/**
 * Minimum age on Hugging Face (issue 27) applies where a branch or tag becomes a pin: every commit
 * Airlock serves is pinned, so `airlock pin hf REPO@main` refuses a commit younger than hf.min_age
 * (unless --accept-new), and a commit named by its id is the reviewer's own choice.
 */
describe('airlock pin hf with hf.min_age', () => {
  let hub: FakeHub;
  const dir = mkdtempSync(join(tmpdir(), 'airlock-hf-age-'));
  const cfg = join(dir, 'airlock.yaml');
  let old: string;
  let fresh: string;

  beforeAll(async () => {
    hub = await new FakeHub().start();
    old = hub.commit('model', 'org/model', [{ path: 'config.json', bytes: Buffer.from('{}') }], ['v1']);
    hub.commitDates.set(old, new Date(Date.now() - 30 * DAY).toISOString());
    fresh = hub.commit('model', 'org/model', [{ path: 'config.json', bytes: Buffer.from('{"v":2}') }], ['main']);
    hub.commitDates.set(fresh, new Date(Date.now() - 2 * 3_600_000).toISOString());
    hub.commit('model', 'org/undated', [{ path: 'config.json', bytes: Buffer.from('{}') }], ['main']);
    writeFileSync(cfg, `data_dir: ${join(dir, 'data')}\nhf:\n  upstream: "${hub.url}"\npolicy:\n  hf:\n    min_age: 7d\n    allow: []\n`);
  });
  afterAll(async () => {
    await hub.stop();
  });

  it('pins a ref whose commit is old enough', async () => {
    const r = await airlockCli(['pin', 'hf', 'org/model@v1', '--config', cfg]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`added org/model@v1 -> ${old}`);
  });

  it('refuses a ref whose commit is younger than hf.min_age, naming its age and the rule; --accept-new pins it with a warning', async () => {
    const before = readFileSync(cfg, 'utf8');
    const r = await airlockCli(['pin', 'hf', 'org/model@main', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^airlock: pin: org/model@main \\(commit ${fresh}\\) was published \\S+, (1h 59m|2h) ago, younger than the minimum age 7d \\(policy hf\\.min_age\\).*--accept-new\\n$`,
      ),
    );
    expect(readFileSync(cfg, 'utf8')).toBe(before);
    const ok = await airlockCli(['pin', 'hf', 'org/model@main', '--accept-new', '--config', cfg]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain('pinned anyway (--accept-new)');
    expect(ok.stdout).toContain(`org/model@main -> ${fresh}`);
  });

  it('does not age a commit named by its id', async () => {
    const r = await airlockCli(['pin', 'hf', `org/model@${fresh}`, '--config', cfg]);
    expect(r.code, r.stderr).toBe(0);
  });

  it('refuses a ref when the Hub gives no commit date (on_missing_time: refuse, the default)', async () => {
    const r = await airlockCli(['pin', 'hf', 'org/undated@main', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the Hub gives no commit date, so its age cannot be checked against the minimum age (policy hf.on_missing_time: refuse');
  });
});
