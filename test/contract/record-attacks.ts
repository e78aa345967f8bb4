import { describe, expect, it } from 'vitest';
import { appendPulls, link, prunePulls, prunePullsToSize, verifyChain } from '../../src/core/chain.js';
import type { PullLog, PullRecord, StoredPullRecord } from '../../src/storage/meta-store.js';

/**
 * Attacks on the batched prunes (core/chain.ts PRUNE_BATCH) and the chain's verification beside
 * them, run on every backend (test/unit/record-attacks.test.ts for SQLite,
 * test/integration/pg-record-attacks.test.ts for PostgreSQL). Small batches (`maxRows`) stand for
 * PRUNE_BATCH so that a batch's edges are where the test puts them.
 */
const DAY = 86_400_000;
const T = 20_000 * DAY;

const row = (ts: number, i: number, extra: Partial<PullRecord> = {}): PullRecord => ({
  ts,
  client: `c${i % 4}`,
  ecosystem: i % 3 === 0 ? 'oci' : 'pypi',
  name: `p${i % 5}`,
  version: '1.0',
  sha256: String(i % 7).repeat(64),
  cache: 'miss',
  decision: i % 6 === 0 ? 'deny' : 'allow',
  ...extra,
});

async function all(s: PullLog): Promise<StoredPullRecord[]> {
  const out: StoredPullRecord[] = [];
  for await (const r of s.scanPulls()) out.push(r);
  return out;
}

/** pull_days and pull_size as a count of the rows left (a folded row counts its events). */
async function expectTotalsRecounted(s: PullLog): Promise<void> {
  const rows = await all(s);
  const days = new Map<string, number>();
  for (const r of rows) {
    const k = `${Math.floor(r.ts / DAY) * DAY}|${r.ecosystem}|${r.decision}`;
    days.set(k, (days.get(k) ?? 0) + (r.count ?? 1));
  }
  const kept = (await s.dailyCounts(0)).filter((d) => d.count !== 0);
  expect(new Map(kept.map((d) => [`${d.day}|${d.ecosystem}|${d.decision}`, d.count]))).toEqual(days);
  expect((await s.pullSize()).rows).toBe(rows.length);
}

