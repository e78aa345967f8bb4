import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { affected } from '../../src/audit/affected.js';
import { Advisories, type OsvRecord } from '../../src/policy/advisories.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { appendPulls } from '../../src/core/chain.js';

const rec = (i: number, extra: Partial<OsvRecord> = {}): OsvRecord =>
  ({
    id: `PYSEC-2026-${i}`,
    modified: '2026-12-01T00:00:00Z',
    aliases: [`CVE-2026-${i}`],
    upstream: [`GHSA-up-${i}`],
    summary: `lib${i} before 1.1`,
    affected: [{ package: { ecosystem: 'PyPI', name: `lib${i}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
    ...extra,
  }) as unknown as OsvRecord;

/**
 * The console's "who pulled it" (advisory and incident pages, their exports) looks the advisory up
 * in the set the server has in force instead of reading and parsing every stored record per view
 * (~0.4 s for 20,000 records, the server's event loop stopped for it on SQLite): the same answer.
 */
describe('affected() with the advisories in force', () => {
  let meta: SqliteMetaStore;
  const records = [rec(1), rec(2), rec(3, { withdrawn: '2026-12-02T00:00:00Z' } as Partial<OsvRecord>)];

  beforeEach(async () => {
    meta = new SqliteMetaStore(':memory:');
    await meta.putAdvisories(records.map((r) => ({ id: r.id, modified: r.modified!, record: JSON.stringify(r) })));
    const pull = (name: string, version: string, client: string, ts: number) => ({
      ts,
      client,
      ecosystem: 'pypi' as const,
      name,
      version,
      filename: `${name}-${version}-py3-none-any.whl`,
      sha256: 'a'.repeat(64),
      cache: 'hit' as const,
      decision: 'allow' as const,
    });
    await appendPulls(meta, [pull('lib2', '1.0', 'ci-1', 1), pull('lib2', '1.2', 'ci-2', 2), pull('lib1', '1.0', 'ci-3', 3)]);
  });
  afterEach(async () => meta.close());

  for (const q of ['PYSEC-2026-2', 'CVE-2026-2', 'GHSA-up-2']) {
    it(`finds ${q} without reading the store's records, with the answer the store gives`, async () => {
      const live = new Advisories(records);
      // The store's records read a page at a time (storage/advisory-pages.ts): three records are one page.
      const read = vi.spyOn(meta, 'advisoryPage');
      const fast = await affected(meta, q, undefined, Number.POSITIVE_INFINITY, live);
      expect(read).not.toHaveBeenCalled();
      const slow = await affected(meta, q);
      expect(read).toHaveBeenCalledTimes(1);
      expect(fast).toEqual(slow);
      expect(fast.advisory?.id).toBe('PYSEC-2026-2');
      expect(fast.pulls.map((p) => p.client)).toEqual(['ci-1']);
    });
  }

  it('a withdrawn record (not in force) is still found in the store and answered as withdrawn', async () => {
    const live = new Advisories(records);
    const rep = await affected(meta, 'PYSEC-2026-3', undefined, Number.POSITIVE_INFINITY, live);
    expect(rep.advisory).toMatchObject({ id: 'PYSEC-2026-3', withdrawn: true });
  });

  it('a name neither holds is the same one-line error', async () => {
    const live = new Advisories(records);
    await expect(affected(meta, 'CVE-1999-0001', undefined, Number.POSITIVE_INFINITY, live)).rejects.toThrow(/no imported advisory "CVE-1999-0001"/);
  });
});
