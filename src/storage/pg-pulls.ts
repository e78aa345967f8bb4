import type pg from 'pg';
import type { ChainLink, PullFilter, PullLog, PullRecord, PruneAnchor, StoredPullRecord } from './meta-store.js';
import { LOCK_CHAIN } from './pg-schema.js';
import {
  PULL_COLUMNS,
  ROW_BYTES_SQL,
  dayTakeBackSql,
  dayTally,
  pullOf,
  pullSearchSql,
  pullValues,
  retentionEndSql,
  sizeEndSql,
  type PullRow,
} from './pull-rows.js';

/**
 * The pull record in PostgreSQL (PgMetaStore's PullLog). The chain stays one chain under
 * concurrent writers on every replica: each append takes a transaction-scoped advisory lock,
 * reads the head and links its rows to it.
 */
export class PgPullLog implements PullLog {
  constructor(
    private readonly pool: pg.Pool,
    private readonly tx: <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>,
  ) {}

  private async rows(sql: string, args: unknown[] = []): Promise<PullRow[]> {
    return (await this.pool.query<PullRow>(sql, args)).rows;
  }

  async appendPulls(recs: PullRecord[], link: ChainLink): Promise<void> {
    if (recs.length === 0) return;
    await this.tx((c) => this.insertPulls(c, recs, link));
  }

  /** Inside a transaction: lock the chain head (every replica's writers queue here), then link and insert the rows in one statement. */
  private async insertPulls(c: pg.PoolClient, recs: PullRecord[], link: ChainLink): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_CHAIN]);
    const last = (await c.query<{ id: number; hash: string | null }>('SELECT id, hash FROM pulls ORDER BY id DESC LIMIT 1')).rows[0];
    const insert = linkedInsert(recs, last?.hash ?? null, link);
    await c.query(insert.sql, insert.values);
    const tally = dayTally(recs);
    await c.query(
      `INSERT INTO pull_days (day, ecosystem, decision, count) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
       ON CONFLICT (day, ecosystem, decision) DO UPDATE SET count = pull_days.count + EXCLUDED.count`,
      [tally.map((t) => t[0]), tally.map((t) => t[1]), tally.map((t) => t[2]), tally.map((t) => t[3])],
    );
    await c.query(`UPDATE pull_size SET rows = rows + $1, bytes = bytes + (SELECT COALESCE(SUM(${ROW_BYTES_SQL}), 0) FROM pulls WHERE id > $2)`, [
      recs.length,
      last?.id ?? 0,
    ]);
  }

  async listPulls(f: PullFilter): Promise<StoredPullRecord[]> {
    const args: unknown[] = [];
    const rs = await this.rows(
      pullSearchSql(f, (v) => `$${args.push(v)}`),
      args,
    );
    return rs.map(pullOf);
  }

  async *scanPulls(): AsyncIterable<StoredPullRecord> {
    let after = 0;
    for (;;) {
      const rs = await this.rows('SELECT * FROM pulls WHERE id > $1 ORDER BY id LIMIT 1000', [after]);
      if (rs.length === 0) return;
      for (const r of rs) yield pullOf(r);
      after = rs[rs.length - 1].id;
    }
  }

  async dailyCounts(
    since: number,
  ): Promise<{ day: number; ecosystem: StoredPullRecord['ecosystem']; decision: StoredPullRecord['decision']; count: number }[]> {
    return (
      await this.pool.query('SELECT day, ecosystem, decision, count FROM pull_days WHERE day >= $1 ORDER BY 1, 2, 3', [
        Math.floor(since / 86_400_000) * 86_400_000,
      ])
    ).rows;
  }

  async prunePulls(before: number, anchor: PruneAnchor, link: ChainLink, maxRows = Number.MAX_SAFE_INTEGER, through?: number): Promise<number> {
    const args: unknown[] = [];
    const sql = retentionEndSql(before, maxRows, (v) => `$${args.push(v)}`, through);
    return this.pruneThrough(async (c) => (await c.query<{ id: number; hash: string | null }>(sql, args)).rows[0], anchor, link);
  }

  async pullSize(): Promise<{ rows: number; bytes: number }> {
    return (await this.pool.query<{ rows: number; bytes: number }>('SELECT rows, bytes FROM pull_size WHERE id = 1')).rows[0] ?? { rows: 0, bytes: 0 };
  }

  async prunePullsToSize(maxBytes: number, anchor: PruneAnchor, link: ChainLink, maxRows = Number.MAX_SAFE_INTEGER): Promise<number> {
    return this.pruneThrough(
      async (c) => {
        const size = Number((await c.query<{ bytes: number }>('SELECT bytes FROM pull_size WHERE id = 1')).rows[0]?.bytes ?? 0);
        if (size <= maxBytes) return undefined;
        const args: unknown[] = [];
        const sql = sizeEndSql(size - maxBytes, maxRows, (v) => `$${args.push(v)}`);
        return (await c.query<{ id: number; hash: string | null }>(sql, args)).rows[0];
      },
      anchor,
      link,
    );
  }

  /** Under the chain lock: delete the rows through the one `find` names and append the chained anchor; keeps pull_days and pull_size. */
  private pruneThrough(
    find: (c: pg.PoolClient) => Promise<{ id: number; hash: string | null } | undefined>,
    anchor: PruneAnchor,
    link: ChainLink,
  ): Promise<number> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_CHAIN]);
      const last = await find(c);
      if (!last) return 0;
      const span = (
        await c.query<{ lo: number; hi: number; bytes: number | null }>(
          `SELECT MIN(ts) AS lo, MAX(ts) AS hi, SUM(${ROW_BYTES_SQL})::bigint AS bytes FROM pulls WHERE id <= $1`,
          [last.id],
        )
      ).rows[0];
      // What the removed rows added to the days they were in is taken back (reading only them).
      await c.query(dayTakeBackSql('$1'), [last.id]);
      const n = (await c.query('DELETE FROM pulls WHERE id <= $1', [last.id])).rowCount ?? 0;
      await c.query('UPDATE pull_size SET rows = GREATEST(0, rows - $1), bytes = GREATEST(0, bytes - $2)', [n, Number(span.bytes ?? 0)]);
      const lo = Math.floor(span.lo / 86_400_000) * 86_400_000;
      const hi = Math.floor(span.hi / 86_400_000) * 86_400_000;
      await c.query('DELETE FROM pull_days WHERE day BETWEEN $1 AND $2 AND count <= 0', [lo, hi]);
      await this.insertPulls(c, [anchor(last, n)], link);
      return n;
    });
  }
}

/** One INSERT of `recs` chained from `head` by `link`: its SQL, its values, and the chain's new head. */
export function linkedInsert(recs: PullRecord[], head: string | null, link: ChainLink): { sql: string; values: unknown[]; head: string | null } {
  const values: unknown[] = [];
  const tuples: string[] = [];
  for (const rec of recs) {
    const { prevHash, hash } = link(head, rec);
    const base = values.length;
    values.push(...pullValues(rec, prevHash, hash));
    tuples.push(`(${PULL_COLUMNS.map((_, i) => `$${base + i + 1}`).join(', ')})`);
    head = hash;
  }
  return { sql: `INSERT INTO pulls (${PULL_COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}`, values, head };
}
