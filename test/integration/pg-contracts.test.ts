import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPulls, verifyChain } from '../../src/core/chain.js';
import pg from 'pg';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { PG_MIGRATIONS } from '../../src/storage/pg-schema.js';
import { pullSearchSql } from '../../src/storage/pull-rows.js';
import type { PullFilter } from '../../src/storage/meta-store.js';
import { consoleSessionStoreContract } from '../contract/console-sessions.js';
import { alertStoreContract } from '../contract/alert-store.js';
import { inventoryStoreContract } from '../contract/inventory-store.js';
import { advisorySourcesContract } from '../contract/advisory-sources.js';
import {
  advisoryStoreContract,
  aliasStoreContract,
  trustRootStoreContract,
  signerStoreContract,
  blobIndexContract,
  leaseStoreContract,
  ociStoreContract,
  pageCacheContract,
  pullLogContract,
  scanStoreContract,
  tokenStoreContract,
} from '../contract/meta-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * The PostgreSQL backend held to every metadata contract the SQLite backend passes (the same
 * suites, test/contract/), on a real PostgreSQL 15 the test starts; each fresh store is its own
 * schema in that database.
 */
let pgsrv: TestPostgres;
const opened: PgMetaStore[] = [];
let seq = 0;
beforeAll(async () => {
  pgsrv = await startPostgres();
}, 60_000);
afterAll(async () => {
  for (const s of opened) await s.close();
  await pgsrv?.stop();
});
const fresh = async () => {
  const s = await PgMetaStore.open(pgsrv.url, { schema: `contract_${process.pid}_${seq++}` });
  opened.push(s);
  return s;
};

blobIndexContract('PostgreSQL', fresh);
pageCacheContract('PostgreSQL', fresh);
pullLogContract('PostgreSQL', fresh);
ociStoreContract('PostgreSQL', fresh);
scanStoreContract('PostgreSQL', fresh);
tokenStoreContract('PostgreSQL', fresh);
consoleSessionStoreContract('PostgreSQL', fresh);
advisoryStoreContract('PostgreSQL', fresh);
aliasStoreContract('PostgreSQL', fresh);
trustRootStoreContract('PostgreSQL', fresh);
signerStoreContract('PostgreSQL', fresh);
leaseStoreContract('PostgreSQL', fresh);
inventoryStoreContract('PostgreSQL', async () => (await fresh()).inventories);
alertStoreContract('PostgreSQL', async () => (await fresh()).alerts);
advisorySourcesContract('PostgreSQL', async () => {
  const store = await fresh();
  const pool = (store as unknown as { pool: pg.Pool }).pool;
  return {
    store,
    rows: async (sql) => (await pool.query(sql)).rows,
    keepEverySource: async () => {
      await pool.query(`CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
        CREATE TRIGGER keep_sources BEFORE DELETE ON advisory_generation_sources FOR EACH ROW EXECUTE FUNCTION keep_row()`);
    },
  };
});

