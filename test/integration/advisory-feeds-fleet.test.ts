import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied, type AdvisoriesChange } from '../../src/advisories/applied.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet } from '../helpers/http.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

const CRITICAL = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H';
const wheel = (v: string) => `fleetlib-${v}-py3-none-any.whl`;

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 25_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Two replicas on one real PostgreSQL 15, both configured with the same feed: one takes each
 * sync (the feed sees each file asked for once), both apply what it imported (their pulls are
 * refused), and an `airlock advisories import` by hand (the built CLI) reaches both.
 */
describe('advisory feeds in a fleet (PostgreSQL)', () => {
  const feed = new OsvFeedServer();
  const index = new FakeIndex();
  let pgsrv: TestPostgres;
  let a: TestAirlock;
  let b: TestAirlock;
  let yamlFile = '';
  const applied: AdvisoriesChange[] = [];

  beforeAll(async () => {
    [pgsrv] = await Promise.all([startPostgres(), feed.start(), index.start()]);
    feed.put('PyPI', {
      id: 'PYSEC-0000-1',
      modified: '2026-11-01T00:00:00Z',
      affected: [{ package: { ecosystem: 'PyPI', name: 'otherlib' }, versions: ['0.1'] }],
    });
    for (const v of ['1.0', '1.1', '1.2']) index.add('fleetlib', { filename: wheel(v), bytes: Buffer.from(`fleetlib ${v}`) });
    process.env.AIRLOCK_TEST_PG = pgsrv.url;
    onAdvisoriesApplied(async (c) => void applied.push(c));
    const yaml = `storage:
  meta: postgres
  postgres_url_env: AIRLOCK_TEST_PG
  postgres_schema: feeds
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
      - { name: fleetlib }
`;
    [a, b] = await Promise.all([startAirlock(yaml), startAirlock(yaml)]);
    yamlFile = join(mkdtempSync(join(tmpdir(), 'airlock-fleet-cli-')), 'airlock.yaml');
    writeFileSync(yamlFile, `data_dir: ${join(a.dir, 'cli-data')}\nlog_level: silent\n${yaml}`);
  }, 60_000);
  afterAll(async () => {
    clearAdvisoriesAppliedHooks();
    await a?.stop();
    await b?.stop();
    await Promise.all([feed.stop(), index.stop()]);
    await pgsrv?.stop();
  });

  const file = (x: TestAirlock, v: string) => `${x.url}/pypi/files/fleetlib/${wheel(v)}`;

  it('one replica syncs each time, both apply', async () => {
    await until('the first sync', async () => (await a.airlock.meta.advisorySyncs({ source: 'osv-pypi', limit: 1 }))[0]);
    expect(feed.asked('all.zip')).toEqual(['/PyPI/all.zip']);
    expect((await rawGet(file(a, '1.0'))).status).toBe(200);
    expect((await rawGet(file(b, '1.0'))).status).toBe(200);

    feed.put('PyPI', {
      id: 'GHSA-fleet-0001',
      modified: '2026-12-03T10:00:00Z',
      severity: [{ type: 'CVSS_V3', score: CRITICAL }],
      affected: [{ package: { ecosystem: 'PyPI', name: 'fleetlib' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
    });
    for (const x of [a, b]) await until('1.0 refused', async () => (await rawGet(file(x, '1.0'))).status === 403);
    expect(feed.asked('.json')).toEqual(['/PyPI/GHSA-fleet-0001.json']);
    expect(feed.asked('all.zip')).toEqual(['/PyPI/all.zip']);
    // One sync row per run, never two replicas' rows for one change; each run by one replica under the lease.
    const syncs = await a.airlock.meta.advisorySyncs({ source: 'osv-pypi', limit: 50 });
    expect(syncs.filter((s) => s.outcome === 'changed').map((s) => [s.mode, s.changed])).toEqual([
      ['incremental', 1],
      ['full', 1],
    ]);
    const ordered = [...syncs].reverse();
    for (let i = 1; i < ordered.length; i++) expect(ordered[i].startedAt - ordered[i - 1].finishedAt).toBeGreaterThanOrEqual(4_900);
    // Both replicas told their hooks (a hook that must act once per fleet dedupes, e.g. through the store).
    await until('both hooks', async () => applied.filter((c) => c.changedIds.includes('GHSA-fleet-0001')).length >= 2);
    expect(applied.filter((c) => c.changedIds.includes('GHSA-fleet-0001'))).toEqual([
      { changedIds: ['GHSA-fleet-0001'], source: 'osv-pypi' },
      { changedIds: ['GHSA-fleet-0001'], source: 'osv-pypi' },
    ]);
  }, 60_000);

  it('an `airlock advisories import` by hand reaches both replicas without a SIGHUP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-osv-hand-'));
    const rec = {
      id: 'GHSA-fleet-hand-0002',
      modified: '2026-12-03T12:00:00Z',
      severity: [{ type: 'CVSS_V3', score: CRITICAL }],
      affected: [{ package: { ecosystem: 'PyPI', name: 'fleetlib' }, versions: ['1.2'] }],
    };
    writeFileSync(join(dir, `${rec.id}.json`), JSON.stringify(rec));
    const imp = await airlockCli(['advisories', 'import', dir, '--config', yamlFile]);
    expect(imp.stderr).toBe('');
    expect(imp.stdout).toContain('1 new or changed');
    for (const x of [a, b]) await until('1.2 refused', async () => (await rawGet(file(x, '1.2'))).status === 403);
    expect(applied.filter((c) => c.source === 'import')).toEqual([
      { changedIds: ['GHSA-fleet-hand-0002'], source: 'import' },
      { changedIds: ['GHSA-fleet-hand-0002'], source: 'import' },
    ]);
  }, 60_000);
});
