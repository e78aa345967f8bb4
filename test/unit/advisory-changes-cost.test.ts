import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * Guarantee: on SQLite, what changed since a generation (read by the server's notice of every change,
 * advisories/sync.ts) costs what changed, not what is stored. Its ids were read in id order by
 * walking the primary key over every row (`SCAN advisories USING INDEX sqlite_autoindex_advisories_1`),
 * reading each row's generation: 40-60 ms for 20,000 records when nothing or one batch was new.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-advisory-changes-cost-'));
let meta: SqliteMetaStore;
let current = 0;
const T = '2026-01-01T00:00:00Z';

beforeAll(async () => {
  meta = new SqliteMetaStore(join(dir, 'meta.db'));
  // 20,000 records of ~1.6 KB (as a sync writes them: batches of 250, each a generation).
  const rows = Array.from({ length: 20_000 }, (_, i) => {
    const id = `PYSEC-2026-${i}`;
    return { id, modified: T, record: JSON.stringify({ id, modified: T, details: 'd'.repeat(1500) }) };
  });
  for (let i = 0; i < rows.length; i += 250) await meta.putAdvisories(rows.slice(i, i + 250), 'osv-pypi');
  current = await meta.advisoryGeneration();
}, 60_000);
afterAll(async () => {
  await meta.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The best of 5 calls, in ms (a busy machine stretches one now and then). */
async function best(generation: number): Promise<{ ms: number; ids: number }> {
  let ms = Infinity;
  let ids = 0;
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    ids = (await meta.advisoryChangesSince(generation)).ids.length;
    ms = Math.min(ms, performance.now() - t0);
  }
  return { ms, ids };
}

describe('SQLite: what changed since a generation costs what changed', () => {
  it('reads the generation index, never every row', async () => {
    const db = (meta as unknown as { db: { prepare(sql: string): { all(...a: unknown[]): { detail: string }[] } } }).db;
    const real = db.prepare.bind(db);
    const statements: string[] = [];
    Object.assign(db, { prepare: (sql: string) => (statements.push(sql), real(sql)) });
    try {
      await meta.advisoryChangesSince(current - 1);
    } finally {
      Object.assign(db, { prepare: real });
    }
    const reads = statements.filter((s) => /FROM advisories\b/.test(s));
    expect(reads.length).toBeGreaterThan(0);
    for (const sql of reads) {
      const plan = real(`EXPLAIN QUERY PLAN ${sql}`)
        .all(...Array.from({ length: (sql.match(/\?/g) ?? []).length }, () => current - 1))
        .map((r) => r.detail);
      expect(plan.join(' | ')).toMatch(/SEARCH advisories USING (COVERING )?INDEX advisories_by_generation/);
      expect(plan.join(' | ')).not.toMatch(/SCAN advisories/);
    }
  });

  it('20,000 records: nothing new, and one batch new, each take well under the 40-60 ms of a walk over every row', async () => {
    const none = await best(current);
    const batch = await best(current - 1);
    console.log(`advisoryChangesSince on 20,000 records: nothing new ${none.ms.toFixed(2)} ms, one batch (${batch.ids} ids) ${batch.ms.toFixed(2)} ms`);
    expect(none.ids).toBe(0);
    expect(batch.ids).toBe(250);
    expect(none.ms).toBeLessThan(5);
    expect(batch.ms).toBeLessThan(10);
  });
});