describe('PostgreSQL: what SQLite cannot show', () => {
  it('keeps one verifiable chain when several stores (replicas) append at once', async () => {
    const schema = `replicas_${process.pid}`;
    const replicas = await Promise.all([0, 1, 2].map(() => PgMetaStore.open(pgsrv.url, { schema, max: 4 })));
    opened.push(...replicas);
    const row = (i: number, r: number) => ({
      ts: 1_000 + i,
      client: `replica-${r}`,
      ecosystem: 'pypi' as const,
      name: 'x',
      cache: 'hit' as const,
      decision: 'allow' as const,
    });
    // 3 replicas x 40 batches of 5 rows, all at once.
    await Promise.all(
      replicas.flatMap((s, r) =>
        Array.from({ length: 40 }, (_, b) =>
          appendPulls(
            s,
            Array.from({ length: 5 }, (_, i) => row(b * 5 + i, r)),
          ),
        ),
      ),
    );
    const report = await verifyChain(replicas[0]);
    expect(report.rows).toBe(600);
    expect(report.problem).toBeUndefined();
  });

  it('migrates once when replicas start together, and again is a no-op', async () => {
    const schema = `migrate_${process.pid}`;
    const stores = await Promise.all([0, 1, 2, 3].map(() => PgMetaStore.open(pgsrv.url, { schema, max: 2 })));
    opened.push(...stores);
    // Every store reached the same version, and migrating again changes nothing.
    const versions = await Promise.all(stores.map((st) => st.migrate()));
    expect(new Set(versions).size).toBe(1);
    expect(versions[0]).toBeGreaterThan(0);
    expect(await stores[0].migrate()).toBe(versions[0]);
  });

  it('migrates tokens from before names could be reissued, once, when replicas start together', async () => {
    const schema = `tokens_${process.pid}`;
    // A database at the schema before the tokens table kept history (name was its primary key).
    const before = PG_MIGRATIONS.findIndex((m) => m.includes('tokens_live_name'));
    expect(before).toBeGreaterThan(0);
    const c = new pg.Client({ connectionString: pgsrv.url, options: `-c search_path=${schema}` });
    await c.connect();
    try {
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.query('CREATE TABLE airlock_schema (version INTEGER NOT NULL)');
      await c.query('INSERT INTO airlock_schema (version) VALUES ($1)', [before]);
      for (const m of PG_MIGRATIONS.slice(0, before)) await c.query(m);
      await c.query("INSERT INTO tokens (name, hash, admin, created_at, revoked_at) VALUES ('ci', $1, false, 1000, 2000), ('sec', $2, true, 1500, NULL)", [
        'c'.repeat(64),
        'd'.repeat(64),
      ]);
    } finally {
      await c.end();
    }
    const stores = await Promise.all([0, 1, 2].map(() => PgMetaStore.open(pgsrv.url, { schema, max: 2 })));
    opened.push(...stores);
    expect(new Set(await Promise.all(stores.map((st) => st.migrate())))).toEqual(new Set([PG_MIGRATIONS.length]));
    expect(await stores[1].listTokens()).toEqual([
      { name: 'ci', hash: 'c'.repeat(64), admin: false, createdAt: 1000, revokedAt: 2000 },
      { name: 'sec', hash: 'd'.repeat(64), admin: true, createdAt: 1500, revokedAt: null },
    ]);
    // The revoked name is issued again (from another replica); the live one is still unique.
    await stores[2].createToken({ name: 'ci', hash: 'e'.repeat(64), admin: false });
    await expect(stores[0].createToken({ name: 'sec', hash: 'f'.repeat(64), admin: false })).rejects.toThrow();
    expect((await stores[0].findToken('c'.repeat(64)))!.revokedAt).toBe(2000);
    expect((await stores[0].findToken('e'.repeat(64)))!.revokedAt).toBeNull();
  });

  it('adds the signature column to a record written before it: the old rows still verify, and signed rows chain after them', async () => {
    const schema = `sigcol_${process.pid}`;
    const before = PG_MIGRATIONS.findIndex((m) => m.includes('ADD COLUMN signature'));
    expect(before).toBeGreaterThan(0);
    const c = new pg.Client({ connectionString: pgsrv.url, options: `-c search_path=${schema}` });
    await c.connect();
    try {
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.query('CREATE TABLE airlock_schema (version INTEGER NOT NULL)');
      await c.query('INSERT INTO airlock_schema (version) VALUES ($1)', [before]);
      for (const m of PG_MIGRATIONS.slice(0, before)) await c.query(m);
    } finally {
      await c.end();
    }
    // Rows written before the column: the old code's columns only (no signature).
    const { link } = await import('../../src/core/chain.js');
    const old = {
      ts: 1000,
      client: 'a',
      ecosystem: 'pypi' as const,
      name: 'x',
      version: '1',
      cache: 'miss' as const,
      decision: 'deny' as const,
      code: 'unsigned',
    };
    const { prevHash, hash } = link(null, old);
    const c2 = new pg.Client({ connectionString: pgsrv.url, options: `-c search_path=${schema}` });
    await c2.connect();
    try {
      await c2.query(
        "INSERT INTO pulls (ts, client, ecosystem, name, version, cache, decision, code, prev_hash, hash) VALUES (1000, 'a', 'pypi', 'x', '1', 'miss', 'deny', 'unsigned', $1, $2)",
        [prevHash, hash],
      );
    } finally {
      await c2.end();
    }
    const st = await PgMetaStore.open(pgsrv.url, { schema });
    opened.push(st);
    expect(await st.migrate()).toBe(PG_MIGRATIONS.length);
    await appendPulls(st, [
      { ts: 2000, client: 'a', ecosystem: 'pypi', name: 'x', version: '2', cache: 'miss', decision: 'allow', signature: '{"ok":true,"identity":"i s"}' },
    ]);
    const rows = await st.listPulls({});
    expect(rows.map((r) => r.signature ?? null)).toEqual(['{"ok":true,"identity":"i s"}', null]);
    expect(await verifyChain(st)).toMatchObject({ rows: 2, unchained: 0 });
    expect((await verifyChain(st)).problem).toBeUndefined();
  });

  it('serves searches by decision and code from the refusal indexes (issue 29), which an allowed row is not written into', async () => {
    const schema = `refusals_${process.pid}`;
    const st = await PgMetaStore.open(pgsrv.url, { schema });
    opened.push(st);
    const c = new pg.Client({ connectionString: pgsrv.url, options: `-c search_path=${schema}` });
    await c.connect();
    try {
      const defs = (
        await c.query<{ indexname: string; indexdef: string }>("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'pulls'", [
          schema,
        ])
      ).rows;
      const partial = (d: { indexdef: string }) => / WHERE /.test(d.indexdef);
      expect(
        defs
          .filter((d) => !partial(d))
          .map((d) => d.indexname)
          .sort(),
      ).toEqual(['pulls_name_id', 'pulls_pkey', 'pulls_sha256_id', 'pulls_ts']);
      expect(
        defs
          .filter(partial)
          .map((d) => d.indexname)
          .sort(),
      ).toEqual(['pulls_audit_id', 'pulls_code_id', 'pulls_refused_eco_id', 'pulls_refused_id']);
      // A record the planner knows: 50,000 rows, one in a hundred refused.
      await c.query(
        `INSERT INTO pulls (ts, client, ecosystem, name, sha256, cache, decision, code)
         SELECT i, 'c', (ARRAY['pypi','oci','hf'])[1 + i % 3], 'p' || (i % 500), 'h' || (i % 4), 'miss', CASE WHEN i % 100 = 0 THEN 'deny' ELSE 'allow' END,
                CASE WHEN i % 100 = 0 THEN 'advisory' END FROM generate_series(1, 50000) i`,
      );
      await c.query('ANALYZE pulls');
      const plan = async (f: PullFilter) => {
        const args: unknown[] = [];
        const sql = pullSearchSql(f, (v) => `$${args.push(v)}`);
        return (await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, args)).rows.map((r) => r['QUERY PLAN']).join('\n');
      };
      expect(await plan({ decision: 'deny', limit: 50 })).toMatch(/pulls_refused_id/);
      expect(await plan({ decision: 'deny', ecosystem: 'oci', limit: 50 })).toMatch(/pulls_refused_eco_id/);
      expect(await plan({ code: 'advisory', limit: 50 })).toMatch(/pulls_code_id/);
      // "Who pulled it" reads every row of a digest a page at a time (pull-pages.ts): each page starts in the index where the last stopped.
      expect(await plan({ ecosystem: 'pypi', sha256: 'h1', before: 30_000, limit: 10_000 })).toMatch(
        /pulls_sha256_id.*\n.*Index Cond: \(\(sha256 = 'h1'::text\) AND \(id < /,
      );
      // A time window's later pages go back by id from there, not through the time index (which would sort the whole window each page).
      expect(await plan({ since: 1000, until: 40_000, decision: 'allow', before: 30_000, limit: 10_000 })).toMatch(/Index Cond: \(id < /);
      // Where the pages stop: the window's oldest row through the time index (sorted), not the table walked up from its oldest row;
      // and the later pages bounded below by it.
      expect(await plan({ since: 45_000, limit: 1, oldestFirst: true })).toMatch(/pulls_ts/);
      expect(await plan({ since: 45_000, before: 48_000, from: 45_000, limit: 10_000 })).toMatch(/Index Cond: \(\(id < .*\) AND \(id >= /);
      expect((await st.listPulls({ since: 45_001, limit: 1, oldestFirst: true })).map((r) => r.ts)).toEqual([45_001]);
      expect((await st.listPulls({ decision: 'deny', ecosystem: 'oci', limit: 3 })).map((r) => r.ts)).toEqual([49900, 49600, 49300]);
    } finally {
      await c.end();
    }
  });
});
