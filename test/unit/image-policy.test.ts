import { describe, expect, it } from 'vitest';
import { Advisories, type OsvRecord } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import type { InventoryView } from '../../src/policy/images.js';

/** OSV records in the schema osv.dev exports for Debian, Alpine and PyPI. */
const CRIT = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H';
const debian = (id: string, name: string, fixed: string | null, extra: Partial<OsvRecord> = {}): OsvRecord => ({
  id,
  upstream: [id.replace(/^DEBIAN-/, '')],
  modified: '2026-11-01T00:00:00Z',
  summary: `flaw in ${name}`,
  affected: [{ package: { ecosystem: 'Debian:12', name }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, ...(fixed ? [{ fixed }] : [])] }] }],
  ...extra,
});
const records: OsvRecord[] = [
  debian('DEBIAN-CVE-2026-0001', 'openssl', '3.0.15-1~deb12u1', { severity: [{ type: 'CVSS_V3', score: CRIT }] }),
  // Fixed below what is installed: does not match.
  debian('DEBIAN-CVE-2026-0002', 'openssl', '3.0.9-1', { severity: [{ type: 'CVSS_V3', score: CRIT }] }),
  // No fix yet, rated by a GHSA record of the same CVE (alias), not by itself.
  debian('DEBIAN-CVE-2026-0003', 'zlib', null),
  { id: 'GHSA-xxxx-yyyy-zzzz', aliases: ['CVE-2026-0003'], database_specific: { severity: 'CRITICAL' }, affected: [] },
  // Withdrawn: never matches.
  debian('DEBIAN-CVE-2026-0004', 'openssl', '9.9', { withdrawn: '2026-11-02T00:00:00Z', severity: [{ type: 'CVSS_V3', score: CRIT }] }),
  // Another release of Debian: does not match a Debian 12 image.
  {
    id: 'DEBIAN-CVE-2026-0005',
    affected: [{ package: { ecosystem: 'Debian:11', name: 'openssl' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '9' }] }] }],
    severity: [{ type: 'CVSS_V3', score: CRIT }],
  },
  {
    id: 'ALPINE-CVE-2026-0006',
    upstream: ['CVE-2026-0006'],
    affected: [
      { package: { ecosystem: 'Alpine:v3.20', name: 'openssl' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '3.3.1-r0' }] }] },
    ],
    severity: [{ type: 'CVSS_V3', score: CRIT }],
  },
  {
    id: 'GHSA-aaaa-bbbb-cccc',
    aliases: ['CVE-2026-0007'],
    summary: 'urllib3 leaks',
    database_specific: { severity: 'HIGH' },
    affected: [{ package: { ecosystem: 'PyPI', name: 'urllib3' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '2.0.0' }, { fixed: '2.9.0' }] }] }],
  },
];

