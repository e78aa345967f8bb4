import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied } from '../../src/advisories/applied.js';
import type { FeedSource } from '../../src/advisories/feed.js';
import type { AdvisoryFeeds } from '../../src/advisories/sync.js';
import type { AdvisoryRow, AdvisorySync } from '../../src/storage/meta-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { dripExport, feedsOver, recordingLog, rng, wholeExport } from '../helpers/advisory-rig.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { perGeneration, SHADOW_PG, UNPRUNED_READS, unprunedSince, type Unpruned } from '../helpers/unpruned.js';
import { writeZip } from '../helpers/zip-writer.js';

/**
 * Guarantees, on a fleet sharing one real PostgreSQL 15: a replica whose feeds are stopped mid-sync
 * leaves no row for it and releases its lease, so another replica takes the sync at its next pass and
 * ends with exactly the export, its hooks told every change once as the source's; and
 * advisory_generation_sources, pruned with each sync's last write, answers advisoryChangesSince(g)
 * exactly as an unpruned store would (a trigger keeps every source row written: helpers/unpruned.ts),
 * for every g, with replicas syncing different sources, stopped mid-sync, and imports by hand racing
 * the prune.
 */
let pgsrv: TestPostgres;
let schemas = 0;
const opened: PgMetaStore[] = [];
const feedsToStop: AdvisoryFeeds[] = [];

/** Each export by its path prefix (/a/, /b/): how its all.zip is answered. */
const answers = new Map<string, (res: ServerResponse) => void>();
const zipAsked = new Map<string, number>();
const server = createServer((req, res) => {
  const m = /^\/(\w+)\/PyPI\/all\.zip$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
  const answer = m && answers.get(m[1]);
  if (!answer) return void res.writeHead(404).end();
  zipAsked.set(m[1], (zipAsked.get(m[1]) ?? 0) + 1);
  answer(res);
});
let base = '';
const src = (prefix: string, name: string): FeedSource => ({ name, url: `${base}${prefix}/`, ecosystem: 'PyPI', incremental: false });

const rec = (id: string, modified: string, extra: Record<string, unknown> = {}) => ({
  id,
  modified,
  affected: [{ package: { ecosystem: 'PyPI', name: `p-${id.toLowerCase()}` }, versions: ['1.0'] }],
  ...extra,
});
const rowOf = (r: { id: string; modified: string }): AdvisoryRow => ({ id: r.id, modified: r.modified, record: JSON.stringify(r) });
const zipOf = (recs: { id: string }[]) => writeZip(recs.map((r) => ({ name: `${r.id}.json`, data: JSON.stringify(r) })));
const slowly = (prefix: string, zip: Buffer) => {
  const d = dripExport(zip);
  answers.set(prefix, d.respond);
  return d;
};

/** `n` replicas' stores on one fresh schema, with the unpruned shadow of advisory_generation_sources. */
async function fleet(n: number): Promise<PgMetaStore[]> {
  const schema = `break_feed_stop_${process.pid}_${schemas++}`;
  const out: PgMetaStore[] = [];
  for (let i = 0; i < n; i++) out.push(await PgMetaStore.open(pgsrv.url, { schema }));
  opened.push(...out);
  await poolOf(out[0]).query(SHADOW_PG);
  return out;
}
const poolOf = (m: PgMetaStore) => (m as unknown as { pool: pg.Pool }).pool;

/** Every g from 0 to the store's generation: advisoryChangesSince(g) against the unpruned answer. */
async function exact(m: PgMetaStore, who = m): Promise<void> {
  const pool = poolOf(m);
  const u: Unpruned = { rows: (await pool.query(UNPRUNED_READS.rows)).rows, bySync: (await pool.query(UNPRUNED_READS.bySync)).rows };
  const gen = await m.advisoryGeneration();
  for (let g = 0; g <= gen; g++) expect({ g, ...(await who.advisoryChangesSince(g)) }).toEqual({ g, ...unprunedSince(u, g) });
  const each = perGeneration(u, (await pool.query(UNPRUNED_READS.known)).rows);
  expect(each.store).toEqual(each.unpruned);
  // Every generation got one source row at most, ever (none reused).
  const shadow = (await pool.query<{ generation: number }>(UNPRUNED_READS.shadow)).rows.map((r) => r.generation);
  expect(new Set(shadow).size).toBe(shadow.length);
}
/** advisory_generation_sources holds only generations some row has (right after a sync's last write). */
async function pruned(m: PgMetaStore): Promise<void> {
  const pool = poolOf(m);
  const kept = (await pool.query<{ generation: number }>(UNPRUNED_READS.kept)).rows.map((r) => r.generation);
  const inUse = new Set((await pool.query<{ generation: number }>('SELECT DISTINCT generation FROM advisories')).rows.map((r) => r.generation));
  expect(kept.filter((g) => !inUse.has(g))).toEqual([]);
}

