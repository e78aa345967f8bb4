import type pg from 'pg';
import type { AdvisoryRow, AdvisoryStore, AdvisorySync, OlderThan, SyncQuery } from './meta-store.js';
import { outcomeOf, PRUNE_SOURCES, PRUNE_SYNCS, sourcesOf, syncOf } from './sqlite-advisories.js';

type Tx = <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>;

/** Advisories, their generation and the feed syncs in PostgreSQL (pg-schema.ts). */
export class PgAdvisories implements AdvisoryStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly tx: Tx,
  ) {}

  /**
   * Inside a transaction: upsert, and give the changed rows the next generation. The generation row
   * is locked first (FOR UPDATE), so concurrent imports on several replicas take turns and each
   * change gets a generation of its own. With `older`, the stored times are read after that lock: a
   * row is judged against every write committed before its own.
   */
  private async upsert(c: pg.PoolClient, recs: AdvisoryRow[], source?: string, older?: OlderThan): Promise<{ ids: string[]; generation: number }> {
    const cur = (await c.query<{ generation: number }>('SELECT generation FROM advisory_generation WHERE id = 1 FOR UPDATE')).rows[0].generation;
    const next = cur + 1;
    const ids: string[] = [];
    const held = older
      ? new Map(
          (await c.query<{ id: string; modified: string }>('SELECT id, modified FROM advisories WHERE id = ANY($1::text[])', [recs.map((r) => r.id)])).rows.map(
            (r) => [r.id, r.modified],
          ),
        )
      : null;
    for (const r of recs) {
      const was = held?.get(r.id);
      if (was !== undefined && older!(r.modified, was, r.id)) continue;
      const res = await c.query(
        `INSERT INTO advisories (id, modified, record, generation) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET modified = EXCLUDED.modified, record = EXCLUDED.record, generation = EXCLUDED.generation
         WHERE advisories.record IS DISTINCT FROM EXCLUDED.record`,
        [r.id, r.modified, r.record, next],
      );
      if (res.rowCount) ids.push(r.id);
      held?.set(r.id, r.modified);
    }
    if (ids.length === 0) return { ids, generation: cur };
    await c.query('UPDATE advisory_generation SET generation = $1 WHERE id = 1', [next]);
    if (source !== undefined) await c.query('INSERT INTO advisory_generation_sources (generation, source) VALUES ($1, $2)', [next, source]);
    return { ids, generation: next };
  }

  async putAdvisories(recs: AdvisoryRow[], source?: string, older?: OlderThan): Promise<number> {
    return this.tx(async (c) => (await this.upsert(c, recs, source, older)).ids.length);
  }

  async listAdvisories(): Promise<string[]> {
    return (await this.pool.query<{ record: string }>('SELECT record FROM advisories')).rows.map((r) => r.record);
  }

  async advisoryPage(after: string | null, limit: number, maxChars = Infinity): Promise<{ id: string; record: string }[]> {
    // The page's rows while the records before each come to under maxChars (at least one row).
    const cap = Number.isFinite(maxChars) ? maxChars : Number.MAX_SAFE_INTEGER;
    const page = `SELECT id, record FROM (
         SELECT id, record, SUM(LENGTH(record)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - LENGTH(record) AS before
         FROM (SELECT id, record FROM advisories ${after === null ? '' : 'WHERE id > $3'} ORDER BY id LIMIT $1) AS p) AS w
       WHERE before < $2 ORDER BY id`;
    return (await this.pool.query<{ id: string; record: string }>(page, after === null ? [limit, cap] : [limit, cap, after])).rows;
  }

  async advisoryRecords(ids: string[]): Promise<{ id: string; record: string }[]> {
    return (await this.pool.query<{ id: string; record: string }>('SELECT id, record FROM advisories WHERE id = ANY($1::text[])', [ids])).rows;
  }

  async advisoriesModified(ids: string[]): Promise<Map<string, string>> {
    const { rows } = await this.pool.query<{ id: string; modified: string }>('SELECT id, modified FROM advisories WHERE id = ANY($1::text[])', [ids]);
    return new Map(rows.map((r) => [r.id, r.modified]));
  }

  async recordAdvisorySync(recs: AdvisoryRow[], s: AdvisorySync, older?: OlderThan): Promise<string[]> {
    return this.tx(async (c) => {
      const { ids, generation } = await this.upsert(c, recs, s.source, older);
      await c.query(
        `INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [s.source, s.startedAt, s.finishedAt, outcomeOf(s, ids), s.mode, s.changed + ids.length, s.highWater, s.error, ids.length ? generation : 0],
      );
      // Under the generation's lock (upsert): no write of another replica is half done.
      await c.query(PRUNE_SOURCES);
      await c.query(PRUNE_SYNCS, [s.source]);
      return ids;
    });
  }

  async advisorySyncs(opts: SyncQuery): Promise<(AdvisorySync & { id: number; generation: number })[]> {
    const good = opts.good ? "outcome <> 'failed'" : 'TRUE';
    const r =
      opts.source === undefined
        ? await this.pool.query(`SELECT * FROM advisory_syncs WHERE ${good} ORDER BY id DESC LIMIT $1`, [opts.limit])
        : await this.pool.query(`SELECT * FROM advisory_syncs WHERE source = $1 AND ${good} ORDER BY id DESC LIMIT $2`, [opts.source, opts.limit]);
    return r.rows.map(syncOf);
  }

  async advisoryGeneration(): Promise<number> {
    return (await this.pool.query<{ generation: number }>('SELECT generation FROM advisory_generation WHERE id = 1')).rows[0].generation;
  }

  async advisoriesTold(): Promise<number> {
    return (await this.pool.query<{ told: number }>('SELECT told FROM advisory_generation WHERE id = 1')).rows[0].told;
  }

  async markAdvisoriesTold(generation: number): Promise<void> {
    await this.pool.query('UPDATE advisory_generation SET told = $1 WHERE id = 1 AND told < $1', [generation]);
  }

  async advisoryChangesSince(generation: number): Promise<{ ids: string[]; sources: string[]; generation: number }> {
    // The ids and their sources as of one moment: read apart, another replica's sync committed between
    // them could write over a generation read and prune its source (PRUNE_SOURCES), told as an import by hand.
    // Not one UNION ALL statement: on a table not yet analysed PostgreSQL planned it parallel, 60-95 ms against ~1.
    // The sources through advisory_syncs_by_generation (advisory_syncs keeps thousands of rows), as on SQLite.
    const { rows, bySync } = await this.tx(async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      return {
        rows: (await c.query<{ id: string; generation: number }>('SELECT id, generation FROM advisories WHERE generation > $1 ORDER BY id', [generation])).rows,
        bySync: (
          await c.query<{ source: string; generation: number }>(
            'SELECT source, generation FROM advisory_syncs WHERE generation > $1 UNION ALL SELECT source, generation FROM advisory_generation_sources WHERE generation > $1',
            [generation],
          )
        ).rows,
      };
    });
    const gens = [...new Set(rows.map((r) => r.generation))];
    return { ids: rows.map((r) => r.id), sources: sourcesOf(gens, bySync), generation: Math.max(generation, ...gens) };
  }
}
