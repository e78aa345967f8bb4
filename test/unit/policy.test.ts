import { describe, expect, it } from 'vitest';
import { Policy, PolicyError } from '../../src/policy/index.js';

const H = (c: string) => c.repeat(64);

describe('PyPI policy decisions', () => {
  const p = new Policy({
    pypi: {
      internal: ['acme-*', 'Corp_?'],
      allow: [
        { name: 'requests', versions: '>=2.31,<3' },
        { name: 'torch', versions: '==2.5.1', sha256: [H('a'), H('B')] },
        { name: 'Tiny.Lib', versions: '>=1,<2' },
        { name: 'tiny-lib', versions: '==3.0' },
        { name: 'anything' },
        { name: 'pre', versions: '>=1', prereleases: true },
      ],
      deny: [{ name: 'requests', versions: '==2.32.0', reason: 'yanked upstream' }, { name: 'evil', reason: 'typosquat' }, { name: 'acme-bad' }],
    },
  }).pypi;

  it('allows versions inside a specifier and names the rule', () => {
    expect(p.decideFile('requests', '2.31.0', undefined)).toEqual({ allow: true, rule: 'pypi.allow[0]' });
    expect(p.decideFile('anything', '0.0.1', undefined)).toEqual({ allow: true, rule: 'pypi.allow[4]' });
  });
  it('refuses outside the range with an actionable reason', () => {
    const d = p.decideFile('tiny-lib', '2.0', undefined);
    expect(d).toMatchObject({ allow: false, code: 'version_not_allowed' });
    expect(!d.allow && d.reason).toBe('tiny-lib 2.0 is outside the allowed range >=1,<2 (policy rule pypi.allow[2]) or ==3.0 (policy rule pypi.allow[3])');
    expect(p.decideFile('tiny-lib', '3.0', undefined)).toEqual({ allow: true, rule: 'pypi.allow[3]' });
  });
  it('excludes pre-releases unless the rule admits them', () => {
    expect(p.decideFile('requests', '2.33.0rc1', undefined).allow).toBe(false);
    expect(p.decideFile('pre', '2.0b1', undefined).allow).toBe(true);
  });
  it('lets deny win over allow', () => {
    const d = p.decideFile('requests', '2.32.0', undefined);
    expect(d).toMatchObject({ allow: false, code: 'denied', rule: 'pypi.deny[0]' });
    expect(!d.allow && d.reason).toContain('yanked upstream');
    expect(p.decideProject('evil')).toMatchObject({ allow: false, code: 'denied', rule: 'pypi.deny[1]' });
  });
  it('checks pinned file hashes, case-insensitively', () => {
    expect(p.decideFile('torch', '2.5.1', H('b')).allow).toBe(true);
    const d = p.decideFile('torch', '2.5.1', H('c'));
    expect(d).toMatchObject({ allow: false, code: 'hash_not_pinned', rule: 'pypi.allow[1]' });
    expect(p.decideFile('torch', '2.5.2', H('a'))).toMatchObject({ allow: false, code: 'version_not_allowed' });
  });
  it('routes internal names to the internal index, including normalised spellings', () => {
    expect(p.decideProject('acme-utils')).toEqual({ allow: true, source: 'internal', rule: 'pypi.internal[0]' });
    expect(p.decideProject('corp-x')).toEqual({ allow: true, source: 'internal', rule: 'pypi.internal[1]' });
    expect(p.decideProject('corp-xy')).toMatchObject({ allow: false, code: 'not_allowlisted' });
    expect(p.decideProject('acme-bad')).toMatchObject({ allow: false, code: 'denied' });
    expect(p.decideFile('acme-utils', '99.0', undefined)).toEqual({ allow: true, rule: 'pypi.internal[0]' });
  });
  it('refuses names not on the list, saying how to get them added', () => {
    const d = p.decideProject('numpy');
    expect(d).toMatchObject({ allow: false, code: 'not_allowlisted' });
    expect(!d.allow && d.reason).toContain("airlock pin pypi 'numpy' for the newest release, or 'numpy==VERSION'");
  });
  it('lists approved names', () => {
    expect(p.listedNames()).toEqual(['anything', 'pre', 'requests', 'tiny-lib', 'torch']);
  });

  it('rejects bad specifiers, globs, names and hashes with their path', () => {
    const cases: [object, string][] = [
      [{ allow: [{ name: 'x', versions: '>=2.31;<3' }] }, 'pypi.allow[0].versions'],
      [{ allow: [{ name: 'x', versions: '=>1' }] }, 'pypi.allow[0].versions'],
      [{ allow: [{ name: '../x' }] }, 'pypi.allow[0].name'],
      [{ allow: [{ name: 'x', sha256: ['abc'] }] }, 'pypi.allow[0].sha256[0]'],
      [{ internal: ['acme/*'] }, 'pypi.internal[0]'],
      [{ internal: ['[a-z]*'] }, 'pypi.internal[0]'],
      [{ deny: [{ name: 'ok' }, { name: 'y', versions: 'latest' }] }, 'pypi.deny[1].versions'],
    ];
    for (const [input, path] of cases) {
      try {
        new Policy({ pypi: input });
        expect.unreachable(JSON.stringify(input));
      } catch (e) {
        expect(e).toBeInstanceOf(PolicyError);
        expect(
          (e as PolicyError).path
            .map((x) => (typeof x === 'number' ? `[${x}]` : `.${x}`))
            .join('')
            .slice(1)
            .replace(/\.\[/g, '['),
        ).toBe(path);
      }
    }
  });
});
