import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appendPulls, verifyChain } from '../../src/core/chain.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { holdWriteLock } from '../helpers/other-process.js';

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
        const other = holdWriteLock(dir, path, 300);
        await other.ready;
        const t0 = performance.now();
        await expect(op(), what).resolves.not.toThrow();
        // It waited for the other writer's commit (300 ms), within the store's busy timeout.
        expect(performance.now() - t0, what).toBeGreaterThan(150);
        expect((await other.done).code, what).toBe(0);
      }
      const chain = await verifyChain(meta);
      expect(chain.rows).toBe(2);
      expect(chain.problem).toBeUndefined();
    } finally {
      await meta.close();
    }
  });
});
