import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { Metrics } from '../../src/obs/metrics.js';
import type { AdvisorySync } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { feedsOver } from '../helpers/advisory-rig.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { ChangesModel, costRig, expectChanges, run, SYNCS_KEPT, toldFrom } from '../helpers/syncprune.js';

/**
 * Attacks on advisory_syncs read by good syncs (b6fc6d0) and pruned with each sync's last write
 * (382a917), on the embedded SQLite store: a source's mark and freshness through 1,200 failures and
 * the pruning they cause; advisoryChangesSince (and the hooks) against a model of the store that
 * never prunes, for every generation; other sources' rows; what a prune costs (timed).
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-syncprune-'));
const feed = new OsvFeedServer();
let dbs = 0;
const open = () => new SqliteMetaStore(join(dir, `${dbs++}.db`));
const raw = (m: SqliteMetaStore) => (m as unknown as { db: Database.Database }).db;
const rec = (id: string, modified: string) => ({ id, modified, affected: [{ package: { ecosystem: 'PyPI', name: 'lib' }, versions: [id] }] });

beforeAll(async () => void (await feed.start()));
afterAll(async () => {
  await feed.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `n` failed syncs of `source` recorded as the feeds record them (the mark carried, nothing written). */
async function failures(m: SqliteMetaStore, source: string, n: number, mark: string | null): Promise<void> {
  const now = Date.now();
  for (let i = 0; i < n; i++)
    await m.recordAdvisorySync([], {
      source,
      startedAt: now - 2 * n + 2 * i,
      finishedAt: now - 2 * n + 2 * i + 1,
      outcome: 'failed',
      mode: 'incremental',
      changed: 0,
      highWater: mark,
      error: 'connect ECONNREFUSED',
    });
}

describe('break: a source failing past SYNCS_KEPT (SQLite)', () => {
  it('keeps its mark and its freshness through 1,200 failures, real ones among them, and the pruning they cause', async () => {
    const meta = open();
    const src: FeedSource = { name: 'osv-pypi', url: feed.url, ecosystem: 'PyPI', incremental: true };
    const feeds = feedsOver(meta, [src]);
    feed.put('PyPI', rec('PYSEC-1', '2026-11-01T00:00:00Z'));
    expect(await feeds.syncNow(src)).toMatchObject({ mode: 'full', outcome: 'changed', highWater: '2026-11-01T00:00:00.000000000Z' });
    // The newest good sync changed nothing: no generation in use keeps its row, only its being the newest good one.
    const good = await feeds.syncNow(src);
    expect(good).toMatchObject({ mode: 'incremental', outcome: 'unchanged', highWater: '2026-11-01T00:00:00.000000000Z' });
    // Real failures (the export gone: 404), then many more as the feeds record them.
    const held = feed.records.get('PyPI')!;
    feed.records.delete('PyPI');
    for (let i = 0; i < 5; i++) expect(await feeds.syncNow(src)).toMatchObject({ outcome: 'failed', mode: 'incremental' });
    await failures(meta, 'osv-pypi', 1200, good.highWater);
    feed.records.set('PyPI', held);
    // Pruned: the newest 1,000 are left and the newest good one.
    const all = await meta.advisorySyncs({ source: 'osv-pypi', limit: 5000 });
    // The first sync's generation is in use, but advisory_generation_sources names its source: pruned.
    expect(all).toHaveLength(SYNCS_KEPT + 1);
    expect(all.filter((s) => s.outcome !== 'failed').map((s) => s.outcome)).toEqual(['unchanged']);
    // A replica started now (or restarted) reads where the source stands.
    const again = feedsOver(meta, [src]);
    const metrics = new Metrics();
    metrics.watchAdvisoryFeeds(() => again.feeds());
    await again.tick(); // not due: the last failure is recent
    expect(again.feeds()[0]).toMatchObject({ syncedAt: good.finishedAt, last: { outcome: 'failed' } });
    expect(again.feeds()[0].ageSeconds).toBeGreaterThanOrEqual(0);
    expect(again.warnings().filter((w) => /never synced/.test(w))).toEqual([]);
    const age = /airlock_advisories_age_seconds\{source="osv-pypi"\} (\S+)/.exec(await metrics.registry.metrics());
    expect(Number(age?.[1])).toBeGreaterThanOrEqual(0);
    // Back: incremental from the mark, no all.zip.
    feed.put('PyPI', rec('PYSEC-2', '2026-11-02T00:00:00Z'));
    const zips = feed.asked('all.zip').length;
    expect(await again.syncNow(src)).toMatchObject({ mode: 'incremental', outcome: 'changed', changed: 1, highWater: '2026-11-02T00:00:00.000000000Z' });
    expect(feed.asked('all.zip')).toHaveLength(zips);
    await feeds.stop();
    await again.stop();
    await meta.close();
  });
});

