import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite-schema.js';
import { REFUSAL_INDEXES } from '../../src/storage/pull-rows.js';
import type { PullFilter } from '../../src/storage/meta-store.js';
import { sqlitePlan } from '../helpers/pull-record-fixture.js';

/**
 * Issue 29: an allowed pull is written into three of the record's indexes, not seven. The
 * searches by decision and code (the console's refusal pages, `airlock records --code`) are served
 * by partial indexes over the rows that are not a plain allow. PostgreSQL's side is in
 * test/integration/pg-contracts.test.ts; the results of every search are the contract's.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-pull-indexes-'));
const closers: (() => unknown)[] = [];
afterAll(() => closers.forEach((c) => c()));

const ECOS = ['pypi', 'oci', 'hf'];
const DECISIONS = ['allow', 'allow', 'allow', 'deny', 'allow', 'error', 'allow'];
const CODES = [null, null, 'not_allowlisted', 'advisory'];
const rowOf = (i: number) => ({
  id: i + 1,
  ecosystem: ECOS[i % 3],
  name: `p${i % 11}`,
  decision: DECISIONS[i % DECISIONS.length],
  code: CODES[(i * 5) % 4],
});

describe('SQLite: the refusal indexes (issue 29)', () => {
  it('migrate a record written before them; every search finds the same rows, and searches by decision or code read only their index', async () => {
    const path = join(dir, 'airlock.db');
    const before = SQLITE_MIGRATIONS.indexOf(REFUSAL_INDEXES);
    expect(before).toBeGreaterThan(0);
    const old = new Database(path);
    for (let v = 0; v < before; v++) old.exec(SQLITE_MIGRATIONS[v]);
    old.pragma(`user_version = ${before}`);
    const ins = old.prepare("INSERT INTO pulls (ts, client, ecosystem, name, cache, decision, code) VALUES (?, 'c', ?, ?, 'miss', ?, ?)");
    const rows = Array.from({ length: 5000 }, (_, i) => rowOf(i));
    old.transaction(() => rows.forEach((r, i) => ins.run(1000 + i, r.ecosystem, r.name, r.decision, r.code)))();
    old.close();

    const meta = new SqliteMetaStore(path);
    closers.push(() => meta.close());
    const expected = (f: PullFilter) =>
      rows
        .filter((r) => (!f.decision || r.decision === f.decision) && (!f.code || r.code === f.code) && (!f.ecosystem || r.ecosystem === f.ecosystem))
        .filter((r) => (!f.name || r.name === f.name) && (f.before === undefined || r.id < f.before))
        .reverse()
        .slice(0, f.limit)
        .map((r) => r.id);
    const searches: PullFilter[] = [
      { decision: 'deny', limit: 20 },
      { decision: 'error', ecosystem: 'oci', limit: 20 },
      { decision: 'deny', before: 2500, limit: 20 },
      { code: 'advisory', limit: 20 },
      { code: 'not_allowlisted', decision: 'allow', limit: 20 },
      { decision: 'allow', ecosystem: 'hf', limit: 20 },
      { decision: 'deny', name: 'p3', limit: 20 },
    ];
    for (const f of searches)
      expect(
        (await meta.listPulls(f)).map((r) => r.id),
        JSON.stringify(f),
      ).toEqual(expected(f));

    const db = new Database(path, { readonly: true });
    closers.push(() => db.close());
    // What an allowed row is written into: the table, time, digest and name. The rest hold refusals only.
    const indexes = db.prepare<[], { name: string; partial: number }>('PRAGMA index_list(pulls)').all();
    expect(
      indexes
        .filter((i) => !i.partial && !i.name.startsWith('sqlite_autoindex'))
        .map((i) => i.name)
        .sort(),
    ).toEqual(['pulls_name_id', 'pulls_sha256', 'pulls_ts']);
    expect(
      indexes
        .filter((i) => i.partial)
        .map((i) => i.name)
        .sort(),
    ).toEqual(['pulls_audit_id', 'pulls_code_id', 'pulls_refused_eco_id', 'pulls_refused_id']);
    expect(sqlitePlan(db, { decision: 'deny', limit: 50 })).toMatch(/USING INDEX pulls_refused_id/);
    expect(sqlitePlan(db, { decision: 'deny', before: 9, limit: 50 })).toMatch(/USING INDEX pulls_refused_id/);
    expect(sqlitePlan(db, { decision: 'error', ecosystem: 'oci', limit: 50 })).toMatch(/USING INDEX pulls_refused_eco_id/);
    expect(sqlitePlan(db, { code: 'advisory', limit: 50 })).toMatch(/USING INDEX pulls_code_id/);
    // The newest page of refusals is read in order from the index: no sort of every refusal.
    expect(sqlitePlan(db, { decision: 'deny', limit: 50 })).not.toMatch(/TEMP B-TREE/);
  });
});
