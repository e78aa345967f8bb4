import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { onAdvisoriesApplied, clearAdvisoriesAppliedHooks, type AdvisoriesChange } from '../../src/advisories/applied.js';
import { OsvFeed } from '../../src/advisories/feed.js';
import { AdvisoryFeeds } from '../../src/advisories/sync.js';
import { Authenticator } from '../../src/auth/tokens.js';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { airlockCli } from '../helpers/cli.js';
import { rawGet } from '../helpers/http.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { consoleLogin } from '../helpers/console-login.js';

const CRITICAL = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H';
const wheel = (v: string) => `tinylib-${v}-py3-none-any.whl`;

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * advisories.sources (issue 28) against an OSV export on loopback in osv.dev's layout: the first
 * sync takes all.zip, the next ones modified_id.csv and only the changed records, each applied to
 * the policy in force with no SIGHUP; a corrupt or truncated all.zip, or a record that is not OSV,
 * is rejected and the advisories in force stay.
 */
describe('advisory feeds', () => {
  const feed = new OsvFeedServer();
  const index = new FakeIndex();
  let a: TestAirlock;
  let yaml = '';
  const applied: AdvisoriesChange[] = [];

  beforeAll(async () => {
    await Promise.all([feed.start(), index.start()]);
    feed.put(
      'PyPI',
      { id: 'PYSEC-0000-1', modified: '2026-11-01T00:00:00.123456Z', affected: [{ package: { ecosystem: 'PyPI', name: 'otherlib' }, versions: ['0.1'] }] },
      { id: 'PYSEC-0000-2', modified: '2026-11-02T00:00:00Z', affected: [{ package: { ecosystem: 'PyPI', name: 'otherlib' }, versions: ['0.2'] }] },
    );
    index
      .add('tinylib', { filename: wheel('1.0'), bytes: Buffer.from('tinylib 1.0') })
      .add('tinylib', { filename: wheel('1.1'), bytes: Buffer.from('tinylib 1.1') });
    onAdvisoriesApplied(async (c) => void applied.push(c));
    yaml = `
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
advisories:
  sources:
    - { url: "${feed.url}", ecosystem: PyPI }
  interval: 5
  poll: 0.5
policy:
  advisories: { refuse: high }
  pypi:
    allow:
      - { name: tinylib }
`;
    a = await startAirlock(yaml);
  }, 30_000);
  afterAll(async () => {
    clearAdvisoriesAppliedHooks();
    await a?.stop();
    await Promise.all([feed.stop(), index.stop()]);
  });
  afterEach(() => void (feed.tamper = null));

  const file = (v: string) => `${a.url}/pypi/files/tinylib/${wheel(v)}`;

  it('syncs all.zip first, then only the changed records, and applies them without a SIGHUP: the next pull of a newly affected version is refused', async () => {
    const first = await until('the first sync', async () => (await a.airlock.meta.advisorySyncs({ source: 'osv-pypi', limit: 5 })).at(-1));
    expect(first).toMatchObject({ mode: 'full', outcome: 'changed', changed: 2, highWater: '2026-11-02T00:00:00.000000000Z', error: null });
    expect(feed.asked('.zip')).toEqual(['/PyPI/all.zip']);
    expect((await rawGet(file('1.0'))).status).toBe(200);

    // A new advisory for tinylib < 1.1, and a change to one of the two known records.
    feed.put(
      'PyPI',
      {
        id: 'GHSA-feed-tiny-0001',
        modified: '2026-12-03T10:00:00.5Z',
        summary: 'tinylib runs untrusted input',
        severity: [{ type: 'CVSS_V3', score: CRITICAL }],
        affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
      },
      { id: 'PYSEC-0000-2', modified: '2026-12-03T09:00:00Z', affected: [{ package: { ecosystem: 'PyPI', name: 'otherlib' }, versions: ['0.2', '0.3'] }] },
    );
    // The scheduled sync (advisories.interval) brings it; the poll applies it. No SIGHUP, no reload call.
    const refused = await until('the pull refused', async () => {
      const r = await rawGet(file('1.0'));
      return r.status === 403 ? r : null;
    });
    expect(refused.body.toString()).toMatch(/tinylib 1\.0 is affected by GHSA-feed-tiny-0001/);
    expect((await rawGet(file('1.1'))).status).toBe(200);
    expect(feed.asked('.zip')).toEqual(['/PyPI/all.zip']);
    expect(feed.asked('.json').sort()).toEqual(['/PyPI/GHSA-feed-tiny-0001.json', '/PyPI/PYSEC-0000-2.json']);
    expect(feed.asked('modified_id.csv').length).toBeGreaterThanOrEqual(1);
    const inc = (await a.airlock.meta.advisorySyncs({ source: 'osv-pypi', limit: 10 })).find((s) => s.outcome === 'changed' && s.mode === 'incremental');
    expect(inc).toMatchObject({ changed: 2, highWater: '2026-12-03T10:00:00.500000000Z' });
    await until('the hook', async () => applied.length >= 2);
    expect(applied[0]).toEqual({ changedIds: ['PYSEC-0000-1', 'PYSEC-0000-2'], source: 'osv-pypi' });
    expect(applied[1]).toEqual({ changedIds: ['GHSA-feed-tiny-0001', 'PYSEC-0000-2'], source: 'osv-pypi' });

    // Freshness: the metric per source, and no warning on /-/readyz while it is fresh.
    const metrics = await (await fetch(`${a.url}/-/metrics`)).text();
    expect(metrics).toMatch(/airlock_advisories_age_seconds\{source="osv-pypi"\} \d/);
    expect(metrics).toMatch(/airlock_advisory_syncs_total\{source="osv-pypi",outcome="changed"\} 2/);
    expect(await (await fetch(`${a.url}/-/readyz`)).json()).toEqual({ status: 'ready' });
  }, 60_000);

  /** A sync of the same feed by hand, all.zip every time (incremental off), into the same store. */
  const fullSync = (maxAgeMs = 0) =>
    new AdvisoryFeeds({
      meta: a.airlock.meta,
      feed: new OsvFeed(new UpstreamHttp(), { maxBytes: 1 << 20, timeoutMs: 10_000, maxIncremental: 10 }),
      sources: [{ name: 'by-hand', url: feed.url, ecosystem: 'PyPI', incremental: false }],
      intervalMs: 3_600_000,
      pollMs: 0,
      maxAgeMs,
      apply: () => a.airlock.reloadAdvisories(),
      owner: 'test',
      log: a.airlock.log,
    });

  it('rejects a corrupt or truncated all.zip, and a record that is not OSV; the advisories in force stay', async () => {
    const before = { gen: await a.airlock.meta.advisoryGeneration(), n: (await a.airlock.meta.listAdvisories()).length };
    const f = fullSync();
    // A flipped byte inside the first entry's deflated data: it no longer inflates, or fails its CRC.
    feed.tamper = (z) => {
      const c = Buffer.from(z);
      const data = 30 + c.readUInt16LE(26) + c.readUInt16LE(28);
      c[data + 5] ^= 0x40;
      return c;
    };
    const corrupt = await f.syncNow({ name: 'by-hand', url: feed.url, ecosystem: 'PyPI', incremental: false });
    expect(corrupt).toMatchObject({ outcome: 'failed', mode: 'full', changed: 0 });
    expect(corrupt.error).toMatch(/by-hand: all\.zip: zip: \S+\.json (fails its CRC check|does not inflate|is \d+ bytes)/);
    feed.tamper = (z) => z.subarray(0, z.length - 40);
    const truncated = await f.syncNow({ name: 'by-hand', url: feed.url, ecosystem: 'PyPI', incremental: false });
    expect(truncated.error).toMatch(/all\.zip is not a sound zip archive \(truncated or corrupt\)/);
    feed.tamper = null;
    feed.put('PyPI', { id: 'PYSEC-0000-3', modified: '2026-12-03T11:00:00Z', affected: { package: 'not a list' } });
    const bad = await f.syncNow({ name: 'by-hand', url: feed.url, ecosystem: 'PyPI', incremental: false });
    expect(bad.error).toMatch(/PYSEC-0000-3: "affected" is not an array/);
    feed.records.get('PyPI')!.delete('PYSEC-0000-3');

    expect(await a.airlock.meta.advisoryGeneration()).toBe(before.gen);
    expect((await a.airlock.meta.listAdvisories()).length).toBe(before.n);
    expect((await rawGet(file('1.0'))).status).toBe(403);
    const rows = await a.airlock.meta.advisorySyncs({ source: 'by-hand', limit: 5 });
    expect(rows.map((r) => r.outcome)).toEqual(['failed', 'failed', 'failed']);

    // Never synced, and failing: a warning naming the source and its error. Then a good sync clears it.
    await f.tick();
    expect(f.warnings()).toEqual([expect.stringMatching(/^advisory source by-hand has never synced; last error: .*"affected" is not an array/)]);
    const ok = await f.syncNow({ name: 'by-hand', url: feed.url, ecosystem: 'PyPI', incremental: false });
    expect(ok).toMatchObject({ outcome: 'unchanged', changed: 0, error: null });
    await f.tick();
    expect(f.warnings()).toEqual([]);
    // Older than max_age: a warning.
    const stale = fullSync(1);
    await stale.tick();
    await new Promise((r) => setTimeout(r, 20));
    expect(stale.warnings()).toEqual([expect.stringMatching(/^advisory source by-hand last synced \d+ s ago, over advisories\.max_age/)]);
  }, 60_000);

  it('applies an `airlock advisories import` by hand without a SIGHUP, and tells the hooks', async () => {
    const n = applied.length;
    await a.airlock.meta.putAdvisories([
      {
        id: 'GHSA-hand-tiny-0002',
        modified: '2026-12-03T12:00:00Z',
        record: JSON.stringify({
          id: 'GHSA-hand-tiny-0002',
          modified: '2026-12-03T12:00:00Z',
          severity: [{ type: 'CVSS_V3', score: CRITICAL }],
          affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, versions: ['1.1'] }],
        }),
      },
    ]);
    await until('1.1 refused', async () => (await rawGet(file('1.1'))).status === 403);
    await until('the hook', async () => applied.length > n);
    expect(applied.at(-1)).toEqual({ changedIds: ['GHSA-hand-tiny-0002'], source: 'import' });
  }, 30_000);

  it("shows each source's freshness and the recorded syncs, failures with their error, on the console's advisories page", async () => {
    const token = await new Authenticator(a.airlock.meta).create('feeds-admin', true);
    const ui = (p: string) => `${a.url}/-/ui${p}`;
    const cookie = (await consoleLogin(a.url, token)).cookie!;
    const page = await (await fetch(ui('/advisories'), { headers: { cookie } })).text();
    expect(page).toContain('<h2>Advisory feeds</h2>');
    expect(page).toMatch(/<tr><td><code>osv-pypi<\/code><\/td><td>2026-\d\d-\d\d [\d:]+<\/td><td class="age">\d+ s<\/td><\/tr>/);
    expect(page).toMatch(/<td><code>osv-pypi<\/code><\/td><td>incremental<\/td><td>changed<\/td><td>2<\/td><td>2026-12-03T10:00:00.500000000Z<\/td>/);
    expect(page).toMatch(
      /<td><code>by-hand<\/code><\/td><td>full<\/td><td class="deny">failed<\/td><td>0<\/td><td><\/td><td>by-hand: all\.zip is not a sound zip archive/,
    );
  }, 30_000);

  it('names a source that has never synced on /-/readyz, with its error, and keeps serving', async () => {
    const b = await startAirlock(`advisories:\n  sources:\n    - { url: "${feed.url}", ecosystem: Nope }\n  interval: 5\n  poll: 0.5\n`);
    try {
      const ready = await until('the warning', async () => {
        const r = (await (await fetch(`${b.url}/-/readyz`)).json()) as { status: string; warnings?: string[] };
        return r.warnings ? r : null;
      });
      expect(ready).toEqual({
        status: 'ready',
        warnings: [expect.stringMatching(/^advisory source osv-nope has never synced; last error: osv-nope: .*\/Nope\/all\.zip answered 404$/)],
      });
      const metrics = await (await fetch(`${b.url}/-/metrics`)).text();
      expect(metrics).toContain('airlock_advisories_age_seconds{source="osv-nope"} -1');
      expect(metrics).toContain('airlock_advisory_syncs_total{source="osv-nope",outcome="failed"} 1');
    } finally {
      await b.stop();
    }
  }, 30_000);

  it('takes all.zip instead when more records changed than advisories.max_incremental', async () => {
    // An ecosystem of its own, so the server's scheduled syncs of PyPI ask for none of its files.
    const src = { name: 'few', url: feed.url, ecosystem: 'Few', incremental: true };
    feed.put('Few', { id: 'FEW-0', modified: '2026-12-01T00:00:00Z', affected: [] });
    const f = new AdvisoryFeeds({
      meta: a.airlock.meta,
      feed: new OsvFeed(new UpstreamHttp(), { maxBytes: 1 << 20, timeoutMs: 10_000, maxIncremental: 1 }),
      sources: [src],
      intervalMs: 3_600_000,
      pollMs: 0,
      maxAgeMs: 0,
      apply: () => a.airlock.reloadAdvisories(),
      owner: 'test',
      log: a.airlock.log,
    });
    expect(await f.syncNow(src)).toMatchObject({ mode: 'full', outcome: 'changed', changed: 1 });
    const zips = feed.asked('/Few/all.zip').length;
    const jsons = feed.asked('.json').filter((p) => p.startsWith('/Few/')).length;
    const rec = (n: number) => ({
      id: `PYSEC-0000-1${n}`,
      modified: `2026-12-03T13:00:0${n}Z`,
      affected: [{ package: { ecosystem: 'PyPI', name: 'otherlib' }, versions: [`9.${n}`] }],
    });
    feed.put('Few', rec(1));
    expect(await f.syncNow(src)).toMatchObject({ mode: 'incremental', outcome: 'changed', changed: 1 });
    const fewJsons = () => feed.asked('.json').filter((p) => p.startsWith('/Few/'));
    expect(fewJsons()).toHaveLength(jsons + 1);
    feed.put('Few', rec(2), rec(3));
    expect(await f.syncNow(src)).toMatchObject({ mode: 'full', outcome: 'changed', changed: 2, highWater: '2026-12-03T13:00:03.000000000Z' });
    expect(feed.asked('/Few/all.zip')).toHaveLength(zips + 1);
    expect(fewJsons()).toHaveLength(jsons + 1);
  }, 30_000);

  it('applies and tells the hooks at start what changed while the server was down (`airlock advisories import` between two runs)', async () => {
    // Everything before this test told (the by-hand syncs above changed the store too).
    await a.airlock.feeds.notice();
    const n = applied.length;
    const data = join(a.dir, 'data');
    await a.stop();
    const dir = mkdtempSync(join(tmpdir(), 'airlock-osv-down-'));
    const rec = {
      id: 'GHSA-down-0003',
      modified: '2026-12-03T14:00:00Z',
      severity: [{ type: 'CVSS_V3', score: CRITICAL }],
      affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, versions: ['9.9'] }],
    };
    writeFileSync(join(dir, `${rec.id}.json`), JSON.stringify(rec));
    const imp = await airlockCli(['advisories', 'import', dir, '--config', a.configFile]);
    expect(imp.stdout).toContain('1 new or changed');
    a = await startAirlock(yaml, { dataDir: data });
    await until('the hook', async () => applied.length > n);
    expect(applied.slice(n)).toEqual([{ changedIds: ['GHSA-down-0003'], source: 'import' }]);
    // Told once: the store remembers it, so the next start tells nothing again.
    await a.stop();
    a = await startAirlock(yaml, { dataDir: data });
    await a.airlock.feeds.tick();
    expect(applied.slice(n)).toHaveLength(1);
  }, 60_000);
});
