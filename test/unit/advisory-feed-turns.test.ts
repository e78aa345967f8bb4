import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import type { AdvisoryRow } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { OsvFeedServer, type OsvTestRecord } from '../helpers/osv-feed.js';
import { longestStall } from '../helpers/stall.js';
import { feedsOver } from '../helpers/advisory-rig.js';

/**
 * A full feed sync runs on the server's own event loop. Before, an export of 20,000 records was
 * read, checked and written in one stretch: the loop stopped for 1.5-2 s (every client with it),
 * 0.3-0.75 s of it one SQLite transaction. Now the export is read in slices and written in batches
 * (storage/advisory-pages.ts), with turns of the loop between them; the record of the sync is the
 * same: every record stored, its count, its outcome, its source told to the hooks.
 */
const N = 6_000;
const dir = mkdtempSync(join(tmpdir(), 'airlock-feed-turns-'));
const feed = new OsvFeedServer();
const source: FeedSource = { name: 'osv-pypi', url: '', ecosystem: 'PyPI', incremental: false };
const record = (i: number, modified: string): OsvTestRecord => ({
  id: `PYSEC-2026-${i}`,
  modified,
  details: 'd'.repeat(1500),
  affected: [{ package: { ecosystem: 'PyPI', name: `pkg${i}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.2.3' }] }] }],
});
/** The export as served: made once per change (Python's zipfile takes seconds for thousands of records). */
const makeZip = feed.zip.bind(feed);
function publish(): void {
  const zip = makeZip('PyPI');
  feed.zip = () => zip;
}

beforeAll(async () => {
  for (let i = 0; i < N; i++) feed.put('PyPI', record(i, '2026-01-01T00:00:00Z'));
  publish();
  source.url = (await feed.start()).url;
});
afterAll(async () => {
  await feed.stop();
  rmSync(dir, { recursive: true, force: true });
});

const feedsOf = (meta: SqliteMetaStore) => feedsOver(meta, [source], { maxIncremental: 100 });

describe('a full advisory feed sync on the server event loop', () => {
  it('reads the export in slices and writes it in batches with turns between them, and records it as one sync of its source', async () => {
    const meta = new SqliteMetaStore(join(dir, 'a.db'));
    try {
      const writes: { rows: number; via: string }[] = [];
      for (const via of ['putAdvisories', 'recordAdvisorySync'] as const) {
        const real = meta[via].bind(meta) as (rows: AdvisoryRow[], x: never) => Promise<unknown>;
        Object.assign(meta, { [via]: (rows: AdvisoryRow[], x: never) => (writes.push({ rows: rows.length, via }), real(rows, x)) });
      }
      const feeds = feedsOf(meta);
      const first = await longestStall(() => feeds.syncNow(source));
      expect(first.value).toMatchObject({ mode: 'full', outcome: 'changed', changed: N });
      expect((await meta.listAdvisories()).length).toBe(N);
      // Batches of at most 250 records, the last with the sync's record; the hooks hear of one source's change, not of an import by hand.
      expect(writes.length).toBeGreaterThanOrEqual(N / 250);
      expect(writes.every((w) => w.rows <= 250)).toBe(true);
      expect(writes.map((w) => w.via).lastIndexOf('putAdvisories')).toBe(writes.length - 2);
      expect(writes.reduce((n, w) => n + w.rows, 0)).toBe(N);
      expect(await meta.advisoryChangesSince(0)).toMatchObject({ sources: ['osv-pypi'] });
      // The code before stopped the loop for ~0.6 s here (one stretch); in slices ~20-60 ms (the bound leaves room for a loaded machine).
      expect(first.stallMs).toBeLessThan(300);

      // Again, nothing changed: still read and compared in slices.
      const again = await longestStall(() => feeds.syncNow(source));
      expect(again.value).toMatchObject({ outcome: 'unchanged', changed: 0 });
      expect(again.stallMs).toBeLessThan(300);

      // One record changed, in the first batch: the sync's outcome counts the batches before its last transaction.
      feed.put('PyPI', record(0, '2026-02-01T00:00:00Z'));
      publish();
      const generation = await meta.advisoryGeneration();
      expect(await feeds.syncNow(source)).toMatchObject({ outcome: 'changed', changed: 1 });
      expect(await meta.advisoryChangesSince(generation)).toMatchObject({ ids: ['PYSEC-2026-0'], sources: ['osv-pypi'] });
      // (Its last transaction changed nothing: the record is not in the last batch.)
      expect((await meta.advisorySyncs({ source: 'osv-pypi', limit: 1 }))[0]).toMatchObject({ outcome: 'changed', changed: 1, generation: 0 });
    } finally {
      await meta.close();
    }
  });

  it('a sync cut short while writing keeps the batches it wrote, records the failure and its count, and the next sync finishes the rest', async () => {
    const meta = new SqliteMetaStore(join(dir, 'b.db'));
    try {
      const real = meta.putAdvisories.bind(meta);
      let calls = 0;
      Object.assign(meta, {
        putAdvisories: (rows: AdvisoryRow[], src?: string) => (++calls === 3 ? Promise.reject(new Error('disk full')) : real(rows, src)),
      });
      const feeds = feedsOf(meta);
      const failed = await feeds.syncNow(source);
      expect(failed).toMatchObject({ outcome: 'failed', changed: 500, error: 'disk full', highWater: null });
      expect((await meta.listAdvisories()).length).toBe(500);
      expect((await meta.advisorySyncs({ source: 'osv-pypi', limit: 1 }))[0]).toMatchObject({ outcome: 'failed', changed: 500, generation: 0 });
      // What was written is told as the source's change (two generations, one per batch).
      expect(await meta.advisoryChangesSince(0)).toMatchObject({ sources: ['osv-pypi'], generation: 2 });
      const next = await feeds.syncNow(source);
      expect(next).toMatchObject({ outcome: 'changed', changed: N - 500 });
      expect((await meta.listAdvisories()).length).toBe(N);
    } finally {
      await meta.close();
    }
  });
});
