import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { Metrics } from '../../src/obs/metrics.js';
import type { AdvisorySync } from '../../src/storage/meta-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { feedsOver } from '../helpers/advisory-rig.js';
import { freePort } from '../helpers/oci-tools.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { ChangesModel, costRig, expectChanges, run, SYNCS_KEPT, toldFrom } from '../helpers/syncprune.js';

/**
 * Attacks on advisory_syncs read by good syncs (b6fc6d0) and pruned with each sync's last write
 * (382a917), on a real PostgreSQL 15 with two replicas (two stores on one schema): a source's mark
 * and freshness on both when one replica's syncs fail past SYNCS_KEPT; advisoryChangesSince against
 * a model of the store that never prunes, writes routed to either replica; both replicas pruning
 * while others read; what a prune costs (timed).
 */
const feed = new OsvFeedServer();
let pgsrv: TestPostgres;
let schemas = 0;
const opened: PgMetaStore[] = [];
const clients: pg.Client[] = [];
const rec = (id: string, modified: string) => ({ id, modified, affected: [{ package: { ecosystem: 'PyPI', name: 'lib' }, versions: [id] }] });

/** Two replicas' stores on a schema of their own, and a plain connection to it. */
async function fleet(): Promise<[PgMetaStore, PgMetaStore, pg.Client]> {
  const schema = `break_syncprune_${process.pid}_${schemas++}`;
  const a = await PgMetaStore.open(pgsrv.url, { schema });
  const b = await PgMetaStore.open(pgsrv.url, { schema });
  const c = new pg.Client({ connectionString: pgsrv.url, options: `-c search_path=${schema}` });
  await c.connect();
  opened.push(a, b);
  clients.push(c);
  return [a, b, c];
}

/** `n` failed syncs of `source` as an older Airlock left them (never pruned), or before the first prune. */
const oldFailures = (c: pg.Client, source: string, n: number, mark: string | null) =>
  c.query(
    `INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation)
     SELECT $1, $3::bigint + 2 * i, $3::bigint + 2 * i + 1, 'failed', 'incremental', 0, $4, 'down', 0 FROM generate_series(1, $2::int) i`,
    [source, n, Date.now() - 10 * n, mark],
  );

beforeAll(async () => {
  [pgsrv] = await Promise.all([startPostgres(), feed.start()]);
}, 60_000);
afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  for (const m of opened) await m.close().catch(() => {});
  await feed.stop();
  await pgsrv?.stop();
});

describe('break: a source failing past SYNCS_KEPT on one replica (PostgreSQL, two replicas)', () => {
  it('both replicas keep its mark and its freshness; the next sync on either is incremental', async () => {
    const [a, b, c] = await fleet();
    const src: FeedSource = { name: 'osv-pypi', url: feed.url, ecosystem: 'PyPI', incremental: true };
    // Replica B cannot reach the feed (its URL a closed port): every sync it runs fails.
    const down: FeedSource = { ...src, url: `http://127.0.0.1:${await freePort()}/` };
    const fa = feedsOver(a, [src], { owner: 'a' });
    const fb = feedsOver(b, [down], { owner: 'b' });
    feed.put('PyPI', rec('PYSEC-1', '2026-11-01T00:00:00Z'));
    expect(await fa.syncNow(src)).toMatchObject({ mode: 'full', outcome: 'changed' });
    const good = await fa.syncNow(src);
    expect(good).toMatchObject({ mode: 'incremental', outcome: 'unchanged', highWater: '2026-11-01T00:00:00.000000000Z' });
    await oldFailures(c, 'osv-pypi', 1200, good.highWater);
    for (let i = 0; i < 5; i++) expect(await fb.syncNow(down)).toMatchObject({ outcome: 'failed', mode: 'incremental', highWater: good.highWater });
    const all = await b.advisorySyncs({ source: 'osv-pypi', limit: 5000 });
    // The first sync's generation is in use, but advisory_generation_sources names its source: pruned.
    expect(all).toHaveLength(SYNCS_KEPT + 1);
    expect(all.filter((s) => s.outcome !== 'failed').map((s) => s.outcome)).toEqual(['unchanged']);
    for (const [m, f] of [
      [a, src],
      [b, down],
    ] as const) {
      const again = feedsOver(m, [f]);
      const metrics = new Metrics();
      metrics.watchAdvisoryFeeds(() => again.feeds());
      await again.tick(); // not due: the last failure is recent
      expect(again.feeds()[0]).toMatchObject({ syncedAt: good.finishedAt, last: { outcome: 'failed' } });
      expect(again.warnings().filter((w) => /never synced/.test(w))).toEqual([]);
      const age = /airlock_advisories_age_seconds\{source="osv-pypi"\} (\S+)/.exec(await metrics.registry.metrics());
      expect(Number(age?.[1])).toBeGreaterThanOrEqual(0);
      await again.stop();
    }
    feed.put('PyPI', rec('PYSEC-2', '2026-11-02T00:00:00Z'));
    const zips = feed.asked('all.zip').length;
    expect(await fa.syncNow(src)).toMatchObject({ mode: 'incremental', outcome: 'changed', changed: 1, highWater: '2026-11-02T00:00:00.000000000Z' });
    expect(feed.asked('all.zip')).toHaveLength(zips);
    await fa.stop();
    await fb.stop();
  });
});