const debImage: InventoryView = {
  os: { id: 'debian', versionId: '12', ecosystem: 'Debian:12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
  packages: [
    { type: 'deb', name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl', location: 'var/lib/dpkg/status' },
    { type: 'deb', name: 'zlib1g', version: '1:1.2.13.dfsg-1', source: 'zlib', location: 'var/lib/dpkg/status' },
    { type: 'pypi', name: 'urllib3', version: '2.8.0', location: 'usr/lib/python3/dist-packages/urllib3-2.8.0.dist-info' },
  ],
  unreadable: [],
};
const alpineImage: InventoryView = {
  os: { id: 'alpine', versionId: '3.20.0', ecosystem: 'Alpine:v3.20' },
  packages: [{ type: 'apk', name: 'libcrypto3', version: '3.3.0-r2', source: 'openssl', location: 'lib/apk/db/installed' }],
  unreadable: [],
};
const REPO = 'docker.io/library/python';
const DIGEST = `sha256:${'d'.repeat(64)}`;
const NOW = Date.UTC(2026, 10, 29);

const policy = (advisories: object) => new Policy({ advisories } as never).withAdvisories(new Advisories(records));

describe('the image gate', () => {
  it('matches OS packages by source name and release, PyPI packages by name, and names the worst with the fix', () => {
    const v = policy({ refuse: 'critical' }).judgeImage(REPO, [DIGEST], debImage, NOW);
    expect(v.findings.map((f) => `${f.id}:${f.package.name}:${f.fixed ?? '-'}`)).toEqual([
      'DEBIAN-CVE-2026-0001:libssl3:3.0.15-1~deb12u1',
      'DEBIAN-CVE-2026-0003:zlib1g:-',
      'GHSA-aaaa-bbbb-cccc:urllib3:2.9.0',
    ]);
    expect(v.findings[1].severity.label).toBe('CRITICAL');
    expect(v.decision.allow).toBe(false);
    if (v.decision.allow) return;
    expect(v.decision.code).toBe('advisory');
    expect(v.decision.reason).toContain('DEBIAN-CVE-2026-0001 (CVE-2026-0001) CRITICAL 9.8 in openssl (libssl3 3.0.11-1~deb12u2), fixed in 3.0.15-1~deb12u1');
    expect(v.decision.reason).toContain('advisories.exceptions');
    expect(v.findings.filter((f) => f.refusing).map((f) => f.id)).toEqual(['DEBIAN-CVE-2026-0001', 'DEBIAN-CVE-2026-0003']);
  });

  it('fixable_only leaves out advisories with no fix; a higher bar leaves out the HIGH one', () => {
    const v = policy({ refuse: 'high', images: { fixable_only: true } }).judgeImage(REPO, [DIGEST], debImage, NOW);
    expect(v.findings.filter((f) => f.refusing).map((f) => f.id)).toEqual(['DEBIAN-CVE-2026-0001', 'GHSA-aaaa-bbbb-cccc']);
  });

  it('per-repository settings override the default; none turns the gate off', () => {
    const p = policy({ refuse: 'critical', images: { repositories: [{ repository: 'docker.io/library/*', refuse: 'none' }] } });
    expect(p.images.gates(REPO)).toBe(false);
    expect(p.images.gates('ghcr.io/org/app')).toBe(true);
    expect(p.judgeImage(REPO, [DIGEST], debImage, NOW).decision.allow).toBe(true);
    // Whether anything is gated (the server then starts the gate's layer reader at once).
    expect(p.images.gatesAny()).toBe(true);
    expect(policy({ refuse: 'none', images: { repositories: [{ repository: 'ghcr.io/org/*', refuse: 'high' }] } }).images.gatesAny()).toBe(true);
    expect(policy({ refuse: 'none' }).images.gatesAny()).toBe(false);
    expect(new Policy({} as never).images.gatesAny()).toBe(false);
  });

  it('an exception by alias waives a finding until it expires, and only where it says', () => {
    const ex = (extra: object) =>
      policy({
        refuse: 'critical',
        exceptions: [
          { id: 'CVE-2026-0001', reason: 'not reachable', expires: '2026-12-31', ...extra },
          { id: 'DEBIAN-CVE-2026-0003', reason: 'no fix', expires: '2026-12-31' },
        ],
      });
    const ok = ex({}).judgeImage(REPO, [DIGEST], debImage, NOW);
    expect(ok.decision.allow).toBe(true);
    expect(ok.findings[0].excepted).toMatch(/advisories.exceptions\[0\]: not reachable \(until 2026-12-31\)/);
    // After the last day, it stops applying by itself.
    const later = ex({}).judgeImage(REPO, [DIGEST], debImage, Date.UTC(2027, 0, 1));
    expect(later.decision.allow).toBe(false);
    expect(later.notes.join()).toMatch(/expired on 2026-12-31/);
    expect(ex({ repository: 'ghcr.io/*' }).judgeImage(REPO, [DIGEST], debImage, NOW).decision.allow).toBe(false);
    // A digest may name the index the manifest was reached through.
    const idx = `sha256:${'e'.repeat(64)}`;
    expect(ex({ digest: idx }).judgeImage(REPO, [DIGEST, idx], debImage, NOW).decision.allow).toBe(true);
    expect(ex({ digest: idx }).judgeImage(REPO, [DIGEST], debImage, NOW).decision.allow).toBe(false);
  });

  it('refuses (by default) what it cannot judge: an unread database, an OS with no advisories imported', () => {
    const p = policy({ refuse: 'critical' });
    const bdb = p.judgeImage(
      REPO,
      [DIGEST],
      { ...alpineImage, packages: [], unreadable: ['var/lib/rpm/Packages is an rpm database in the BerkeleyDB format'] },
      NOW,
    );
    expect(bdb.decision.allow).toBe(false);
    expect(!bdb.decision.allow && bdb.decision.code).toBe('unjudged');
    const ubuntu: InventoryView = {
      os: { id: 'ubuntu', ecosystem: 'Ubuntu:22.04:LTS' },
      packages: [{ type: 'deb', name: 'bash', version: '5.1-6ubuntu1', source: 'bash', location: 'var/lib/dpkg/status' }],
      unreadable: [],
    };
    const u = p.judgeImage(REPO, [DIGEST], ubuntu, NOW);
    expect(!u.decision.allow && u.decision.reason).toMatch(/no advisories for Ubuntu:22.04:LTS are imported/);
    expect(policy({ refuse: 'critical', images: { unjudged: 'allow' } }).judgeImage(REPO, [DIGEST], ubuntu, NOW).decision.allow).toBe(true);
  });

  it('Alpine packages match in Alpine order by origin; a clean image passes', () => {
    const v = policy({ refuse: 'critical' }).judgeImage(REPO, [DIGEST], alpineImage, NOW);
    expect(v.findings.map((f) => f.id)).toEqual(['ALPINE-CVE-2026-0006']);
    const clean = policy({ refuse: 'critical' }).judgeImage(
      REPO,
      [DIGEST],
      { ...alpineImage, packages: [{ ...alpineImage.packages[0], version: '3.3.1-r0' }] },
      NOW,
    );
    expect(clean.decision.allow).toBe(true);
    expect(clean.findings).toEqual([]);
  });

  it('checks exceptions when the policy loads: a reason and a real expiry date are required', () => {
    expect(() => new Policy({ advisories: { exceptions: [{ id: 'CVE-1', reason: 'x', expires: '2026-02-30' }] } } as never)).toThrow(/YYYY-MM-DD/);
    expect(() => new Policy({ advisories: { exceptions: [{ id: 'CVE-1', reason: ' ', expires: '2026-02-03' }] } } as never)).toThrow(/needs a reason/);
  });
});
