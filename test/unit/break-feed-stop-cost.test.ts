import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * Guarantee: on SQLite, advisoryChangesSince is cheap when little changed: it costs what changed, not
 * what is stored. advisory_syncs is never pruned: a row per sync of every source, for as long as the
 * server runs (a source synced every 5 minutes: 105,000 rows a year; advisories.interval may be 5 s).
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feed-stop-cost-'));
let meta: SqliteMetaStore;
let db: Database.Database;
const T = '2026-01-01T00:00:00Z';
const SYNCS = 100_000;
const row = (i: number, tail = '') => {
  const id = `PYSEC-2026-${i}`;
  return { id, modified: T, record: JSON.stringify({ id, modified: T, details: 'd'.repeat(1500) }) + tail };
};

beforeAll(async () => {
  meta = new SqliteMetaStore(join(dir, 'meta.db'));
  db = (meta as unknown as { db: Database.Database }).db;
  const rows = Array.from({ length: 20_000 }, (_, i) => row(i));
  for (let i = 0; i < rows.length; i += 250) await meta.putAdvisories(rows.slice(i, i + 250), 'osv-pypi');
  // A year of syncs of three sources, every 15 minutes, each recorded (most found nothing new: generation 0).
  const ins = db.prepare(
    `INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation)
     VALUES (?, ?, ?, 'unchanged', 'incremental', 0, '2026-01-01T00:00:00.000000000Z', NULL, 0)`,
  );
  db.transaction(() => {
    for (let k = 0; k < SYNCS; k++) ins.run(`osv-${k % 3}`, k * 300_000, k * 300_000 + 1000);
  })();
}, 120_000);
afterAll(async () => {
  await meta.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('break: what changed since a generation, with a long history of syncs (SQLite)', () => {
  // Broke on main: the sources of what changed were read with `advisory_syncs WHERE generation > ?
  // UNION ...`, and advisory_syncs had no index on generation: every sync ever recorded was read (SCAN
  // advisory_syncs USING INDEX advisory_syncs_by_source, then a temporary b-tree for the UNION)
  // whenever anything changed, on the server's event loop: 2 ms with 10,000 syncs, 31-99 ms with
  // 100,000, 355 ms with 500,000, for one changed record.
  it('one record changed among 20,000, with 100,000 syncs recorded: well under 5 ms, no scan of advisory_syncs', async () => {
    const g = await meta.advisoryGeneration();
    await meta.putAdvisories([row(7, ' ')], 'osv-pypi');
    let ms = Infinity;
    let got: Awaited<ReturnType<SqliteMetaStore['advisoryChangesSince']>> | undefined;
    for (let k = 0; k < 5; k++) {
      const t0 = performance.now();
      got = await meta.advisoryChangesSince(g);
      ms = Math.min(ms, performance.now() - t0);
    }
    console.log(`advisoryChangesSince, one record changed, ${SYNCS} syncs recorded: ${ms.toFixed(2)} ms`);
    expect(got).toEqual({ ids: ['PYSEC-2026-7'], sources: ['osv-pypi'], generation: g + 1 });
    const real = db.prepare.bind(db);
    const statements: string[] = [];
    Object.assign(db, { prepare: (sql: string) => (statements.push(sql), real(sql)) });
    try {
      await meta.advisoryChangesSince(g);
    } finally {
      Object.assign(db, { prepare: real });
    }
    const plans = statements.map((sql) =>
      (real(`EXPLAIN QUERY PLAN ${sql}`).all(...Array.from({ length: (sql.match(/\?/g) ?? []).length }, () => g)) as { detail: string }[])
        .map((r) => r.detail)
        .join(' | '),
    );
    expect(plans.join('\n')).not.toMatch(/SCAN advisory_syncs/);
    expect(ms).toBeLessThan(5);
  }, 60_000);
});
