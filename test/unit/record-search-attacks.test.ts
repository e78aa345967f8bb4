import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPulls, link, prunePulls, prunePullsToSize, verifyChain } from '../../src/core/chain.js';
import type { PullFilter, PullRecord } from '../../src/storage/meta-store.js';
import { PULL_COLUMNS, REFUSAL_INDEXES, ROW_BYTES_SQL, pullSearchSql, pullValues } from '../../src/storage/pull-rows.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite-schema.js';

/**
 * Attacks on the record's searches after issue 29 (partial refusal indexes, 307b059), on SQLite:
 * a chained record of 100,000 rows written before the schema step, then migrated. Every search is
 * compared with a filter over the whole record, and the refusal searches' plans are checked not
 * to read the allowed rows.
 */
const N = 100_000;
const T0 = 1_760_000_000_000;
const ECOS = ['pypi', 'pypi', 'pypi', 'oci', 'oci', 'hf'] as const;
const DENY_CODES = ['not_allowlisted', 'advisory', 'too_new', 'bad_token', 'digest_mismatch'];

/** A seeded PRNG (mulberry32): the same record and searches on every run. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The record: mostly allowed pulls; ~4% denied (some before codes existed, some folded), ~1% errors, allowed rows carrying a code, prune anchors and admin refusals. */
export function makeRecord(n: number, seed = 7): PullRecord[] {
  const r = rng(seed);
  const recs: PullRecord[] = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    // Clock skew: a few rows are stamped earlier than the row before them.
    const ts = T0 + i * 30_000 - (i % 997 === 0 ? 3_600_000 : 0);
    const ecosystem = ECOS[i % ECOS.length];
    const base = {
      ts,
      client: `client-${i % 13}`,
      ecosystem,
      name: i % 1009 === 0 ? 'ünïcode-name' : `p${Math.floor(r() * 700)}`,
      version: i % 11 === 0 ? null : `1.${i % 17}`,
      filename: null,
      sha256: i % 5 === 0 ? null : (i % 400).toString(16).padStart(64, '0'),
      size: i % 3 === 0 ? null : i,
      cache: 'miss' as const,
      reason: null,
      rule: null,
      requestId: `r${i}`,
    };
    if (i % 20_011 === 5) {
      // A prune anchor (ecosystem 'audit'), as retention leaves one.
      recs.push({ ...base, ecosystem: 'audit', name: 'prune', sha256: 'f'.repeat(64), decision: 'allow', cache: 'none', version: null });
    } else if (i % 3001 === 17) {
      // A refusal of the admin API (the console shows ecosystem 'admin' as 'audit').
      recs.push({ ...base, ecosystem: 'audit', name: 'admin', decision: 'deny', code: 'bad_token' });
    } else if (x < 0.04) {
      // Before the code column (first 10% of the record), denials carry no code.
      const code = i < n / 10 ? undefined : DENY_CODES[i % DENY_CODES.length];
      const fold = code && i % 7 === 0 ? { count: 3 + (i % 5), lastTs: ts + 1000 } : {};
      recs.push({ ...base, decision: 'deny', ...(code ? { code } : {}), ...fold });
    } else if (x < 0.05) {
      recs.push({ ...base, decision: 'error', ...(i % 2 ? { code: 'upstream_failed' } : {}) });
    } else if (x < 0.053) {
      // An allowed row carrying a code (a cut transfer).
      recs.push({ ...base, decision: 'allow', code: 'client_gone' });
    } else {
      recs.push({ ...base, decision: 'allow' });
    }
  }
  return recs;
}

/** What a search must return: a filter over the whole record, newest (highest id) first. */
export function expected(rows: (PullRecord & { id: number })[], f: PullFilter): number[] {
  const limit = Math.max(1, Math.min(f.limit ?? 1000, 100_000));
  const out: number[] = [];
  for (let k = rows.length - 1; k >= 0 && out.length < limit; k--) {
    const r = rows[k];
    if (f.ecosystem && r.ecosystem !== f.ecosystem) continue;
    if (f.name && r.name !== f.name) continue;
    if (f.version && r.version !== f.version) continue;
    if (f.sha256 && r.sha256 !== f.sha256) continue;
    if (f.decision && r.decision !== f.decision) continue;
    if (f.code && r.code !== f.code) continue;
    if (f.before !== undefined && !(r.id < f.before)) continue;
    if (f.since !== undefined && !(r.ts >= f.since)) continue;
    if (f.until !== undefined && !(r.ts <= f.until)) continue;
    out.push(r.id);
  }
  return out;
}