export function recordAttacks(name: string, fresh: () => Promise<PullLog>): void {
  describe(`batched prunes beside the record's readers: ${name}`, () => {
    it('retention goes past a row stamped later than its neighbours at the end of a batch (clock skew): every row older than the cut goes', async () => {
      const s = await fresh();
      // Rows 0-11 are old, but row 2 was written by a replica whose clock ran ahead: with batches of
      // three it is the last row of the first batch. Then four rows inside retention.
      await appendPulls(s, [
        ...Array.from({ length: 12 }, (_, i) => row(i === 2 ? T + 10 * DAY : T + i, i)),
        ...Array.from({ length: 4 }, (_, i) => row(T + 5 * DAY + i, 100 + i)),
      ]);
      const cut = T + 2 * DAY;
      const removed = await prunePulls(s, cut, 'test', 3);
      // One prune of everything (before batches) removed rows 0-11, the skewed one with them; the
      // batches stopped after the first, which was not full, leaving nine rows past retention until
      // the next day's prune.
      expect((await s.listPulls({ until: cut - 1, limit: 100 })).map((r) => r.ts)).toEqual([]);
      expect(removed).toBe(12);
      expect((await verifyChain(s)).problem).toBeUndefined();
      await expectTotalsRecounted(s);
    });

    it('a verification that reads while a prune commits its batches (the server beside `audit verify`) finds the record intact', async () => {
      // The verification reads the chain a page at a time (scanPulls: 1,000 rows), and the prune
      // anchors are read before the walk: the server's batched prune commits between those reads.
      for (const at of [0, 1500]) {
        const s = await fresh();
        await appendPulls(
          s,
          Array.from({ length: 3000 }, (_, i) => row(T + i, i)),
        );
        await appendPulls(
          s,
          Array.from({ length: 20 }, (_, i) => row(T + 5 * DAY + i, i)),
        );
        const scan = s.scanPulls.bind(s);
        let pruned = 0;
        s.scanPulls = async function* () {
          let k = 0;
          if (at === 0) pruned = await prunePulls(s, T + DAY, 'server', 1000);
          for await (const r of scan()) {
            yield r;
            if (++k === at) pruned = await prunePulls(s, T + DAY, 'server', 1000);
          }
        };
        const rep = await verifyChain(s);
        expect(pruned).toBe(3000);
        expect(rep.problem).toBeUndefined();
        // What the walk ends at is the head of the record.
        expect(rep.head).toBe((await s.listPulls({ limit: 1 }))[0].hash);
      }
    });

    it('day and size totals equal a recount after batched prunes of a skewed, folded, multi-day record with pulls recorded between batches', async () => {
      const s = await fresh();
      const recs: PullRecord[] = [];
      for (let i = 0; i < 60; i++) {
        // Out of order by up to two days either way; some folded refusals of many events.
        const skew = i % 9 === 0 ? 2 * DAY : i % 7 === 0 ? -2 * DAY : 0;
        const folded = i % 5 === 0 ? { decision: 'deny' as const, code: 'not_allowlisted', count: 3 + i, lastTs: T + i * DAY + 50 } : {};
        recs.push(row(T + Math.floor(i / 6) * DAY + i * 1000 + skew, i, folded));
      }
      await appendPulls(s, recs);
      // A pull recorded between every two batches (the recorder's group commit), some of them old.
      const prune = s.prunePulls.bind(s);
      let k = 0;
      s.prunePulls = async (...a: Parameters<PullLog['prunePulls']>) => {
        const n = await prune(...a);
        await appendPulls(s, [row(k % 2 ? T + 20 * DAY : T, 1000 + k++)]);
        return n;
      };
      await prunePulls(s, T + 4 * DAY, 'test', 7);
      await expectTotalsRecounted(s);
      expect((await verifyChain(s)).problem).toBeUndefined();
      const size = s.prunePullsToSize.bind(s);
      s.prunePullsToSize = async (...a: Parameters<PullLog['prunePullsToSize']>) => {
        const n = await size(...a);
        await appendPulls(s, [row(T + 30 * DAY, 2000 + k++, { decision: 'deny', count: 5, lastTs: T + 30 * DAY + 9 })]);
        return n;
      };
      await prunePullsToSize(s, Math.floor((await s.pullSize()).bytes / 3), 'test', 4);
      await expectTotalsRecounted(s);
      expect((await verifyChain(s)).problem).toBeUndefined();
    });

    it('a size budget smaller than one anchor ends (the record is one anchor), verifies, and counts the row it keeps', async () => {
      const s = await fresh();
      await appendPulls(
        s,
        Array.from({ length: 10 }, (_, i) => row(T + i, i)),
      );
      await prunePullsToSize(s, 1, 'test', 3);
      const left = await all(s);
      expect(left).toHaveLength(1);
      expect(left[0]).toMatchObject({ ecosystem: 'audit', name: 'prune' });
      expect((await verifyChain(s)).problem).toBeUndefined();
      await expectTotalsRecounted(s);
      // The empty record: nothing to prune, no anchor.
      const empty = await fresh();
      expect(await prunePulls(empty, T, 'test', 3)).toBe(0);
      expect(await prunePullsToSize(empty, 0, 'test', 3)).toBe(0);
      expect(await all(empty)).toEqual([]);
    });

    it('a batch that fails midway (its anchor cannot be written) leaves the record as the batches before it did: it verifies and its totals hold', async () => {
      const s = await fresh();
      await appendPulls(
        s,
        Array.from({ length: 20 }, (_, i) => row(T + i * 3_600_000, i)),
      );
      let calls = 0;
      const anchor = (last: { id: number; hash: string | null }, removed: number): PullRecord => {
        if (++calls === 3) throw new Error('crash between the delete and the anchor');
        return {
          ts: T + 10 * DAY,
          client: 'test',
          ecosystem: 'audit',
          name: 'prune',
          sha256: last.hash,
          cache: 'none',
          decision: 'allow',
          reason: `${removed}`,
        };
      };
      expect(await s.prunePulls(T + DAY, anchor, link, 4)).toBe(4);
      expect(await s.prunePulls(T + DAY, anchor, link, 4)).toBe(4);
      await expect(s.prunePulls(T + DAY, anchor, link, 4)).rejects.toThrow('crash');
      const left = await all(s);
      expect(left.filter((r) => r.ecosystem !== 'audit')).toHaveLength(12);
      expect((await verifyChain(s)).problem).toBeUndefined();
      await expectTotalsRecounted(s);
    });
  });
}