describe('break: pruning and the sources a change names (PostgreSQL, two replicas)', () => {
  it('advisoryChangesSince(g) and the hooks name what a store that never prunes would, for every g, on either replica; other sources keep every row', async () => {
    const [a, b, c] = await fleet();
    const model = new ChangesModel();
    const check = async () => {
      const gs = [0, Math.floor(model.gen / 2), model.gen - 1, model.gen].filter((g) => g >= 0);
      await expectChanges(a, model, gs);
      await expectChanges(b, model, gs);
    };
    const first = await run([a, b], model, 28, 300, check, 150);
    // Those syncs as an older Airlock recorded them (before advisory_generation_sources), then a long outage of osv-a.
    await c.query('DELETE FROM advisory_generation_sources WHERE generation IN (SELECT generation FROM advisory_syncs)');
    await oldFailures(c, 'osv-a', SYNCS_KEPT, null);
    const second = await run([a, b], model, 29, 600, check, 150);
    const count = (s: string) => (first.syncs.get(s) ?? 0) + (second.syncs.get(s) ?? 0);
    await expectChanges(
      b,
      model,
      Array.from({ length: model.gen + 2 }, (_, g) => g),
    );
    const rows = async (s: string) => (await c.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM advisory_syncs WHERE source = $1', [s])).rows[0].n;
    expect(await rows('osv-a')).toBeLessThan(count('osv-a') + SYNCS_KEPT);
    expect(await rows('osv-b')).toBe(count('osv-b'));
    expect(await rows('osv-c')).toBe(count('osv-c'));
    for (const g of [0, Math.floor(model.gen / 2), model.gen - 1]) expect(await toldFrom(a, g)).toEqual([model.since(g).sources.join(',')]);
  });

  it('both replicas pruning at once, each its source, while a reader asks: never a source lost, never a write failed', async () => {
    const [a, b, c] = await fleet();
    await oldFailures(c, 'osv-a', SYNCS_KEPT, null);
    await oldFailures(c, 'osv-b', SYNCS_KEPT, null);
    const sync = (source: string, i: number, failed: boolean): AdvisorySync => ({
      source,
      startedAt: i,
      finishedAt: i + 1,
      outcome: failed ? 'failed' : 'changed',
      mode: 'incremental',
      changed: 0,
      highWater: 'T',
      error: failed ? 'down' : null,
    });
    let writing = true;
    const writer = async (m: PgMetaStore, source: string) => {
      for (let i = 0; i < 250; i++) {
        const failed = i % 3 !== 0;
        const id = `${source}-${i % 40}`;
        await m.recordAdvisorySync(failed ? [] : [{ id, modified: '1', record: JSON.stringify({ id, i }) }], sync(source, i, failed));
      }
    };
    const bad: string[] = [];
    const reader = async () => {
      while (writing) {
        const g = Math.max(0, (await a.advisoryGeneration()) - 5);
        for (const s of (await b.advisoryChangesSince(g)).sources) if (s !== 'osv-a' && s !== 'osv-b') bad.push(`since ${g}: ${s}`);
      }
    };
    const r = reader();
    await Promise.all([writer(a, 'osv-a'), writer(b, 'osv-b')]).finally(() => (writing = false));
    await r;
    expect(bad).toEqual([]);
    expect((await b.advisoryChangesSince(0)).sources).toEqual(['osv-a', 'osv-b']);
    for (const s of ['osv-a', 'osv-b']) {
      const left = await a.advisorySyncs({ source: s, limit: 5000 });
      // The newest 1,000, and older ones only where their generation is in use.
      expect(left.length).toBeGreaterThanOrEqual(SYNCS_KEPT);
      expect(left.length).toBeLessThanOrEqual(SYNCS_KEPT + 40);
    }
  });
});

describe('break: what a prune costs (PostgreSQL, timed)', () => {
  const { hw, failed } = costRig;
  /** 100,000 advisories; `syncs` syncs of osv-pypi, every `heldEvery`th naming a generation rows still have (0: none); all others failed. */
  async function fill(c: pg.Client, syncs: number, heldEvery: number): Promise<void> {
    const held = heldEvery ? Math.floor(syncs / heldEvery) : 0;
    await c.query(
      `INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation)
       SELECT 'osv-pypi', 1, 2, CASE WHEN $2 > 0 AND i % $2 = 0 THEN 'changed' ELSE 'failed' END, 'incremental', 0, $3, NULL,
         CASE WHEN $2 > 0 AND i % $2 = 0 THEN i ELSE 0 END FROM generate_series(1, $1::int) i`,
      [syncs, heldEvery, hw],
    );
    await c.query(`INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation)
       SELECT 'osv-debian', 1, 2, 'failed', 'full', 0, NULL, 'down', 0 FROM generate_series(1, 50)`);
    await c.query(
      `INSERT INTO advisories (id, modified, record, generation)
       SELECT 'PYSEC-' || a, '2026-01-01T00:00:00Z', '{"id":"PYSEC-' || a || '","summary":"' || repeat('x', 600) || '"}',
         CASE WHEN $1 > 0 THEN ((a % $1) + 1) * $2 ELSE 0 END FROM generate_series(0, 99999) a`,
      [held, heldEvery || 1],
    );
    await c.query('UPDATE advisory_generation SET generation = $1', [syncs]);
  }
  async function writes(m: PgMetaStore, n: number): Promise<number[]> {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await m.recordAdvisorySync([], failed);
      ms.push(performance.now() - t0);
    }
    return ms.sort((x, y) => x - y);
  }

  it('a sync write with 100,000 advisories and 5,000 syncs (4,000 past the newest 1,000 naming generations in use) stays a few ms', async () => {
    const [a, b, c] = await fleet();
    await fill(c, 5000, 1);
    const ms = await writes(a, 7);
    console.log(
      `PostgreSQL, 100,000 advisories, 5,000 syncs all naming generations in use: a failed sync's write ${ms.map((x) => x.toFixed(1)).join(', ')} ms`,
    );
    expect(ms[3]).toBeLessThan(80);
    expect(await b.advisorySyncs({ source: 'osv-pypi', limit: 10_000 })).toHaveLength(5007);
    expect(await b.advisorySyncs({ source: 'osv-debian', limit: 100 })).toHaveLength(50);
  });

  it('the first sync after an upgrade prunes 100,000 old failures once (bounded), then a few ms', async () => {
    const [a, b, c] = await fleet();
    await fill(c, 100_000, 0);
    const t0 = performance.now();
    await a.recordAdvisorySync([], failed);
    const first = performance.now() - t0;
    const ms = await writes(a, 5);
    console.log(`PostgreSQL, 100,000 failed syncs: the first write (prunes 99,001) ${first.toFixed(0)} ms; then ${ms.map((x) => x.toFixed(1)).join(', ')} ms`);
    expect(first).toBeLessThan(3000);
    expect(ms[2]).toBeLessThan(50);
    expect(await b.advisorySyncs({ source: 'osv-pypi', limit: 10_000 })).toHaveLength(SYNCS_KEPT);
    expect(await b.advisorySyncs({ source: 'osv-debian', limit: 100 })).toHaveLength(50);
  });
});