/** Random searches over every field the filter has (seeded), with small, page-sized and huge limits. */
export function searches(count: number, seed = 11): PullFilter[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const out: PullFilter[] = [];
  for (let i = 0; i < count; i++) {
    const f: PullFilter = {};
    if (r() < 0.6) f.decision = pick(['deny', 'deny', 'error', 'allow'] as const);
    if (r() < 0.4) f.code = pick([...DENY_CODES, 'upstream_failed', 'client_gone', 'no_such_code']);
    if (r() < 0.35) f.ecosystem = pick(['pypi', 'oci', 'hf', 'audit'] as const);
    if (r() < 0.15) f.name = pick(['p1', 'p350', 'prune', 'admin', 'ünïcode-name', 'nobody']);
    if (r() < 0.1) f.version = pick(['1.3', '1.16']);
    if (r() < 0.1) f.sha256 = (Math.floor(r() * 400) as number).toString(16).padStart(64, '0');
    if (r() < 0.3) f.before = Math.floor(r() * (N + 10));
    if (r() < 0.25) f.since = T0 + Math.floor(r() * N) * 30_000;
    if (r() < 0.25) f.until = T0 + Math.floor(r() * N) * 30_000;
    f.limit = pick([1, 7, 50, 1000, 100_000, Number.MAX_SAFE_INTEGER]);
    out.push(f);
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'airlock-search-attacks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function planOf(db: Database.Database, f: PullFilter): string {
  const args: unknown[] = [];
  const sql = pullSearchSql(f, (v) => (args.push(v), '?'));
  return db
    .prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
    .all(...args)
    .map((p) => p.detail)
    .join('; ');
}

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
      old.exec(
        'DELETE FROM pull_days; INSERT INTO pull_days SELECT (ts / 86400000) * 86400000, ecosystem, decision, SUM(COALESCE(count, 1)) FROM pulls GROUP BY 1, 2, 3',
      );
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
    for (const f of refusalSearches) expect(planOf(db, f), JSON.stringify(f)).toMatch(/USING INDEX pulls_(refused_id|refused_eco_id|code_id)/);
  });

  it('a search of the admin/audit rows alone (records page, `airlock records --ecosystem audit`) does not read every allowed row', () => {
    // Before issue 29 (ecosystem, name, ts) answered it; (name, id) cannot, and the few audit rows
    // (prune anchors, admin refusals) are found only by reading the whole record, newest first.
    for (const f of [
      { ecosystem: 'audit', limit: 50 },
      { ecosystem: 'audit', before: 60_000, limit: 50 },
    ] as PullFilter[])
      expect(planOf(db, f), JSON.stringify(f)).not.toMatch(/^SCAN pulls/);
  });

  it('the retention prune and the size budget still prune the migrated record, and it verifies after each', async () => {
    const cut = T0 + 30_000 * 20_000;
    const removed = await prunePulls(meta, cut, 'test-retention');
    // Everything through the newest row stamped before the cut (a skewed row drags its predecessors along).
    expect(removed).toBe(Math.max(...rows.filter((r) => r.ts < cut).map((r) => r.id)));
    let chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    const size = await meta.pullSize();
    expect(size.rows).toBe(N - removed + 1);
    await appendPulls(meta, [{ ts: Date.now(), client: 'c', ecosystem: 'pypi', name: 'after', cache: 'miss', decision: 'deny', code: 'advisory' }]);
    const pruned = await prunePullsToSize(meta, Math.floor(size.bytes / 2), 'test-budget');
    expect(pruned).toBeGreaterThan(0);
    chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    expect((await meta.pullSize()).bytes).toBeLessThanOrEqual(Math.floor(size.bytes / 2) + 1000);
    // Both anchors are found by the search verifyChain uses, and the refusal searches still see the new row.
    expect((await meta.listPulls({ ecosystem: 'audit', name: 'prune', limit: 10 })).map((r) => r.client).slice(0, 2)).toEqual([
      'test-budget',
      'test-retention',
    ]);
    expect((await meta.listPulls({ decision: 'deny', code: 'advisory', limit: 1 }))[0].name).toBe('after');
    // pull_days still adds up to the events on record (folded rows count their events).
    const days = await meta.dailyCounts(0);
    const all = await meta.listPulls({ limit: 100_000 });
    expect(days.reduce((s, d) => s + d.count, 0)).toBe(all.reduce((s, r) => s + (r.count ?? 1), 0));
  });
});
