import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LivePolicy, policyVersion } from '../../src/core/live-policy.js';
import { Advisories } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';

const dir = mkdtempSync(join(tmpdir(), 'airlock-live-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('LivePolicy: the policy in force, swapped whole', () => {
  const first = new Policy({ pypi: { allow: [{ name: 'requests' }] } });
  const second = new Policy({ pypi: { allow: [{ name: 'requests' }, { name: 'numpy' }] } });
  const advisories = new Advisories([]);

  it('reads the policy file’s version as its SHA-256', () => {
    // sha256("a\n")
    expect(policyVersion(file('a.yaml', 'a\n'))).toEqual({
      file: join(dir, 'a.yaml'),
      sha256: '87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7',
    });
  });

  it('applies the advisories to the loaded policy, and each swap makes a new policy object with one consistent snapshot', () => {
    const v1 = policyVersion(file('p1.yaml', 'one'));
    const v2 = policyVersion(file('p2.yaml', 'two'));
    const live = new LivePolicy(first, advisories, v1);
    expect(live.policy).not.toBe(first); // withAdvisories: a new object
    expect(live.policy.advisories).toBe(advisories);
    expect(live.policy.pypi.size).toBe(1);
    expect(live.lastReload).toBeNull();
    const before = live.current();

    const applied = live.replacePolicy(second, v2, 1000);
    expect(applied).toBe(live.policy);
    expect(live.current()).toEqual({ policy: applied, advisories, version: v2 });
    expect(live.policy.pypi.size).toBe(2);
    expect(live.lastReload).toEqual({ at: 1000 });
    // A snapshot taken before the swap still holds the old triple whole.
    expect(before.version).toBe(v1);
    expect(before.policy.pypi.size).toBe(1);

    live.reloadFailed('bad YAML', 2000);
    expect(live.lastReload).toEqual({ at: 2000, error: 'bad YAML' });
    expect(live.policy).toBe(applied); // a failed reload keeps the policy in force

    const next = new Advisories([]);
    live.replaceAdvisories(next);
    expect(live.policy).not.toBe(applied); // pages rendered for the old object are not reused
    expect(live.policy.advisories).toBe(next);
    expect(live.advisories).toBe(next);
    expect(live.policy.pypi.size).toBe(2);
    expect(live.version).toBe(v2);
  });
});
