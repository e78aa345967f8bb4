import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied } from '../../src/advisories/applied.js';
import type { FeedSource } from '../../src/advisories/feed.js';
import { LivePolicy } from '../../src/core/live-policy.js';
import { createLogger } from '../../src/obs/logger.js';
import { Advisories } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { reloadAdvisories } from '../../src/reload.js';
import type pg from 'pg';
import type { AdvisoryRow } from '../../src/storage/meta-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { OsvFeedServer, type OsvTestRecord } from '../helpers/osv-feed.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { writeZip } from '../helpers/zip-writer.js';
import { feedsOver } from '../helpers/advisory-rig.js';

/**
 * A feed sync written in batches (a17fcb8) on a fleet: two replicas on one real PostgreSQL 15. One
 * syncs, the other applies what changed as it is written (in parts), imports by hand or syncs
 * another source that carries the same records; the record stays exact.
 */
const log = createLogger('silent');
const feed = new OsvFeedServer();
let pgsrv: TestPostgres;
let schemas = 0;
const opened: PgMetaStore[] = [];

const rec = (id: string, modified: string, extra: Record<string, unknown> = {}): OsvTestRecord => ({
  id,
  modified,
  affected: [{ package: { ecosystem: 'PyPI', name: `p-${id.toLowerCase()}` }, versions: ['1.0'] }],
  ...extra,
});
const serveZip = (recs: OsvTestRecord[]) => {
  const z = writeZip(recs.map((r) => ({ name: `${r.id}.json`, data: JSON.stringify(r) })));
  feed.zip = () => z;
};
const src = (name: string): FeedSource => ({ name, url: feed.url, ecosystem: 'PyPI', incremental: false });

/** Two replicas' stores on one schema. */
async function fleet(): Promise<[PgMetaStore, PgMetaStore]> {
  const schema = `break_feedsync_${process.pid}_${schemas++}`;
  const a = await PgMetaStore.open(pgsrv.url, { schema });
  const b = await PgMetaStore.open(pgsrv.url, { schema });
  opened.push(a, b);
  return [a, b];
}
const feedsOn = (meta: PgMetaStore, sources: FeedSource[], apply?: () => Promise<number>) =>
  feedsOver(meta, sources, { apply, owner: `replica-${Math.random()}` });

beforeAll(async () => {
  [pgsrv] = await Promise.all([startPostgres(), feed.start()]);
  feed.put('PyPI', rec('PYSEC-2026-SEED', '2026-01-01T00:00:00Z'));
}, 60_000);
afterAll(async () => {
  for (const m of opened) await m.close().catch(() => {});
  await feed.stop();
  await pgsrv?.stop();
});
afterEach(() => clearAdvisoriesAppliedHooks());

