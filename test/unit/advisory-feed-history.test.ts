import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { feedsOver } from '../helpers/advisory-rig.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';

// A source that fails for a long while (its host down for a night: a retry every 5 minutes, ~100
// failures in 8 hours) keeps its high-water mark and its freshness: the mark and the newest good
// sync are read from the good syncs, not from the last 100 of any outcome.
const dir = mkdtempSync(join(tmpdir(), 'airlock-feed-history-'));
const feed = new OsvFeedServer();
beforeAll(async () => void (await feed.start()));
afterAll(async () => {
  await feed.stop();
  rmSync(dir, { recursive: true, force: true });
});

const rec = (id: string, modified: string) => ({ id, modified, affected: [{ package: { ecosystem: 'PyPI', name: 'lib' }, versions: [id] }] });

describe('a source failing for a long while', () => {
  it('syncs incrementally from its mark once it is back, and shows when it last synced meanwhile', async () => {
    const meta = new SqliteMetaStore(join(dir, 'meta.db'));
    const src: FeedSource = { name: 'osv-pypi', url: feed.url, ecosystem: 'PyPI', incremental: true };
    const feeds = feedsOver(meta, [src]);
    feed.put('PyPI', rec('PYSEC-1', '2026-11-01T00:00:00Z'));
    const good = await feeds.syncNow(src);
    expect(good).toMatchObject({ mode: 'full', outcome: 'changed', highWater: '2026-11-01T00:00:00.000000000Z' });
    // 150 failures since, as the feeds record them (the mark carried, nothing written).
    const now = Date.now();
    for (let i = 0; i < 150; i++)
      await meta.recordAdvisorySync([], {
        source: 'osv-pypi',
        startedAt: now - 1000 + i,
        finishedAt: now - 999 + i,
        outcome: 'failed',
        mode: 'incremental',
        changed: 0,
        highWater: good.highWater,
        error: 'connect ECONNREFUSED',
      });
    await feeds.tick(); // not due (the last failure is recent): reads where the source stands
    expect(feeds.feeds()[0]).toMatchObject({ syncedAt: good.finishedAt, last: { outcome: 'failed' } });
    expect(feeds.warnings()).toEqual([]);
    feed.put('PyPI', rec('PYSEC-2', '2026-11-02T00:00:00Z'));
    const zips = feed.asked('all.zip').length;
    expect(await feeds.syncNow(src)).toMatchObject({ mode: 'incremental', outcome: 'changed', changed: 1 });
    expect(feed.asked('all.zip')).toHaveLength(zips);
    await feeds.stop();
    await meta.close();
  });
});
