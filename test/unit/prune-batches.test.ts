import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appendPulls, prunePulls, PRUNE_BATCH, verifyChain } from '../../src/core/chain.js';
import { keepRecord } from '../../src/core/record-budget.js';
import { Metrics } from '../../src/obs/metrics.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import pino from 'pino';

/**
 * A retention prune of a large record ran as one SQLite transaction on the event loop: pruning
 * 900,000 rows stopped every client of the server for 5.7 s (bench/prune-gap.mjs). It now runs a
 * batch of PRUNE_BATCH rows at a time, waiting between batches; the contract suite checks the rows
 * and anchors on both backends. This file checks, on SQLite, that the server's other work runs
 * between the batches: a pull recorded while the prune runs is written before it ends.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-prune-batches-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a large prune leaves the event loop to the clients between batches (SQLite)', () => {
  it('a pull recorded while the prune runs is written before it ends, timers fire between batches, and the record verifies', async () => {
    const path = join(dir, 'airlock.db');
    new SqliteMetaStore(path).close();
    const rows = 6 * PRUNE_BATCH + 500;
    const db = new Database(path);
    const ins = db.prepare("INSERT INTO pulls (ts, client, ecosystem, name, cache, decision) VALUES (?, 'ci', 'pypi', ?, 'hit', 'allow')");
    db.transaction(() => {
      for (let i = 0; i < rows; i++) ins.run(1000 + i, `p${i % 100}`);
    })();
    db.close();
    const meta = new SqliteMetaStore(path);
    try {
      const batches: number[] = [];
      const prune = meta.prunePulls.bind(meta);
      let written: Promise<void> | null = null;
      meta.prunePulls = async (...a: Parameters<typeof meta.prunePulls>) => {
        const n = await prune(...a);
        batches.push(n);
        // After the first batch, a client's pull comes in: it must not wait for the whole prune.
        written ??= appendPulls(meta, [{ ts: 2_000_000_000_000, client: 'late', ecosystem: 'pypi', name: 'late', cache: 'hit', decision: 'allow' }]);
        return n;
      };
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const removed = await prunePulls(meta, 1000 + rows - 100, 'test');
      clearInterval(timer);
      await written;
      expect(removed).toBe(rows - 100);
      // Batches go on while one removes any row (a later-stamped row can end one short): the last finds none.
      expect(batches).toEqual([...Array(6).fill(PRUNE_BATCH), 400, 0]);
      expect(ticks).toBeGreaterThanOrEqual(batches.length - 1);
      const audit = await meta.listPulls({ ecosystem: 'audit', limit: 100 });
      expect(audit).toHaveLength(7);
      const [late] = await meta.listPulls({ name: 'late' });
      // Written between two batches: before the last batch's anchor.
      expect(late.id).toBeLessThan(audit[0].id);
      expect(late.id).toBeGreaterThan(audit.at(-1)!.id);
      expect((await verifyChain(meta)).problem).toBeUndefined();
    } finally {
      await meta.close();
    }
  });

  it('closing the record ends a size-budget prune under way after its current batch, and the record verifies', async () => {
    const path = join(dir, 'budget.db');
    new SqliteMetaStore(path).close();
    const db = new Database(path);
    const ins = db.prepare("INSERT INTO pulls (ts, client, ecosystem, name, cache, decision) VALUES (?, 'ci', 'pypi', ?, 'hit', 'allow')");
    db.transaction(() => {
      for (let i = 0; i < 5 * PRUNE_BATCH; i++) ins.run(1000 + i, `p${i % 100}`);
    })();
    db.exec(`UPDATE pull_size SET rows = ${5 * PRUNE_BATCH}, bytes = ${5 * PRUNE_BATCH * 400}`);
    db.close();
    const meta = new SqliteMetaStore(path);
    try {
      // A budget a tenth of the record: the prune would take several batches.
      const rec = keepRecord(meta, new Metrics(false), pino({ level: 'silent' }), {
        max_bytes: (PRUNE_BATCH * 400) / 2,
        fold_window_seconds: 0,
        fold_max_windows: 10,
        refusal_limit: { per_second: 100, burst: 100, clients: 100 },
      });
      const prune = meta.prunePullsToSize.bind(meta);
      let batches = 0;
      let stopped: Promise<void> | null = null;
      meta.prunePullsToSize = async (...a: Parameters<typeof meta.prunePullsToSize>) => {
        const n = await prune(...a);
        // The server closes while the first batch commits.
        if (++batches === 1) stopped = rec.stop();
        return n;
      };
      rec.start();
      await new Promise((r) => setTimeout(r, 50));
      while (!stopped) await new Promise((r) => setTimeout(r, 10));
      await stopped;
      expect(batches).toBe(1);
      expect((await meta.pullSize()).rows).toBe(4 * PRUNE_BATCH + 1);
      expect((await verifyChain(meta)).problem).toBeUndefined();
    } finally {
      await meta.close();
    }
  });
});