describe('break: a batched feed sync on a PostgreSQL fleet', () => {
  it("another replica's sync of a newer copy, committed between this sync's check and its write, is not rolled back", async () => {
    const [a, b] = await fleet();
    const osv = feedsOn(a, [src('osv')]);
    const mirror = feedsOn(b, [src('mirror')]);
    await a.putAdvisories([{ id: 'PYSEC-2026-Y', modified: '2026-01-01T00:00:00Z', record: JSON.stringify(rec('PYSEC-2026-Y', '2026-01-01T00:00:00Z')) }]);
    const real = b.recordAdvisorySync.bind(b);
    let interleaved = false;
    Object.assign(b, {
      recordAdvisorySync: async (...a: Parameters<typeof real>) => {
        if (!interleaved) {
          interleaved = true;
          serveZip([rec('PYSEC-2026-Y', '2026-09-01T00:00:00Z', { summary: 'newest' })]);
          expect(await osv.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: 1 });
        }
        return real(...a);
      },
    });
    serveZip([rec('PYSEC-2026-Y', '2026-05-01T00:00:00Z', { summary: 'a mirror behind' })]);
    await mirror.syncNow(src('mirror'));
    expect(interleaved).toBe(true);
    expect((await a.advisoriesModified(['PYSEC-2026-Y'])).get('PYSEC-2026-Y')).toBe('2026-09-01T00:00:00Z');
  }, 30_000);

  it('the other replica applies a sync in parts as it is written, with an import by hand between its batches: its policy and hooks end exact', async () => {
    const [a, b] = await fleet();
    const N = 1600;
    serveZip(Array.from({ length: N }, (_, i) => rec(`PYSEC-2026-${String(i).padStart(5, '0')}`, '2026-03-01T00:00:00Z')));
    const liveB = new LivePolicy(new Policy({}), new Advisories(), 'v' as never);
    const feedsA = feedsOn(a, [src('osv-pypi')]);
    const feedsB = feedsOn(b, [], () => reloadAdvisories(b, liveB, log));
    feedsB.start(await b.advisoriesTold());
    await feedsB.stop();
    const told = new Map<string, Set<string>>();
    onAdvisoriesApplied(async (c) => {
      for (const id of c.changedIds) told.set(id, new Set([...(told.get(id) ?? []), ...c.source.split(',')]));
    });
    // Between A's batches B notices (its poll), and once an operator imports a record by hand on B.
    const real = a.putAdvisories.bind(a);
    let batches = 0;
    Object.assign(a, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        const n = await real(...a);
        batches++;
        if (batches === 2)
          await b.putAdvisories([{ id: 'GHSA-hand-1', modified: '2026-04-01T00:00:00Z', record: JSON.stringify(rec('GHSA-hand-1', '2026-04-01T00:00:00Z')) }]);
        await feedsB.notice();
        return n;
      },
    });
    expect(await feedsA.syncNow(src('osv-pypi'))).toMatchObject({ outcome: 'changed', changed: N });
    expect(batches).toBe(Math.ceil(N / 250) - 1);
    await feedsB.notice();
    expect(liveB.advisories.size).toBe(N + 1);
    expect(told.size).toBe(N + 1);
    // A notice tells its ids with every source behind them (applied.ts): the import's with 'import'.
    expect([...told.get('GHSA-hand-1')!]).toContain('import');
    expect([...told.get('PYSEC-2026-00000')!]).toEqual(['osv-pypi']);
    expect([...told.get(`PYSEC-2026-${String(N - 1).padStart(5, '0')}`)!]).toEqual(['osv-pypi']);
    expect((await a.advisorySyncs({ source: 'osv-pypi', limit: 1 }))[0]).toMatchObject({ outcome: 'changed', changed: N });
    const all = await b.advisoryChangesSince(0);
    expect(all.ids).toHaveLength(N + 1);
    expect(all.sources).toEqual(['import', 'osv-pypi']);
  }, 60_000);

  it('a sync cut short on PostgreSQL (a store error at its third batch) records what it wrote, keeps the mark, and the next completes the rest', async () => {
    const [a] = await fleet();
    const N = 1000;
    serveZip(Array.from({ length: N }, (_, i) => rec(`PYSEC-2026-${i}`, '2026-03-01T00:00:00Z')));
    const feeds = feedsOn(a, [src('osv-pypi')]);
    const real = a.putAdvisories.bind(a);
    let calls = 0;
    Object.assign(a, {
      putAdvisories: (...a: Parameters<typeof real>) => (++calls === 3 ? Promise.reject(new Error('connection terminated')) : real(...a)),
    });
    expect(await feeds.syncNow(src('osv-pypi'))).toMatchObject({ outcome: 'failed', changed: 500, highWater: null });
    expect((await a.listAdvisories()).length).toBe(500);
    expect(await a.advisoryChangesSince(0)).toMatchObject({ sources: ['osv-pypi'] });
    expect(await feeds.syncNow(src('osv-pypi'))).toMatchObject({ outcome: 'changed', changed: 500, highWater: '2026-03-01T00:00:00.000000000Z' });
    expect((await a.listAdvisories()).length).toBe(N);
  }, 30_000);

  it('a stop of the feeds while a batch is being written on PostgreSQL: that batch commits whole, no other is written, the sync is not recorded, the next completes', async () => {
    const [a] = await fleet();
    const N = 1500;
    serveZip(Array.from({ length: N }, (_, i) => rec(`PYSEC-2026-${String(i).padStart(5, '0')}`, '2026-03-01T00:00:00Z')));
    const feeds = feedsOn(a, [src('osv-pypi')]);
    const real = a.putAdvisories.bind(a);
    let batches = 0;
    let stopping: Promise<void> | undefined;
    Object.assign(a, {
      putAdvisories: async (...args: Parameters<typeof real>) => {
        batches++;
        // The stop comes while the second batch's transaction is under way.
        if (batches === 2) stopping = feeds.stop();
        return real(...args);
      },
    });
    await feeds.tick();
    await stopping;
    expect(batches).toBe(2);
    expect((await a.listAdvisories()).length).toBe(500);
    expect(await a.advisorySyncs({ limit: 1 })).toEqual([]);
    Object.assign(a, { putAdvisories: real });
    expect(await feedsOn(a, [src('osv-pypi')]).syncNow(src('osv-pypi'))).toMatchObject({ outcome: 'changed', changed: N - 500 });
    expect((await a.listAdvisories()).length).toBe(N);
  }, 30_000);

  it("a replica reading what changed reads ids and their sources as of one moment: another replica's sync, pruning the sources of generations it wrote over, is not read half", async () => {
    const [a, b] = await fleet();
    const row = (id: string, v: number): AdvisoryRow => ({
      id,
      modified: `2026-0${v}-01T00:00:00Z`,
      record: JSON.stringify(rec(id, `2026-0${v}-01T00:00:00Z`)),
    });
    const sync = { startedAt: 1, finishedAt: 2, outcome: 'changed' as const, mode: 'full' as const, changed: 0, highWater: null, error: null };
    // A sync on B: its one changed batch before its last (generation 1, osv-pypi's), its last changing nothing.
    await b.putAdvisories([row('PYSEC-2026-P', 1)], 'osv-pypi');
    await b.recordAdvisorySync([], { ...sync, source: 'osv-pypi' });
    // A reads what changed; once it has read the ids, B's next sync writes over generation 1 (its source pruned).
    const pool = (a as unknown as { pool: pg.Pool }).pool;
    let interleaved = false;
    const between = async (sql: unknown) => {
      if (interleaved || typeof sql !== 'string' || !/FROM advisories WHERE generation >/.test(sql)) return;
      interleaved = true;
      expect(await b.recordAdvisorySync([row('PYSEC-2026-P', 2)], { ...sync, source: 'osv-debian' })).toEqual(['PYSEC-2026-P']);
    };
    // Every query of A's pool goes through a client it hands out (pool.query too, with callbacks).
    const hooked = (c: pg.PoolClient): pg.PoolClient => {
      const real = c.query.bind(c) as (...a: unknown[]) => Promise<unknown>;
      const query = (...args: unknown[]) => {
        const cb = args.at(-1) as ((err: unknown, r?: unknown) => void) | undefined;
        if (typeof cb !== 'function') return real(...args).then((r) => between(args[0]).then(() => r));
        return real(...args.slice(0, -1), (err: Error | null, r: unknown) => (err ? cb(err) : between(args[0]).then(() => cb(null, r), cb)));
      };
      return Object.assign(c, { query });
    };
    const connect = pool.connect.bind(pool) as (cb?: (err: Error | undefined, c: pg.PoolClient, done: unknown) => void) => Promise<pg.PoolClient>;
    Object.assign(pool, {
      connect: (cb?: (err: Error | undefined, c: pg.PoolClient, done: unknown) => void) =>
        cb ? connect((err, c, done) => cb(err, c && hooked(c), done)) : connect().then(hooked),
    });
    const seen = await a.advisoryChangesSince(0);
    expect(interleaved).toBe(true);
    // Before B's sync (generation 1, osv-pypi's) or after it (2, osv-debian's); never generation 1 told as an import by hand.
    expect([
      { ids: ['PYSEC-2026-P'], sources: ['osv-pypi'], generation: 1 },
      { ids: ['PYSEC-2026-P'], sources: ['osv-debian'], generation: 2 },
    ]).toContainEqual(seen);
  }, 30_000);
});
