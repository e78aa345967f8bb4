import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { link, PRUNE_BATCH, prunePulls, verifyChain } from '../../src/core/chain.js';
import type { PullFilter, PullRecord } from '../../src/storage/meta-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { PG_MIGRATIONS } from '../../src/storage/pg-schema.js';
import { DAY_RECOUNT_SQL, REFUSAL_INDEXES, ROW_BYTES_SQL, pullSearchSql } from '../../src/storage/pull-rows.js';
import { linkedInsert } from '../../src/storage/pg-pulls.js';
import { N, T0, expected, makeRecord, searches } from '../helpers/pull-record-fixture.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * The record-search attacks on PostgreSQL: a chained record of 100,000 rows (4% denied, 1% errors,
 * allowed rows with a code, folded rows, prune anchors, admin refusals) written before the
 * refusal-index step, migrated, analysed; searches compared with a filter over the whole record,
 * and the planner's choice for the refusal searches checked.
 */
let srv: TestPostgres;
let meta: PgMetaStore;
let c: pg.Client;
let rows: (PullRecord & { id: number })[];
const schema = `search_attacks_${process.pid}`;

beforeAll(async () => {
  srv = await startPostgres();
  c = new pg.Client({ connectionString: srv.url, options: `-c search_path=${schema}` });
  await c.connect();
  await c.query(`CREATE SCHEMA ${schema}`);
  const before = PG_MIGRATIONS.indexOf(REFUSAL_INDEXES);
  for (let v = 0; v < before; v++) await c.query(PG_MIGRATIONS[v]);
  await c.query('CREATE TABLE airlock_schema (version INTEGER NOT NULL)');
  await c.query('INSERT INTO airlock_schema (version) VALUES ($1)', [before]);
  const recs = makeRecord(N);
  let head: string | null = null;
  for (let at = 0; at < recs.length; at += 1000) {
    // The store's own chained insert, into the schema as it stood before the step.
    const insert = linkedInsert(recs.slice(at, at + 1000), head, link);
    await c.query(insert.sql, insert.values);
    head = insert.head;
  }
  await c.query(`INSERT INTO pull_days ${DAY_RECOUNT_SQL} GROUP BY 1, 2, 3`);
  await c.query(`UPDATE pull_size SET rows = (SELECT COUNT(*) FROM pulls), bytes = (SELECT SUM(${ROW_BYTES_SQL}) FROM pulls)`);
  rows = recs.map((r, i) => ({ ...r, id: i + 1 }));
  meta = await PgMetaStore.open(srv.url, { schema });
  await c.query('ANALYZE pulls');
}, 180_000);

afterAll(async () => {
  await c?.end();
  await meta?.close();
  await srv?.stop();
});

async function planOf(f: PullFilter): Promise<string> {
  const args: unknown[] = [];
  const sql = pullSearchSql(f, (v) => `$${args.push(v)}`);
  return (await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, args)).rows.map((r) => r['QUERY PLAN']).join('\n');
}

describe('PostgreSQL: searches of a record migrated across the refusal-index step', () => {
  it('the migrated record verifies, and searches by every field return exactly the matching rows, newest first', { timeout: 120_000 }, async () => {
    const chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    expect(chain.rows).toBe(N);
    const fixed: PullFilter[] = [
      { decision: 'deny', limit: 50 },
      { decision: 'allow', code: 'client_gone', limit: 100_000 },
      { decision: 'deny', ecosystem: 'audit', limit: 50 },
      { ecosystem: 'audit', name: 'prune', limit: Number.MAX_SAFE_INTEGER },
      { decision: 'deny', limit: 100_000 },
      { decision: 'deny', code: 'too_new', ecosystem: 'oci', since: T0 + 86_400_000 * 5, until: T0 + 86_400_000 * 6 - 1, limit: 50 },
      { name: 'ünïcode-name', limit: 1000 },
      { limit: 0 },
    ];
    for (const f of [...fixed, ...searches(80)]) {
      const got = (await meta.listPulls(f)).map((r) => r.id);
      expect(got, JSON.stringify(f)).toEqual(expected(rows, f));
    }
  });

  it('searches for refusals never read the record sequentially, and without a day range read a refusal index', async () => {
    for (const decision of ['deny', 'error'] as const)
      for (const code of [undefined, 'advisory', 'upstream_failed'])
        for (const ecosystem of [undefined, 'hf', 'audit'] as const)
          for (const range of [{}, { since: T0 }, { since: T0 + 86_400_000 * 3, until: T0 + 86_400_000 * 4 - 1 }]) {
            const f: PullFilter = { decision, code, ecosystem, ...range, limit: 50 };
            const plan = await planOf(f);
            expect(plan, JSON.stringify(f)).not.toMatch(/Seq Scan/);
            if (!('until' in range)) expect(plan, JSON.stringify(f)).toMatch(/pulls_(refused_id|refused_eco_id|code_id)/);
          }
    for (const code of ['advisory', 'client_gone']) expect(await planOf({ code, limit: 50 })).toMatch(/pulls_code_id/);
  });

  it('a search of the admin/audit rows alone does not read the whole record', async () => {
    // Before issue 29, (ecosystem, name, ts) answered it.
    const plan = await planOf({ ecosystem: 'audit', limit: 50 });
    expect(plan).not.toMatch(/Seq Scan|Index Scan Backward using pulls_pkey/);
    expect(plan).toMatch(/pulls_audit_id/);
  });

  it('retention prunes the migrated record and the chain verifies after it', async () => {
    const cut = T0 + 30_000 * 30_000;
    const removed = await prunePulls(meta, cut, 'test-retention');
    expect(removed).toBe(Math.max(...rows.filter((r) => r.ts < cut).map((r) => r.id)));
    const chain = await verifyChain(meta);
    expect(chain.problem).toBeUndefined();
    // One anchor per batch of PRUNE_BATCH rows (core/chain.ts).
    const anchors = Math.ceil(removed / PRUNE_BATCH);
    expect(chain.rows).toBe(N - removed + anchors);
    expect(await meta.pullSize()).toMatchObject({ rows: N - removed + anchors });
  });
});
