import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { affected } from '../../src/audit/affected.js';
import { Advisories, type OsvRecord } from '../../src/policy/advisories.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { appendPulls } from '../../src/core/chain.js';

const rec = (id: string, name: string, extra: Partial<OsvRecord> = {}): OsvRecord =>
  ({
    id,
    modified: '2026-12-01T00:00:00Z',
    summary: `${name} before 1.1`,
    affected: [{ package: { ecosystem: 'PyPI', name }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
    ...extra,
  }) as unknown as OsvRecord;

const WITHDRAWN = { withdrawn: '2026-12-02T00:00:00Z' } as Partial<OsvRecord>;

/**
 * The console's "who pulled it" looks the advisory up in the set in force (affected(..., known)),
 * which holds no withdrawn record; `airlock affected` reads every stored record, withdrawn ones
 * included. The claim: the same answer for any id, alias or upstream id.
 */
describe('affected() with the advisories in force, against the store, where a withdrawn record shares a name', () => {
  let meta: SqliteMetaStore;
  // A GHSA record withdrawn, whose id a live PYSEC record lists among its aliases (as PYSEC records list GHSA ids).
  const ghsa = rec('GHSA-aaaa-bbbb-cccc', 'lib1', { aliases: ['CVE-2026-1'], ...WITHDRAWN });
  const pysec = rec('PYSEC-2026-1', 'lib1', { aliases: ['CVE-2026-1', 'GHSA-aaaa-bbbb-cccc'] });
  // Two records of one CVE, the first stored withdrawn.
  const old = rec('PYSEC-2026-5', 'lib5', { aliases: ['CVE-2026-5'], ...WITHDRAWN });
  const now = rec('GHSA-5555-5555-5555', 'lib5', { aliases: ['CVE-2026-5'] });
  const all = [ghsa, pysec, old, now];

  beforeEach(async () => {
    meta = new SqliteMetaStore(':memory:');
    await meta.putAdvisories(all.map((r) => ({ id: r.id, modified: r.modified!, record: JSON.stringify(r) })));
    const pull = (name: string, client: string, ts: number) => ({
      ts,
      client,
      ecosystem: 'pypi' as const,
      name,
      version: '1.0',
      filename: `${name}-1.0-py3-none-any.whl`,
      sha256: 'a'.repeat(64),
      cache: 'hit' as const,
      decision: 'allow' as const,
    });
    await appendPulls(meta, [pull('lib1', 'ci-1', 1), pull('lib5', 'ci-5', 2)]);
  });
  afterEach(async () => meta.close());

  for (const q of ['GHSA-aaaa-bbbb-cccc', 'CVE-2026-1', 'CVE-2026-5', 'PYSEC-2026-1', 'GHSA-5555-5555-5555', 'PYSEC-2026-5']) {
    it(`${q}: the console's answer is the store's`, async () => {
      const live = new Advisories(all);
      const fromStore = await affected(meta, q);
      const inForce = await affected(meta, q, undefined, Number.POSITIVE_INFINITY, live);
      expect(inForce).toEqual(fromStore);
    });
  }

  it('a record withdrawn by hand while the server runs: the console answers as the policy in force does until the server notices (advisories.poll), then as the store', async () => {
    const live = new Advisories(all);
    const withdrawn = { ...pysec, modified: '2026-12-03T00:00:00Z', ...WITHDRAWN };
    await meta.putAdvisories([{ id: pysec.id, modified: withdrawn.modified, record: JSON.stringify(withdrawn) }]);
    const fromStore = await affected(meta, 'PYSEC-2026-1');
    expect(fromStore.advisory?.withdrawn).toBe(true);
    // Until the reload, the record still refuses pulls, and the console says what the server enforces.
    const before = await affected(meta, 'PYSEC-2026-1', undefined, Number.POSITIVE_INFINITY, live);
    expect(before.advisory?.withdrawn).toBeFalsy();
    // The reload (the feeds' poll, or SIGHUP) reads the store again: the same answer as the store's.
    const reloaded = new Advisories((await meta.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord));
    expect(await affected(meta, 'PYSEC-2026-1', undefined, Number.POSITIVE_INFINITY, reloaded)).toEqual(fromStore);
  });
});
