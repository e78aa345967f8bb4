import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importAdvisories } from '../../src/cli/advisories.js';
import type { AdvisoryRow } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * `airlock advisories import` writes to the database a running server writes its pull rows to.
 * While it holds the write lock the server's writes wait with its event loop stopped (SQLite's
 * busy timeout): one transaction for a whole import (20,000 records) held it 1.4 s. The import
 * writes in short transactions and pauses between them, so another writer gets in.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-import-turns-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const N = 3_000;
function osvTree(tag: string): string {
  const root = join(dir, `osv-${tag}`);
  mkdirSync(root, { recursive: true });
  for (let i = 0; i < N; i++) {
    const rec = {
      id: `PYSEC-2026-${i}`,
      modified: `2026-0${tag === 'a' ? 1 : 2}-01T00:00:00Z`,
      details: tag.repeat(1500),
      affected: [{ package: { ecosystem: 'PyPI', name: `pkg${i}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.2.3' }] }] }],
    };
    writeFileSync(join(root, `${rec.id}.json`), JSON.stringify(rec));
  }
  return root;
}

describe('advisories import beside a running server', () => {
  it('writes in short transactions with pauses between them, and loses or double-counts nothing', async () => {
    const meta = new SqliteMetaStore(join(dir, 'airlock.db'));
    try {
      const held: number[] = [];
      let ticks = 0;
      const between: number[] = [];
      const paused: number[] = [];
      let ended = 0;
      const put = meta.putAdvisories.bind(meta);
      // In one process the transaction's time is the call's; the ticks count turns of the event loop between calls.
      Object.assign(meta, {
        putAdvisories: async (rows: AdvisoryRow[]) => {
          between.push(ticks);
          const t0 = performance.now();
          paused.push(t0 - ended);
          const n = await put(rows);
          ended = performance.now();
          held.push(ended - t0);
          ticks = 0;
          return n;
        },
      });
      const timer = setInterval(() => ticks++, 1);
      const first = await importAdvisories(meta, osvTree('a'));
      const again = await importAdvisories(meta, osvTree('b'));
      const unchanged = await importAdvisories(meta, join(dir, 'osv-b'));
      clearInterval(timer);
      expect([first.read, first.changed, again.changed, unchanged.changed]).toEqual([N, N, N, 0]);
      expect((await meta.listAdvisories()).length).toBe(N);
      expect([...(await meta.advisoriesModified(['PYSEC-2026-0', `PYSEC-2026-${N - 1}`])).values()]).toEqual(['2026-02-01T00:00:00Z', '2026-02-01T00:00:00Z']);
      // More than one transaction per import, none holding the lock long (a batch takes ~10 ms here;
      // the bound leaves room for a loaded machine), and the event loop turned between them.
      expect(held.length).toBeGreaterThanOrEqual(3 * 10);
      expect(Math.max(...held)).toBeLessThan(250);
      const later = (_: unknown, i: number) => i % (held.length / 3) !== 0; // not the first batch of each import
      expect(between.filter(later).filter((t) => t === 0)).toEqual([]);
      // Each pause at least 30 ms and as long as the batch before it: a server waiting for the lock
      // tries again only after each sleep of SQLite's busy handler (up to 25 ms in its first 103 ms),
      // and a shorter pause can pass unseen. Beside holds of 5 ms with pauses as long (2 cores), a
      // writer's longest wait was 79 ms; with pauses of at least 30 ms, 19 ms.
      const short = paused.map((ms, i) => ({ ms, after: held[i - 1] })).filter((w, i) => later(w, i) && (w.ms < 29 || w.ms < w.after - 1));
      expect(short).toEqual([]);
    } finally {
      await meta.close();
    }
  });

  it('cuts a batch of large records at 1 Mi characters of JSON, not only at 250 records', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const root = join(dir, 'osv-large');
    mkdirSync(root, { recursive: true });
    // 40 records that list 8,000 versions each (~100 KB of JSON), as the largest OSV records do.
    for (let i = 0; i < 40; i++) {
      const versions = Array.from({ length: 8000 }, (_, j) => `1.${j}.${i}`);
      writeFileSync(
        join(root, `L-${i}.json`),
        JSON.stringify({ id: `L-${i}`, modified: '2026-01-01T00:00:00Z', affected: [{ package: { ecosystem: 'PyPI', name: `big${i}` }, versions }] }),
      );
    }
    const batches: number[][] = [];
    const put = meta.putAdvisories.bind(meta);
    Object.assign(meta, { putAdvisories: (rows: AdvisoryRow[]) => (batches.push(rows.map((r) => r.record.length)), put(rows)) });
    expect((await importAdvisories(meta, root)).changed).toBe(40);
    expect(batches.flat().length).toBe(40);
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) expect(b.slice(0, -1).reduce((n, c) => n + c, 0)).toBeLessThan(1024 * 1024);
    await meta.close();
  });
});
