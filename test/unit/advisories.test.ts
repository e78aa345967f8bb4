import { describe, expect, it } from 'vitest';
import { Advisories, cvss3BaseScore, inRange, refuses, type OsvRecord } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';

const pypi = (name: string, extra: Partial<OsvRecord['affected'] extends (infer A)[] | undefined ? A : never>) => ({
  package: { ecosystem: 'PyPI', name },
  ...extra,
});

describe('OSV range semantics under PEP 440', () => {
  it('introduced / fixed with pre, post and dev releases', () => {
    const ev: Record<string, string>[] = [{ introduced: '1.0' }, { fixed: '1.2' }];
    expect(inRange('0.9', ev)).toBe(false);
    expect(inRange('1.0.dev0', ev)).toBe(false);
    expect(inRange('1.0rc1', ev)).toBe(false);
    expect(inRange('1.0', ev)).toBe(true);
    expect(inRange('1.0.0', ev)).toBe(true);
    expect(inRange('1.1.post1', ev)).toBe(true);
    expect(inRange('1.2.dev3', ev)).toBe(true);
    expect(inRange('1.2rc1', ev)).toBe(true);
    expect(inRange('1.2', ev)).toBe(false);
    expect(inRange('1.2.post1', ev)).toBe(false);
  });
  it('introduced "0", last_affected, limit, several ranges and epochs', () => {
    expect(inRange('0.0.1', [{ introduced: '0' }, { last_affected: '2.0' }])).toBe(true);
    expect(inRange('2.0', [{ introduced: '0' }, { last_affected: '2.0' }])).toBe(true);
    expect(inRange('2.0.post1', [{ introduced: '0' }, { last_affected: '2.0' }])).toBe(false);
    expect(inRange('5.0', [{ introduced: '1.0' }, { limit: '3.0' }])).toBe(false);
    expect(inRange('2.0', [{ introduced: '1.0' }, { limit: '3.0' }])).toBe(true);
    const two: Record<string, string>[] = [{ introduced: '1.0' }, { fixed: '1.1' }, { introduced: '2.0' }, { fixed: '2.1' }];
    expect(inRange('1.5', two)).toBe(false);
    expect(inRange('2.0.1', two)).toBe(true);
    // An epoch sorts above every version without one.
    expect(inRange('1!0.1', [{ introduced: '0' }, { fixed: '5.0' }])).toBe(false);
    expect(inRange('1!0.1', [{ introduced: '1!0.0' }])).toBe(true);
    expect(inRange('9.0', [{ introduced: '1!0.0' }])).toBe(false);
  });
  it('matches exact versions (also non-PEP 440 ones), ignores withdrawn records, and blocks MAL- hashes', () => {
    const adv = new Advisories([
      {
        id: 'PYSEC-1',
        aliases: ['CVE-2099-1'],
        affected: [pypi('Foo_Bar', { versions: ['1.0-legacy'], ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '2.0' }, { fixed: '2.5' }] }] })],
      },
      { id: 'GHSA-old', withdrawn: '2026-01-01T00:00:00Z', affected: [pypi('foo-bar', { versions: ['3.0'] })] },
      {
        id: 'MAL-2026-1',
        summary: 'Malicious code in reqeusts (PyPI)',
        affected: [
          pypi('reqeusts', {
            versions: ['1.0'],
            database_specific: { indicators: { package_integrity: [{ filename: 'x.whl', hashes: { sha256: 'a'.repeat(64) } }] } },
          }),
        ],
      },
    ]);
    expect(adv.matchPypi('foo.bar', '1.0-legacy').map((m) => m.id)).toEqual(['PYSEC-1']);
    expect(adv.matchPypi('FOO-BAR', '2.4.9').map((m) => m.id)).toEqual(['PYSEC-1']);
    expect(adv.matchPypi('foo-bar', '3.0')).toEqual([]);
    expect(adv.withdrawn).toBe(1);
    expect(adv.matchPypi('anything', '9', 'a'.repeat(64)).map((m) => m.id)).toEqual(['MAL-2026-1']);
    expect(adv.get('CVE-2099-1')?.id).toBe('PYSEC-1');
  });
});

describe('severity and the refusal level', () => {
  it('computes CVSS v3 base scores', () => {
    expect(cvss3BaseScore('CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H')).toBe(9.8);
    expect(cvss3BaseScore('CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H')).toBe(10);
    expect(cvss3BaseScore('CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N')).toBe(5.5);
    expect(cvss3BaseScore('CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N')).toBe(3.1);
    expect(cvss3BaseScore('CVSS:4.0/AV:N')).toBeUndefined();
  });
  it('refuses at or above the level; MAL- always', () => {
    const high = { id: 'GHSA-x', aliases: [], summary: '', malicious: false, severity: { score: 8.1, label: 'HIGH' as const } };
    const mal = { id: 'MAL-1', aliases: [], summary: '', malicious: true, severity: {} };
    expect(refuses('none', high)).toBe(false);
    expect(refuses('high', high)).toBe(true);
    expect(refuses('critical', high)).toBe(false);
    expect(refuses('none', mal)).toBe(true);
    const p = new Policy({ advisories: { refuse: 'high' } }).withAdvisories(
      new Advisories([
        { id: 'GHSA-1', database_specific: { severity: 'MODERATE' }, affected: [pypi('lib', { versions: ['1.0'] })] },
        {
          id: 'GHSA-2',
          severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
          affected: [pypi('lib', { versions: ['2.0'] })],
        },
      ]),
    );
    expect(p.pypiAdvisory('lib', '1.0')).toBeNull();
    expect(p.pypiAdvisory('lib', '2.0')?.reason).toMatch(/lib 2\.0 is affected by GHSA-2, severity CRITICAL 9\.8 \(policy advisories\.refuse: high\)/);
  });
});