describe('break: pruning and the sources a change names (SQLite)', () => {
  it('advisoryChangesSince(g) and the hooks name what a store that never prunes would, for every g; other sources keep every row', async () => {
    const meta = open();
    const model = new ChangesModel();
    const check = async () => {
      const gs = [0, 1, Math.floor(model.gen / 3), Math.floor(model.gen / 2), model.gen - 2, model.gen - 1, model.gen].filter((g) => g >= 0);
      await expectChanges(meta, model, gs);
    };
    const first = await run([meta], model, 28, 300, check, 100);
    expect(model.since(0).sources).toEqual(['osv-a', 'osv-b', 'osv-c']);
    // Those syncs as an older Airlock recorded them, before advisory_generation_sources: only advisory_syncs
    // names their generations. Then a long outage of osv-a (1,000 failures recorded since: without pruning,
    // or before this change's first prune): its generations in use now lie past the newest 1,000.
    const db = raw(meta);
    db.prepare('DELETE FROM advisory_generation_sources WHERE generation IN (SELECT generation FROM advisory_syncs)').run();
    const ins = db.prepare(
      `INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation) VALUES ('osv-a', 1, 2, 'failed', 'incremental', 0, NULL, 'down', 0)`,
    );
    db.transaction(() => {
      for (let i = 0; i < SYNCS_KEPT; i++) ins.run();
    })();
    const second = await run([meta], model, 29, 900, check, 100);
    const count = (s: string) => (first.syncs.get(s) ?? 0) + (second.syncs.get(s) ?? 0);
    await expectChanges(
      meta,
      model,
      Array.from({ length: model.gen + 2 }, (_, g) => g),
    );
    // Pruning happened (or this test proves nothing), and only osv-a's rows went.
    const rows = (s: string) => db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM advisory_syncs WHERE source = ?').get(s)!.n;
    expect(rows('osv-a')).toBeLessThan(count('osv-a') + SYNCS_KEPT);
    expect(rows('osv-b')).toBe(count('osv-b'));
    expect(rows('osv-c')).toBe(count('osv-c'));
    expect(count('osv-b')).toBeGreaterThan(10);
    // The hooks of a replica that last told g hear the model's sources.
    for (const g of [0, Math.floor(model.gen / 2), model.gen - 1]) expect(await toldFrom(meta, g)).toEqual([model.since(g).sources.join(',')]);
    await meta.close();
  });
});

describe('break: what a prune costs (SQLite, timed)', () => {
  const { hw, failed } = costRig;
  /** 100,000 advisories; `syncs` syncs of osv-pypi, every `heldEvery`th naming a generation rows still have (0: none); all others failed. */
  function fill(m: SqliteMetaStore, syncs: number, heldEvery: number): void {
    const db = raw(m);
    const held = heldEvery ? Math.floor(syncs / heldEvery) : 0;
    db.transaction(() => {
      const sync = db.prepare(
        'INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation) VALUES (?, 1, 2, ?, ?, 0, ?, ?, ?)',
      );
      for (let i = 1; i <= syncs; i++) {
        const gen = heldEvery && i % heldEvery === 0 ? i : 0;
        sync.run('osv-pypi', gen ? 'changed' : 'failed', 'incremental', hw, gen ? null : 'down', gen);
      }
      // Another source's syncs, none of them prunable by osv-pypi's.
      for (let i = 0; i < 50; i++) sync.run('osv-debian', 'failed', 'full', null, 'down', 0);
      const adv = db.prepare('INSERT INTO advisories (id, modified, record, generation) VALUES (?, ?, ?, ?)');
      for (let a = 0; a < 100_000; a++)
        adv.run(`PYSEC-${a}`, '2026-01-01T00:00:00Z', JSON.stringify({ id: `PYSEC-${a}`, summary: 'x'.repeat(600) }), held ? ((a % held) + 1) * heldEvery : 0);
      db.prepare('UPDATE advisory_generation SET generation = ? WHERE id = 1').run(syncs);
    })();
  }
  async function writes(m: SqliteMetaStore, n: number): Promise<number[]> {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await m.recordAdvisorySync([], failed);
      ms.push(performance.now() - t0);
    }
    return ms.sort((a, b) => a - b);
  }

  it('a sync write with 100,000 advisories and 5,000 syncs (4,000 past the newest 1,000 naming generations in use) stays a few ms', async () => {
    const meta = open();
    fill(meta, 5000, 1);
    const ms = await writes(meta, 7);
    console.log(`SQLite, 100,000 advisories, 5,000 syncs all naming generations in use: a failed sync's write ${ms.map((x) => x.toFixed(1)).join(', ')} ms`);
    expect(ms[3]).toBeLessThan(50);
    expect(await meta.advisorySyncs({ source: 'osv-pypi', limit: 10_000 })).toHaveLength(5007);
    expect(await meta.advisorySyncs({ source: 'osv-debian', limit: 100 })).toHaveLength(50);
    await meta.close();
  });

  it('the first sync after an upgrade prunes 100,000 old failures once (bounded), then a few ms', async () => {
    const meta = open();
    fill(meta, 100_000, 0);
    const t0 = performance.now();
    await meta.recordAdvisorySync([], failed);
    const first = performance.now() - t0;
    const ms = await writes(meta, 5);
    console.log(`SQLite, 100,000 failed syncs: the first write (prunes 99,001) ${first.toFixed(0)} ms; then ${ms.map((x) => x.toFixed(1)).join(', ')} ms`);
    expect(first).toBeLessThan(2000);
    expect(ms[2]).toBeLessThan(20);
    expect(await meta.advisorySyncs({ source: 'osv-pypi', limit: 10_000 })).toHaveLength(SYNCS_KEPT);
    expect(await meta.advisorySyncs({ source: 'osv-debian', limit: 100 })).toHaveLength(50);
    await meta.close();
  });
});
