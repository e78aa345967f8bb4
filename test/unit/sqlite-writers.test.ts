import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appendPulls, verifyChain } from '../../src/core/chain.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * The embedded database has other writers: `airlock tokens`, `airlock advisories import` and the
 * like write to it while the server runs. A write transaction that read before it wrote (the pull
 * record reads the chain's head first) and found another process committing in between failed at
 * once with SQLITE_BUSY (its snapshot was stale; the busy timeout does not apply), so a pull's row
 * could not be written and the pull was refused. Write transactions take the write lock first
 * (BEGIN IMMEDIATE) and wait their turn.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-writers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Another process holding the write lock for `ms`, writing and committing; resolves when it holds the lock and when it is done. */
function otherWriter(path: string, ms: number): { locked: Promise<void>; done: Promise<number | null> } {
  const script = `
    const db = new (require('better-sqlite3'))(process.argv[1]);
    db.exec('BEGIN IMMEDIATE');
    db.prepare("INSERT OR REPLACE INTO pages (key, body, fetched_at) VALUES ('other', 'x', 1)").run();
    process.stdout.write('locked\\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.argv[2]));
    db.exec('COMMIT');
    db.close();`;
  const child = spawn(process.execPath, ['-e', script, path, String(ms)], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  const locked = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.once('exit', () => reject(new Error('the other writer exited before it held the lock')));
  });
  return { locked, done: new Promise((r) => child.once('exit', r)) };
}

const row = (i: number) => ({ ts: i, client: 'c', ecosystem: 'pypi' as const, name: 'x', version: '1', cache: 'miss' as const, decision: 'allow' as const });

describe('SQLite: write transactions wait for another process that is writing', () => {
  it('a pull row, an advisory sync and an alert claim each read, then write, while another process commits', async () => {
    const path = join(dir, 'airlock.db');
    const meta = new SqliteMetaStore(path);
    try {
      await appendPulls(meta, [row(1)]);
      const ops: [string, () => Promise<unknown>][] = [
        ['pull row', () => appendPulls(meta, [row(2)])],
        [
          'advisory sync',
          () =>
            meta.recordAdvisorySync([{ id: 'A-1', modified: '2026-01-01T00:00:00Z', record: '{}' }], {
              source: 's',
              startedAt: 1,
              finishedAt: 2,
              outcome: 'changed',
              mode: 'full',
              changed: 1,
              highWater: null,
              error: null,
            }),
        ],
        ['alert claim', () => meta.alerts.claimAlerts('me', Date.now(), 1000, 10)],
      ];
      for (const [what, op] of ops) {
        const other = otherWriter(path, 300);
        await other.locked;
        const t0 = performance.now();
        await expect(op(), what).resolves.not.toThrow();
        // It waited for the other writer's commit (300 ms), within the store's busy timeout.
        expect(performance.now() - t0, what).toBeGreaterThan(150);
        expect(await other.done, what).toBe(0);
      }
      const chain = await verifyChain(meta);
      expect(chain.rows).toBe(2);
      expect(chain.problem).toBeUndefined();
    } finally {
      await meta.close();
    }
  });
});
