import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PRUNE_BATCH, verifyChain } from '../../src/core/chain.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { startAirlock } from '../helpers/airlock.js';

/**
 * The record's guarantees through a running server (SQLite): pruning never stops it from serving.
 */
const DAY = 86_400_000;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A data directory whose record holds `batches` prune batches of rows forty days old, then 100 recent rows. */
function pastRetention(batches: number): { data: string; path: string; cut: number } {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-prune-start-'));
  dirs.push(dir);
  const data = join(dir, 'data');
  mkdirSync(data);
  const path = join(data, 'airlock.db');
  new SqliteMetaStore(path).close();
  const now = Date.now();
  const db = new Database(path);
  const ins = db.prepare("INSERT INTO pulls (ts, client, ecosystem, name, cache, decision) VALUES (?, 'ci', 'pypi', ?, 'hit', 'allow')");
  db.transaction(() => {
    for (let i = 0; i < batches * PRUNE_BATCH; i++) ins.run(now - 40 * DAY + i, `p${i % 100}`);
    for (let i = 0; i < 100; i++) ins.run(now - DAY + i, 'recent');
  })();
  db.close();
  return { data, path, cut: now - 30 * DAY };
}

describe('pruning never stops the server', () => {
  it('a server whose record is past retention listens and answers while the prune it starts with runs, and the prune still ends', async () => {
    // Ten batches of rows forty days old (a record whose retention was just set, or a server down a
    // while): startServer awaited the whole prune before it listened.
    const { data, cut } = pastRetention(10);
    const a = await startAirlock('records:\n  retention_days: 30\n', { dataDir: data });
    try {
      const old = async () => (await a.airlock.meta.listPulls({ until: cut, limit: 1 })).length;
      // Listening, with the prune under way: old rows are left, and a request is answered meanwhile.
      expect(await old()).toBe(1);
      expect((await fetch(`${a.url}/-/healthz`)).status).toBe(200);
      expect(await old()).toBe(1);
      // The prune goes on in the background to its end.
      for (let i = 0; i < 600 && (await old()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await old()).toBe(0);
      expect((await a.airlock.meta.listPulls({ name: 'recent', limit: 1000 })).length).toBe(100);
      expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
    } finally {
      await a.stop();
    }
  }, 120_000);

  it('a server stopped while its prune runs ends the prune after its batch: the record verifies, and the rest waits for the next prune', async () => {
    const { data, path, cut } = pastRetention(10);
    const a = await startAirlock('records:\n  retention_days: 30\n', { dataDir: data });
    await a.stop();
    const meta = new SqliteMetaStore(path);
    try {
      expect((await meta.listPulls({ until: cut, limit: 1 })).length).toBe(1);
      expect((await verifyChain(meta)).problem).toBeUndefined();
    } finally {
      await meta.close();
    }
  }, 120_000);
});
