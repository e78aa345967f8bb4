import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { approvalFor } from '../../src/console/approval.js';
import { formatAge, parseInstant, Policy, PolicyError } from '../../src/policy/index.js';
import { parseDuration } from '../../src/policy/age.js';
import { filterProject } from '../../src/pypi/filter.js';
import type { PyFile } from '../../src/pypi/model.js';

const H = (c: string) => c.repeat(64);
const DAY = 86_400_000;
const NOW = Date.parse('2026-12-03T12:00:00Z');
const ago = (ms: number) => NOW - ms;

describe('minimum age: durations and times', () => {
  it('reads durations as written in a policy', () => {
    expect(parseDuration('7d', ['x'])).toBe(7 * DAY);
    expect(parseDuration('36h', ['x'])).toBe(36 * 3_600_000);
    expect(parseDuration('1d12h', ['x'])).toBe(36 * 3_600_000);
    expect(parseDuration('2w', ['x'])).toBe(14 * DAY);
    expect(parseDuration(0, ['x'])).toBe(0);
    for (const bad of ['7', 'seven days', '7 d', '-1d', '1.5d', '']) expect(() => parseDuration(bad, ['pypi', 'min_age']), bad).toThrow(PolicyError);
  });
  it('reads RFC 3339 times only', () => {
    expect(parseInstant('2024-01-01T00:00:00.000000Z')).toBe(Date.parse('2024-01-01T00:00:00Z'));
    expect(parseInstant('2024-01-01T02:00:00+02:00')).toBe(Date.parse('2024-01-01T00:00:00Z'));
    for (const bad of ['2024', '2024-01-01', 'yesterday', 12, null, undefined]) expect(parseInstant(bad), String(bad)).toBeNull();
  });
  it('says ages as people do', () => {
    expect(formatAge(3 * DAY + 4 * 3_600_000 + 5)).toBe('3d 4h');
    expect(formatAge(5 * 3_600_000 + 12 * 60_000)).toBe('5h 12m');
    expect(formatAge(40_000)).toBe('40s');
  });
});

describe('minimum age: PyPI decisions', () => {
  const p = new Policy({
    pypi: {
      min_age: '7d',
      internal: ['acme-*'],
      allow: [
        { name: 'requests' },
        { name: 'torch', versions: '==2.5.1', sha256: [H('a')] },
        { name: 'fast', min_age: '1h' },
        { name: 'never', min_age: 0 },
        { name: 'frozen', min_age: 0, exclude_newer: '2026-06-01T00:00:00Z' },
        { name: 'acme-tools' },
        { name: 'both', versions: '>=1' },
        { name: 'both', versions: '==2.0', sha256: [H('b')] },
      ],
    },
  }).pypi;

  it('refuses a release younger than the ecosystem min_age, naming its age, the rule, when it is served and the pin', () => {
    const d = p.decideAge('requests', '2.33.0', undefined, ago(2 * DAY + 3 * 3_600_000), NOW);
    expect(d).toMatchObject({ allow: false, code: 'too_new', rule: 'pypi.min_age', until: ago(2 * DAY + 3 * 3_600_000) + 7 * DAY });
    expect(d!.reason).toBe(
      "requests 2.33.0 was published 2026-12-01T09:00:00.000Z, 2d 3h ago, younger than the minimum age 7d (policy pypi.min_age); it is served from 2026-12-08T09:00:00.000Z; to take it now, review it and pin it exactly with its hashes (an exact pin overrides the minimum age): airlock pin pypi 'requests==2.33.0'",
    );
    expect(p.decideAge('requests', '2.32.0', undefined, ago(7 * DAY), NOW)).toBeNull();
  });
  it('lets a rule override the ecosystem (shorter, none, or an absolute cut-off)', () => {
    expect(p.decideAge('fast', '1.0', undefined, ago(2 * 3_600_000), NOW)).toBeNull();
    expect(p.decideAge('fast', '1.0', undefined, ago(30 * 60_000), NOW)).toMatchObject({ rule: 'pypi.allow[2].min_age' });
    expect(p.decideAge('never', '1.0', undefined, ago(1000), NOW)).toBeNull();
    expect(p.decideAge('frozen', '1.0', undefined, Date.parse('2026-05-31T00:00:00Z'), NOW)).toBeNull();
    const f = p.decideAge('frozen', '1.1', undefined, Date.parse('2026-06-02T00:00:00Z'), NOW);
    expect(f).toMatchObject({ rule: 'pypi.allow[4].exclude_newer', until: null });
    expect(f!.reason).toContain('after 2026-06-01T00:00:00.000Z');
  });
  it('an exact pin with hashes overrides min_age; any matching exempt rule does', () => {
    expect(p.decideAge('torch', '2.5.1', H('a'), ago(60_000), NOW)).toBeNull();
    expect(p.decideAge('both', '2.0', H('b'), ago(60_000), NOW)).toBeNull();
    expect(p.decideAge('both', '2.0', H('c'), ago(60_000), NOW)).toMatchObject({ code: 'too_new', rule: 'pypi.min_age' });
  });
  it('a missing upload time is refused by default and allowed with on_missing_time: allow', () => {
    const d = p.decideAge('requests', '2.33.0', undefined, null, NOW);
    expect(d).toMatchObject({ code: 'too_new', rule: 'pypi.on_missing_time', until: null });
    expect(d!.reason).toContain('the upstream gives no upload time');
    const lax = new Policy({ pypi: { min_age: '7d', on_missing_time: 'allow', allow: [{ name: 'requests' }] } }).pypi;
    expect(lax.decideAge('requests', '2.33.0', undefined, null, NOW)).toBeNull();
    // No age set anywhere: no time is needed.
    expect(new Policy({ pypi: { allow: [{ name: 'requests' }] } }).pypi.decideAge('requests', '1', undefined, null, NOW)).toBeNull();
  });
  it('never ages the internal index', () => {
    expect(p.decideAge('acme-tools', '1.0', undefined, ago(1000), NOW)).toBeNull();
  });
  it('refuses bad settings with their path', () => {
    expect(() => new Policy({ pypi: { min_age: '7 days' } })).toThrow(/bad duration "7 days"/);
    try {
      new Policy({ pypi: { allow: [{ name: 'x', exclude_newer: 'last week' }] } });
    } catch (e) {
      expect((e as PolicyError).path).toEqual(['pypi', 'allow', 0, 'exclude_newer']);
    }
    expect(() => new Policy({ pypi: { allow: [{ name: 'x', exclude_newer: 'last week' }] } })).toThrow(PolicyError);
  });
});

