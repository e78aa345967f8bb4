import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import type { AdvisoryRow } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { feedsOver, rng } from '../helpers/advisory-rig.js';
import { perGeneration, SHADOW_SQLITE, UNPRUNED_READS, unprunedSince, type Unpruned } from '../helpers/unpruned.js';
import { writeZip } from '../helpers/zip-writer.js';

/**
 * Guarantee: on SQLite, advisory_generation_sources pruned with each sync's last write answers
 * advisoryChangesSince(g) exactly as an unpruned store would (a trigger keeps every source row
 * written: helpers/unpruned.ts), for every g and generation by generation, while the server's feeds
 * sync two sources (some syncs stopped between batches and taken again, some whose every batch is
 * unchanged) and `airlock advisories import` writes by hand from another connection between batches.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feed-stop-prune-'));
const zips = new Map<string, Buffer>();
const server = createServer((req, res: ServerResponse) => {
  const m = /^\/(\w+)\/PyPI\/all\.zip$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
  const zip = m && zips.get(m[1]);
  if (!zip) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/zip' }).end(zip);
});
let base = '';
const src = (prefix: string): FeedSource => ({ name: `osv-${prefix}`, url: `${base}${prefix}/`, ecosystem: 'PyPI', incremental: false });
const rec = (id: string, modified: string, tag: string) => ({
  id,
  modified,
  summary: tag,
  affected: [{ package: { ecosystem: 'PyPI', name: `p-${id.toLowerCase()}` }, versions: ['1.0'] }],
});
const rowOf = (r: { id: string; modified: string }): AdvisoryRow => ({ id: r.id, modified: r.modified, record: JSON.stringify(r) });
const zipOf = (recs: { id: string }[]) => writeZip(recs.map((r) => ({ name: `${r.id}.json`, data: JSON.stringify(r) })));

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

const dbOf = (m: SqliteMetaStore) => (m as unknown as { db: Database.Database }).db;
async function exact(m: SqliteMetaStore): Promise<void> {
  const db = dbOf(m);
  const u: Unpruned = {
    rows: db.prepare(UNPRUNED_READS.rows).all() as Unpruned['rows'],
    bySync: db.prepare(UNPRUNED_READS.bySync).all() as Unpruned['bySync'],
  };
  const gen = await m.advisoryGeneration();
  for (let g = 0; g <= gen; g++) expect({ g, ...(await m.advisoryChangesSince(g)) }).toEqual({ g, ...unprunedSince(u, g) });
  const each = perGeneration(u, db.prepare(UNPRUNED_READS.known).all() as Unpruned['bySync']);
  expect(each.store).toEqual(each.unpruned);
  const shadow = (db.prepare(UNPRUNED_READS.shadow).all() as { generation: number }[]).map((r) => r.generation);
  expect(new Set(shadow).size).toBe(shadow.length);
}

describe('break: the pruned sources on SQLite, with stops, unchanged syncs and imports by hand', () => {
  it('every g answered as an unpruned store would, each generation told as its writer', async () => {
    const path = join(dir, 'meta.db');
    const meta = new SqliteMetaStore(path);
    dbOf(meta).exec(SHADOW_SQLITE);
    // `airlock advisories import` by hand: another connection to the same database.
    const hand = new SqliteMetaStore(path);
    const rand = rng(28);
    const ids = Array.from({ length: 800 }, (_, i) => `PYSEC-2026-${String(i).padStart(4, '0')}`);
    let stops = 0;
    let unchanged = 0;
    try {
      for (let round = 0; round < 8; round++) {
        const mod = `2026-0${1 + (round >> 1)}-01T00:00:00Z`;
        // Every other round each source serves what it served before: every batch unchanged.
        if (round % 2 === 0) for (const p of ['a', 'b']) zips.set(p, zipOf(ids.filter(() => rand() < 0.6).map((id) => rec(id, mod, `${p}${round}`))));
        const feeds = feedsOver(meta, [src('a'), src('b')], { owner: `r${round}` });
        const real = meta.putAdvisories.bind(meta);
        let n = 0;
        const stopAt = round % 3 === 1 ? 1 + Math.floor(rand() * 2) : -1;
        Object.assign(meta, {
          putAdvisories: async (...args: Parameters<typeof real>) => {
            const out = await real(...args);
            n++;
            await hand.putAdvisories([rowOf(rec(ids[Math.floor(rand() * ids.length)], mod, `hand-${round}-${n}`))]);
            if (n === stopAt) (stops++, void feeds.stop());
            return out;
          },
        });
        for (const s of [src('a'), src('b')]) {
          const got = await feeds.syncNow(s);
          if (got.outcome === 'unchanged') unchanged++;
        }
        Object.assign(meta, { putAdvisories: real });
        // Taken again after a stop, each completes.
        for (const s of [src('a'), src('b')]) {
          const again = await feedsOver(meta, [s]).syncNow(s);
          expect(again.error).toBeNull();
        }
        // Once more, at once: every batch unchanged (nothing written, no generation, the prune still runs).
        const same = await feedsOver(meta, [src('b')]).syncNow(src('b'));
        expect([same.outcome, same.changed]).toEqual(['unchanged', 0]);
        unchanged++;
        await hand.putAdvisories([rowOf(rec(ids[round], mod, `after-${round}`))]);
        await exact(meta);
      }
      expect(stops).toBeGreaterThanOrEqual(2);
      expect(unchanged).toBeGreaterThan(0);
      const db = dbOf(meta);
      expect(db.prepare(UNPRUNED_READS.kept).all().length).toBeLessThan(db.prepare(UNPRUNED_READS.shadow).all().length);
      expect((await meta.advisorySyncs({ limit: 200 })).filter((s) => s.outcome === 'failed')).toEqual([]);
    } finally {
      await hand.close();
      await meta.close();
    }
  }, 120_000);
});