beforeAll(async () => {
  pgsrv = await startPostgres();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}, 60_000);
afterAll(async () => {
  for (const m of opened) await m.close().catch(() => {});
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await pgsrv?.stop();
});
afterEach(async () => {
  clearAdvisoriesAppliedHooks();
  for (const f of feedsToStop.splice(0)) await f.stop();
});

describe("break: stopping a replica's feeds on a PostgreSQL fleet; the pruned sources stay exact", () => {
  it('a replica stopped mid-download releases the lease: the other, refused it meanwhile, takes the sync at its next pass and ends with exactly the export', async () => {
    const [a, b] = await fleet(2);
    const { log, lines } = recordingLog();
    const N = 1200;
    const recs = Array.from({ length: N }, (_, i) => rec(`PYSEC-2026-${String(i).padStart(5, '0')}`, '2026-03-01T00:00:00Z'));
    const zip = zipOf(recs);
    const slow = slowly('a', zip);
    const told = new Map<string, string[]>();
    onAdvisoriesApplied(async (c) => {
      for (const id of c.changedIds) told.set(id, [...(told.get(id) ?? []), c.source]);
    });
    const s = src('a', 'osv-pypi');
    const feedsA = feedsOver(a, [s], { log, owner: 'replica-a' });
    const feedsB = feedsOver(b, [s], { log, owner: 'replica-b' });
    feedsToStop.push(feedsB);
    const passA = feedsA.tick();
    await slow.started;
    // B's pass while A holds the lease: no sync there.
    await feedsB.tick();
    expect(zipAsked.get('a')).toBe(1);
    const t0 = performance.now();
    await feedsA.stop();
    await passA;
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await a.advisorySyncs({ limit: 5 })).toEqual([]);
    expect(await a.leaseHolder('advisory-sync:osv-pypi')).toBeNull();
    // B's next pass: the source is due and the lease free.
    answers.set('a', wholeExport(zip));
    feedsB.start(await b.advisoriesTold());
    await feedsB.tick();
    expect(zipAsked.get('a')).toBe(2);
    expect((await b.advisorySyncs({ limit: 5 })).map((x) => [x.outcome, x.changed])).toEqual([['changed', N]]);
    expect(
      (await b.listAdvisories())
        .map((j) => JSON.parse(j) as { id: string })
        .map((r) => r.id)
        .sort(),
    ).toEqual(recs.map((r) => r.id));
    expect(told.size).toBe(N);
    expect([...told.values()].every((v) => v.length === 1 && v[0] === 'osv-pypi')).toBe(true);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    await exact(b);
    await pruned(b);
  }, 60_000);

  it('replicas syncing different sources, stopped mid-sync and taken again, with imports by hand between their batches: every g answered as unpruned, on each replica', async () => {
    const [a, b, hand] = await fleet(3);
    const rand = rng(29);
    const ids = Array.from({ length: 900 }, (_, i) => `PYSEC-2026-${String(i).padStart(4, '0')}`);
    let round = 0;
    let stops = 0;
    for (; round < 6; round++) {
      // Each source serves a random half of the ids at this round's version (no older than what it served before).
      const mod = `2026-0${1 + round}-01T00:00:00Z`;
      const pick = () => ids.filter(() => rand() < 0.6).map((id) => rec(id, mod, { summary: `r${round}-${rand() < 0.5 ? 'x' : 'y'}` }));
      answers.set('a', wholeExport(zipOf(pick())));
      answers.set('b', wholeExport(zipOf(pick())));
      const feedsA = feedsOver(a, [src('a', 'osv-a')], { owner: `a-${round}` });
      const feedsB = feedsOver(b, [src('b', 'osv-b')], { owner: `b-${round}` });
      // Between batches: an import by hand on the third replica, and once a round A's feeds are stopped.
      const stopAt = 1 + Math.floor(rand() * 3);
      const reals = [a.putAdvisories, b.putAdvisories];
      for (const [m, f] of [
        [a, feedsA],
        [b, feedsB],
      ] as const) {
        const real = m.putAdvisories.bind(m);
        let n = 0;
        Object.assign(m, {
          putAdvisories: async (...args: Parameters<typeof real>) => {
            const out = await real(...args);
            n++;
            const id = ids[Math.floor(rand() * ids.length)];
            await hand.putAdvisories([rowOf(rec(id, mod, { summary: `hand-${round}-${n}` }))]);
            if (m === a && n === stopAt) (stops++, void f.stop());
            return out;
          },
        });
      }
      const [byA, byB] = await Promise.all([feedsA.syncNow(src('a', 'osv-a')), feedsB.syncNow(src('b', 'osv-b'))]);
      expect(byB.error).toBeNull();
      // A stopped sync is answered failed (STOPPED) but never recorded.
      if (byA.error) expect((await a.advisorySyncs({ source: 'osv-a', limit: 1 }))[0]?.startedAt ?? 0).toBeLessThan(byA.startedAt);
      Object.assign(a, { putAdvisories: reals[0] });
      Object.assign(b, { putAdvisories: reals[1] });
      // Taken again, it completes.
      const again = await feedsOver(a, [src('a', 'osv-a')], { owner: `a2-${round}` }).syncNow(src('a', 'osv-a'));
      expect([again.outcome, again.error]).toEqual([expect.stringMatching(/^(changed|unchanged)$/), null]);
      await pruned(a);
      // Imports by hand after the last sync: their generations' sources (none) are as unpruned.
      await hand.putAdvisories([rowOf(rec(ids[round], mod, { summary: `after-${round}` }))]);
      for (const who of [a, b, hand]) await exact(a, who);
      expect(await a.advisorySyncs({ limit: 100 }).then((xs) => xs.filter((x) => x.outcome === 'failed'))).toEqual([]);
    }
    expect(stops).toBeGreaterThanOrEqual(3);
    // The prune did prune (the answers above are not those of a table never pruned by chance).
    const pool = poolOf(a);
    expect((await pool.query(UNPRUNED_READS.kept)).rows.length).toBeLessThan((await pool.query(UNPRUNED_READS.shadow)).rows.length);
  }, 120_000);

  it("prune racing imports by hand and another source's batches on the generation lock (30 rounds at once): every g answered as unpruned, no generation reused", async () => {
    const [a, b, c] = await fleet(3);
    const rand = rng(7);
    const ids = Array.from({ length: 60 }, (_, i) => `GHSA-race-${i}`);
    const some = (tag: string, v: number) =>
      ids.filter(() => rand() < 0.3).map((id) => rowOf(rec(id, `2026-01-01T00:00:${String(v).padStart(2, '0')}Z`, { tag })));
    const sync = (source: string): AdvisorySync => ({
      source,
      startedAt: Date.now(),
      finishedAt: Date.now(),
      outcome: 'changed',
      mode: 'full',
      changed: 0,
      highWater: null,
      error: null,
    });
    for (let r = 0; r < 30; r++) {
      await Promise.all([
        a.recordAdvisorySync(some(`a${r}`, r), sync('osv-a')),
        b.putAdvisories(some(`hand${r}`, r)),
        c.putAdvisories(some(`b${r}`, r), 'osv-b'),
        b.putAdvisories(some(`hand2-${r}`, r)),
        c.recordAdvisorySync(some(`b-last${r}`, r), sync('osv-b')),
      ]);
      if (r % 5 === 4) await exact(a, [a, b, c][r % 3]);
    }
    await exact(a);
    const pool = poolOf(a);
    expect((await pool.query(UNPRUNED_READS.kept)).rows.length).toBeLessThan((await pool.query(UNPRUNED_READS.shadow)).rows.length);
  }, 120_000);
});