describe('minimum age: index pages', () => {
  const policy = new Policy({ pypi: { min_age: '7d', allow: [{ name: 'lib' }] } });
  const file = (v: string, t?: string): PyFile => ({
    filename: `lib-${v}-py3-none-any.whl`,
    url: `https://files.example/lib-${v}-py3-none-any.whl`,
    hashes: { sha256: H(v.replace(/\./g, '').slice(0, 1)) },
    yanked: false,
    ...(t ? { uploadTime: t } : {}),
  });
  it('leaves too-new releases off the page and says when to filter again', () => {
    const f = filterProject(
      { name: 'lib', files: [file('1.0', '2026-10-01T00:00:00Z'), file('2.0', '2026-12-01T00:00:00Z'), file('3.0', '2026-12-03T00:00:00Z'), file('4.0')] },
      policy,
      NOW,
    );
    expect(f.versions).toEqual(['1.0']);
    expect(f.validUntil).toBe(Date.parse('2026-12-08T00:00:00Z'));
    const later = filterProject({ name: 'lib', files: [file('1.0', '2026-10-01T00:00:00Z'), file('2.0', '2026-12-01T00:00:00Z')] }, policy, f.validUntil);
    expect(later.versions).toEqual(['1.0', '2.0']);
    expect(later.validUntil).toBe(Infinity);
  });
});

