import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { records } from '../helpers/http.js';
import { buildDist, pip } from '../helpers/pip.js';

const JSON_ACCEPT = 'application/vnd.pypi.simple.v1+json';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** An upload time `ms` before now, as PyPI writes it (PEP 700). */
const ago = (ms: number) => new Date(Date.now() - ms).toISOString().replace('Z', '000Z');

/**
 * Minimum age (issue 27) with the real pip, against an upstream whose upload times the test sets:
 * pip gets the newest old-enough release, a too-new file asked for directly is refused with its
 * age, an exact pin with hashes overrides, a missing time is refused by default.
 */
describe('minimum age through Airlock', () => {
  const pub = new FakeIndex();
  let a: TestAirlock;
  let lax: TestAirlock | undefined;
  const index = (x: TestAirlock = a) => `${x.url}/pypi/simple/`;
  const target = () => mkdtempSync(join(tmpdir(), 'airlock-age-'));
  const d = {
    age10: { ...buildDist({ name: 'agelib', version: '1.0' }), uploadTime: ago(30 * DAY) },
    age11: { ...buildDist({ name: 'agelib', version: '1.1' }), uploadTime: ago(10 * DAY) },
    age20: { ...buildDist({ name: 'agelib', version: '2.0' }), uploadTime: ago(HOUR) },
    pin10: { ...buildDist({ name: 'pinlib', version: '1.0' }), uploadTime: ago(30 * DAY) },
    pin20: { ...buildDist({ name: 'pinlib', version: '2.0' }), uploadTime: ago(HOUR) },
    cut10: { ...buildDist({ name: 'cutlib', version: '1.0' }), uploadTime: ago(30 * DAY) },
    cut11: { ...buildDist({ name: 'cutlib', version: '1.1' }), uploadTime: ago(10 * DAY) },
    none10: { ...buildDist({ name: 'notime', version: '1.0' }), uploadTime: null },
  };

  beforeAll(async () => {
    await pub.start();
    for (const f of Object.values(d)) pub.add(f.filename.split('-')[0], f);
    const policy = (extra: string) => `
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
  index_ttl: 0
policy:
  pypi:
    min_age: 7d
${extra}    allow:
      - { name: agelib }
      - { name: pinlib, versions: "==2.0", sha256: ["${sha256(d.pin20.bytes)}"] }
      - { name: cutlib, min_age: 0, exclude_newer: "${ago(20 * DAY)}" }
      - { name: notime }
`;
    a = await startAirlock(policy(''));
    lax = await startAirlock(policy('    on_missing_time: allow\n'));
  });
  afterEach(() => {
    pub.format = 'json';
  });
  afterAll(async () => {
    await a?.stop();
    await lax?.stop();
    await pub.stop();
  });

  it('pip gets the newest release that is old enough', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'agelib']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual([d.age11.filename]);
    const cut = target();
    const c = await pip(['download', '--index-url', index(), '--no-deps', '-d', cut, 'cutlib']);
    expect(c.code, c.out).toBe(0);
    expect(readdirSync(cut)).toEqual([d.cut10.filename]);
  });

  it('serves upload-time in its own JSON pages (PEP 700), and only old-enough versions', async () => {
    const res = await fetch(`${a.url}/pypi/simple/agelib/`, { headers: { accept: JSON_ACCEPT } });
    expect(res.status).toBe(200);
    const page = (await res.json()) as { meta: { 'api-version': string }; versions: string[]; files: { filename: string; 'upload-time': string }[] };
    expect(page.meta['api-version']).toBe('1.1');
    expect(page.versions).toEqual(['1.0', '1.1']);
    expect(page.files.map((f) => [f.filename, f['upload-time']])).toEqual([
      [d.age10.filename, d.age10.uploadTime],
      [d.age11.filename, d.age11.uploadTime],
    ]);
  });

  it('refuses a too-new file asked for directly, naming its age, the rule and the pin; on record as too_new', async () => {
    const dir = target();
    const r = await pip(['download', '--no-deps', '-d', dir, `${a.url}/pypi/files/agelib/${d.age20.filename}`]);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/403 Client Error: agelib 2\.0 was published \S+, (59m|1h) ago, younger than the minimum age 7d \(policy pypi\.min_age\)/);
    const res = await fetch(`${a.url}/pypi/files/agelib/${d.age20.filename}`);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("airlock pin pypi 'agelib==2.0'");
    expect(pub.count(`/files/${d.age20.filename}`)).toBe(0);
    const rows = (await records(a, 'decision=deny')).filter((x) => x.name === 'agelib');
    expect(rows[0]).toMatchObject({ code: 'too_new', rule: 'pypi.min_age', version: '2.0', filename: d.age20.filename });
    // pip asked for the version by name sees only the old-enough ones.
    const v = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'agelib==2.0']);
    expect(v.code).not.toBe(0);
    expect(v.out).toContain('from versions: 1.0, 1.1');
  });

  it('airlock pin pypi NAME takes the newest release old enough, as pip does (dist/: npm run build first)', async () => {
    const r = await airlockCli(['pin', 'pypi', 'agelib', '--print', '--config', a.configFile]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ name: 'agelib', versions: '==1.1', sha256: [sha256(d.age11.bytes)] });
    const none = await airlockCli(['pin', 'pypi', 'notime', '--print', '--config', a.configFile]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('every final release of notime is younger than pypi.min_age (or has no upload time)');
  });

  it('an exact pin with hashes overrides min_age', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'pinlib']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual([d.pin20.filename]);
  });

  it('refuses a release without an upload time by default, and allows it with on_missing_time: allow', async () => {
    const res = await fetch(`${a.url}/pypi/files/notime/${d.none10.filename}`);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain(
      'the upstream gives no upload time, so its age cannot be checked against the minimum age (policy pypi.on_missing_time: refuse',
    );
    const page = (await (await fetch(`${a.url}/pypi/simple/notime/`, { headers: { accept: JSON_ACCEPT } })).json()) as { versions: string[] };
    expect(page.versions).toEqual([]);
    const dir = target();
    const r = await pip(['download', '--index-url', index(lax!), '--no-deps', '-d', dir, 'notime']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual([d.none10.filename]);
  });

  it('an HTML upstream gives no upload times: its releases count as without one', async () => {
    pub.format = 'html';
    const page = (await (await fetch(`${a.url}/pypi/simple/agelib/`, { headers: { accept: JSON_ACCEPT } })).json()) as { versions: string[] };
    expect(page.versions).toEqual([]);
    const open = (await (await fetch(`${lax!.url}/pypi/simple/agelib/`, { headers: { accept: JSON_ACCEPT } })).json()) as { versions: string[] };
    expect(open.versions).toEqual(['1.0', '1.1', '2.0']);
  });
});
