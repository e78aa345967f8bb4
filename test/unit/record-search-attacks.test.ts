import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPulls, link, PRUNE_BATCH, prunePulls, prunePullsToSize, verifyChain } from '../../src/core/chain.js';
import type { PullFilter, PullRecord } from '../../src/storage/meta-store.js';
import { N, T0, expected, makeRecord, searches, sqlitePlan } from '../helpers/pull-record-fixture.js';
import { DAY_RECOUNT_SQL, PULL_COLUMNS, REFUSAL_INDEXES, ROW_BYTES_SQL, pullValues } from '../../src/storage/pull-rows.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite-schema.js';

/**
 * Attacks on the record's searches after issue 29 (partial refusal indexes, 307b059), on SQLite:
 * a chained record of 100,000 rows written before the schema step, then migrated. Every search is
 * compared with a filter over the whole record, and the refusal searches' plans are checked not
 * to read the allowed rows.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-search-attacks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('SQLite: searches of a record migrated across the refusal-index step', () => {
  const path = join(dir, 'airlock.db');
  let meta: SqliteMetaStore;
  let db: Database.Database;
  let rows: (PullRecord & { id: number })[];

  beforeAll(() => {
    const before = SQLITE_MIGRATIONS.indexOf(REFUSAL_INDEXES);
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    for (let v = 0; v < before; v++) old.exec(SQLITE_MIGRATIONS[v]);
    old.pragma(`user_version = ${before}`);
    // Written as the store wrote them then: chained rows, the day tally and the size kept.
    const ins = old.prepare(`INSERT INTO pulls (${PULL_COLUMNS.join(', ')}) VALUES (${PULL_COLUMNS.map(() => '?').join(', ')})`);
    const recs = makeRecord(N);
    old.transaction(() => {
      let head: string | null = null;
      for (const rec of recs) {
        const { prevHash, hash } = link(head, rec);
        ins.run(...pullValues(rec, prevHash, hash));
        head = hash;
      }
      old.exec(`DELETE FROM pull_days; INSERT INTO pull_days ${DAY_RECOUNT_SQL} GROUP BY 1, 2, 3`);
      old.exec(`UPDATE pull_size SET rows = (SELECT COUNT(*) FROM pulls), bytes = (SELECT SUM(${ROW_BYTES_SQL}) FROM pulls)`);
    })();
    old.close();
    rows = recs.map((r, i) => ({ ...r, id: i + 1 }));
    meta = new SqliteMetaStore(path);
    db = new Database(path, { readonly: true });
    return async () => {
      db.close();
      await meta.close();
    };
  });

  it('the migrated record verifies, and searches by every field return exactly the matching rows, newest first', async () => {
    const chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    expect(chain.rows).toBe(N);
    const fixed: PullFilter[] = [
      { decision: 'deny', limit: 50 },
      { decision: 'deny', code: 'advisory', limit: 50 },
      { decision: 'allow', code: 'client_gone', limit: 100_000 },
      { code: 'client_gone', limit: 100_000 },
      { decision: 'deny', ecosystem: 'audit', limit: 50 },
      { ecosystem: 'audit', name: 'prune', limit: Number.MAX_SAFE_INTEGER },
      { decision: 'error', limit: 100_000 },
      { decision: 'deny', limit: 100_000 },
      { decision: 'deny', before: 1, limit: 50 },
      { decision: 'deny', before: N + 1, since: T0, until: T0 + 86_400_000, limit: 50 },
      // The refusals page by day: since a day's start to the end of it.
      { decision: 'deny', code: 'too_new', ecosystem: 'oci', since: T0 + 86_400_000 * 5, until: T0 + 86_400_000 * 6 - 1, limit: 50 },
      { name: 'ünïcode-name', limit: 1000 },
      { limit: 0 },
      { limit: -5 },
    ];
    for (const f of [...fixed, ...searches(160)]) {
      const got = (await meta.listPulls(f)).map((r) => r.id);
      expect(got, JSON.stringify(f)).toEqual(expected(rows, f));
    }
    // A folded row keeps its count and window; an allowed row its code; a row without a code has none.
    const folded = (await meta.listPulls({ decision: 'deny', code: 'bad_token', limit: 100_000 })).find((r) => r.count != null)!;
    expect(folded.lastTs).toBe(folded.ts + 1000);
    expect((await meta.listPulls({ code: 'client_gone', limit: 1 }))[0]).toMatchObject({ decision: 'allow', code: 'client_gone' });
    expect('code' in (await meta.listPulls({ decision: 'deny', before: 5000, limit: 1 }))[0]).toBe(false);
  });

  it('searches for refusals (by decision other than allow, or by code) read a refusal index, never the record', () => {
    const refusalSearches: PullFilter[] = [];
    for (const decision of ['deny', 'error'] as const)
      for (const code of [undefined, 'advisory'])
        for (const ecosystem of [undefined, 'oci', 'audit'] as const)
          for (const range of [{}, { since: T0 }, { until: T0 + 1e9 }, { since: T0, until: T0 + 86_400_000 - 1 }])
            for (const before of [undefined, 50_000]) refusalSearches.push({ decision, code, ecosystem, before, ...range, limit: 50 });
    for (const code of ['advisory', 'client_gone'])
      for (const ecosystem of [undefined, 'pypi'] as const)
        refusalSearches.push({ code, ecosystem, since: T0, limit: 50 }, { code, decision: 'allow', limit: 50 });
    for (const f of refusalSearches) expect(sqlitePlan(db, f), JSON.stringify(f)).toMatch(/USING INDEX pulls_(refused_id|refused_eco_id|code_id)/);
  });

  it('a search of the admin/audit rows alone (records page, `airlock records --ecosystem audit`) does not read every allowed row', () => {
    // Before issue 29 (ecosystem, name, ts) answered it; (name, id) cannot, and the few audit rows
    // (prune anchors, admin refusals) would be found only by reading the whole record, newest
    // first. Their own partial index holds only them: scanning it is reading them.
    for (const f of [
      { ecosystem: 'audit', limit: 50 },
      { ecosystem: 'audit', before: 60_000, limit: 50 },
    ] as PullFilter[]) {
      expect(sqlitePlan(db, f), JSON.stringify(f)).not.toMatch(/^SCAN pulls$|USING INTEGER PRIMARY KEY/);
      expect(sqlitePlan(db, f), JSON.stringify(f)).toMatch(/USING INDEX pulls_audit_id/);
    }
  });

  it('the retention prune and the size budget still prune the migrated record, and it verifies after each', async () => {
    const cut = T0 + 30_000 * 20_000;
    const removed = await prunePulls(meta, cut, 'test-retention');
    // Everything through the newest row stamped before the cut (a skewed row drags its predecessors along).
    expect(removed).toBe(Math.max(...rows.filter((r) => r.ts < cut).map((r) => r.id)));
    let chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    const size = await meta.pullSize();
    // One anchor per batch of PRUNE_BATCH rows (core/chain.ts).
    expect(size.rows).toBe(N - removed + Math.ceil(removed / PRUNE_BATCH));
    await appendPulls(meta, [{ ts: Date.now(), client: 'c', ecosystem: 'pypi', name: 'after', cache: 'miss', decision: 'deny', code: 'advisory' }]);
    const pruned = await prunePullsToSize(meta, Math.floor(size.bytes / 2), 'test-budget');
    expect(pruned).toBeGreaterThan(0);
    chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    expect((await meta.pullSize()).bytes).toBeLessThanOrEqual(Math.floor(size.bytes / 2) + 1000);
    // Both anchors are found by the search verifyChain uses, and the refusal searches still see the new row.
    const anchors = (await meta.listPulls({ ecosystem: 'audit', name: 'prune', limit: 100 })).map((r) => r.client);
    expect(anchors[0]).toBe('test-budget');
    expect(anchors).toContain('test-retention');
    expect((await meta.listPulls({ decision: 'deny', code: 'advisory', limit: 1 }))[0].name).toBe('after');
    // pull_days still adds up to the events on record (folded rows count their events).
    const days = await meta.dailyCounts(0);
    const all = await meta.listPulls({ limit: 100_000 });
    expect(days.reduce((s, d) => s + d.count, 0)).toBe(all.reduce((s, r) => s + (r.count ?? 1), 0));
  });
});