describe('minimum age: configuration and approval', () => {
  const write = (text: string) => {
    const f = join(mkdtempSync(join(tmpdir(), 'airlock-age-')), 'airlock.yaml');
    writeFileSync(f, text);
    return f;
  };
  const errorOf = (f: string) => {
    try {
      loadConfig(f);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error('expected a ConfigError');
  };
  it('loads min_age, exclude_newer (quoted or a YAML timestamp) and on_missing_time', () => {
    const c = loadConfig(
      write(
        'policy:\n  pypi:\n    min_age: 7d\n    on_missing_time: allow\n    exclude_newer: 2026-11-01T00:00:00Z\n    allow:\n      - { name: lib, min_age: 36h, exclude_newer: "2026-11-02T00:00:00Z" }\n',
      ),
    );
    expect(c.policy.pypi.decideAge('lib', '1', undefined, NOW - 35 * 3_600_000, NOW)).toMatchObject({ rule: 'pypi.allow[0].exclude_newer' });
  });
  it('names the file and line of a bad setting in one line', () => {
    const msg = errorOf(write('policy:\n  pypi:\n    allow:\n      - name: lib\n        min_age: 7days\n'));
    expect(msg).toMatch(/airlock\.yaml:5: .*pypi\.allow\[0\]\.min_age: bad duration "7days"/);
    expect(msg).not.toContain('\n');
    expect(errorOf(write('policy:\n  pypi:\n    on_missing_time: maybe\n'))).toMatch(/airlock\.yaml:3: .*on_missing_time/);
  });
  it('offers the exact pin as the approval of a too-new release', () => {
    const a = approvalFor({ id: 1, ts: 0, client: 'c', ecosystem: 'pypi', name: 'lib', version: '2.0', cache: 'none', decision: 'deny', code: 'too_new' });
    expect(a.command).toBe("airlock pin pypi 'lib==2.0'");
    expect(a.note).toContain('an exact pin overrides min_age');
  });
  it('offers the pull by digest as the approval of a too-new image tag (an exact pin has no meaning there)', () => {
    const a = approvalFor({
      id: 1,
      ts: 0,
      client: 'c',
      ecosystem: 'oci',
      name: 'r.io/a',
      version: 'v1',
      sha256: H('d'),
      cache: 'none',
      decision: 'deny',
      code: 'too_new',
    });
    expect(a.command).toBeUndefined();
    expect(a.note).toContain(`pull it by digest (r.io/a@sha256:${H('d')}): a pull by digest overrides min_age`);
  });
});

describe('minimum age: the warm page cache', () => {
  it('serves a release from the moment it comes of age, from the same warm page (route and fast path share pageAnswer)', async () => {
    const { newPages, pageAnswer } = await import('../../src/pypi/pages.js');
    const { vi } = await import('vitest');
    const policy = new Policy({ pypi: { min_age: '7d', allow: [{ name: 'lib' }] } });
    const f = (v: string, t: string): PyFile => ({
      filename: `lib-${v}-py3-none-any.whl`,
      url: 'https://x/',
      hashes: { sha256: H(v[0]) },
      yanked: false,
      uploadTime: t,
    });
    const page = { project: { name: 'lib', files: [f('1.0', '2026-10-01T00:00:00Z'), f('2.0', '2026-12-01T00:00:00Z')] }, fetchedAt: 0, stale: false };
    const pages = newPages({ pageMaxAge: 60 } as never);
    const versions = () => JSON.parse(pageAnswer(pages, page, policy, 'application/vnd.pypi.simple.v1+json', undefined).body.toString()).versions;
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.parse('2026-12-07T23:59:59Z'));
      expect(versions()).toEqual(['1.0']);
      vi.setSystemTime(Date.parse('2026-12-08T00:00:00Z'));
      expect(versions()).toEqual(['1.0', '2.0']);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('minimum age: OCI decisions (from when Airlock first saw the digest)', () => {
  const D = `sha256:${H('d')}`;
  const p = new Policy({
    oci: {
      min_age: '7d',
      allow: [
        { repository: 'r.io/a', tags: { v1: D } },
        { repository: 'r.io/b', tags: { v1: D }, min_age: 0 },
        { repository: 'r.io/c', tags: { v1: D }, min_age: '1h', exclude_newer: '2026-11-01T00:00:00Z' },
      ],
    },
  });
  it('refuses a tag whose digest is younger than oci.min_age, naming its first sight, age, rule, when it is served and the digest pull', () => {
    const v = p.oci.decideTagAge('r.io/a', 'v1', D, ago(2 * DAY), NOW)!;
    expect(v).toMatchObject({ allow: false, code: 'too_new', rule: 'oci.min_age', until: ago(2 * DAY) + 7 * DAY });
    expect(v.reason).toBe(
      `r.io/a:v1 (${D}) was first seen by Airlock 2026-12-01T12:00:00.000Z, 2d ago, younger than the minimum age 7d (policy oci.min_age); it is served from 2026-12-08T12:00:00.000Z; to take it now, review it and pull it by digest (a digest pin, which a person reviewed, overrides the minimum age): r.io/a@${D}`,
    );
    expect(p.oci.decideTagAge('r.io/a', 'v1', D, ago(8 * DAY), NOW)).toBeNull();
    expect(p.oci.aged('r.io/a')).toBe(true);
  });
  it('lets a rule override the ecosystem: none, or its own min_age and cut-off', () => {
    expect(p.oci.aged('r.io/b')).toBe(false);
    expect(p.oci.decideTagAge('r.io/b', 'v1', D, NOW, NOW)).toBeNull();
    const cut = Date.parse('2026-11-01T00:00:00Z');
    expect(p.oci.decideTagAge('r.io/c', 'v1', D, cut - DAY, NOW)).toBeNull();
    expect(p.oci.decideTagAge('r.io/c', 'v1', D, ago(2 * 3_600_000), NOW)).toMatchObject({ rule: 'oci.allow[2].exclude_newer', code: 'too_new' });
    expect(p.oci.decideTagAge('r.io/c', 'v1', D, cut - 30 * 60_000, cut)).toMatchObject({ rule: 'oci.allow[2].min_age', code: 'too_new' });
    expect(new Policy({ oci: { allow: [{ repository: 'r.io/a', tags: { v1: D } }] } }).oci.aged('r.io/a')).toBe(false);
  });
  it('refuses bad settings with their path', () => {
    const pathOf = (input: ConstructorParameters<typeof Policy>[0]) => {
      try {
        new Policy(input);
      } catch (e) {
        return (e as PolicyError).path;
      }
      return null;
    };
    expect(pathOf({ oci: { min_age: '7', allow: [] } })).toEqual(['oci', 'min_age']);
    expect(pathOf({ oci: { allow: [{ repository: 'r.io/a', tags: { v1: D }, exclude_newer: 'soon' }] } })).toEqual(['oci', 'allow', 0, 'exclude_newer']);
  });
});
