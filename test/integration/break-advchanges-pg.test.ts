import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied } from '../../src/advisories/applied.js';
import { importAdvisories } from '../../src/cli/advisories.js';
import { LivePolicy } from '../../src/core/live-policy.js';
import { Advisories, type OsvRecord } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { applyAdvisoryChanges, readAdvisories } from '../../src/reload.js';
import type { MetaStore } from '../../src/storage/meta-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { replicaOver, rng } from '../helpers/advisory-rig.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * Attacks on a notice that applies only the changed advisories (f1e3678, reload.ts
 * applyAdvisoryChanges; 2ba0f53, Advisories.withChanges) with real stores: replicas on SQLite and
 * on a PostgreSQL whose text collation is not bytewise (ICU en-US), records that meet where order
 * decides, odd ids; and a writer replica's batches raced by notices, SIGHUP re-reads and a stop.
 * Each replica here is what server.ts builds: a LivePolicy, the feeds' notice applying through
 * applyAdvisoryChanges, and a SIGHUP (server.ts sighupAdvisories: a notice, else a whole re-read).
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-advchanges-pg-'));
let pgsrv: TestPostgres;
let icuUrl = '';
let schemas = 0;
const opened: MetaStore[] = [];
beforeAll(async () => {
  pgsrv = await startPostgres();
  // A database whose text sorts as people read it (ICU en-US): 'a' < 'B' < 'b', punctuation nearly ignored.
  const c = new pg.Client({ connectionString: pgsrv.url });
  await c.connect();
  await c.query(`CREATE DATABASE icu TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'`);
  await c.end();
  icuUrl = pgsrv.url.replace(/\/postgres$/, '/icu');
}, 60_000);
afterEach(() => clearAdvisoriesAppliedHooks());
afterAll(async () => {
  for (const m of opened) await m.close().catch(() => {});
  await pgsrv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function pgStore(url = pgsrv.url): Promise<PgMetaStore> {
  const m = await PgMetaStore.open(url, { schema: `break_advchanges_${process.pid}_${schemas++}` });
  opened.push(m);
  return m;
}
async function pgPair(url = pgsrv.url): Promise<[PgMetaStore, PgMetaStore]> {
  const schema = `break_advchanges_${process.pid}_${schemas++}`;
  const a = await PgMetaStore.open(url, { schema });
  const b = await PgMetaStore.open(url, { schema });
  opened.push(a, b);
  return [a, b];
}
function sqliteStore(name: string): SqliteMetaStore {
  const m = new SqliteMetaStore(join(dir, `${name}.db`));
  opened.push(m);
  return m;
}

/** A replica as server.ts builds one over `meta` (advisory-rig.ts), refusing at high. */
const replica = (meta: MetaStore) => replicaOver(meta, { policy: new Policy({ advisories: { refuse: 'high' } } as never), owner: `r${schemas}` });

const row = (r: OsvRecord) => ({ id: r.id, modified: r.modified ?? '', record: JSON.stringify(r) });

const NAMES = ['CVE-2026-1', 'CVE-2026-2', 'CVE-2026-3'];
const PKGS = ['alpha', 'beta'];
const DEB = ['openssl', 'zlib'];
const HASHES = ['a'.repeat(64), 'b'.repeat(64)];
const VERSIONS = ['1.0', '2.0', '3.0'];
const HIGH = { severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }] };
const LOW = { severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N' }] };

/** Ids that sort differently by code unit (JS), by UTF-8 byte (SQLite) and by ICU en-US (PostgreSQL here). */
const ODD_IDS = ['', 'a-1', 'B-1', 'b-1', '_x', 'Z', 'é', 'e', 'MAL-𝒳', 'MAL-！', 'MAL-a', 'MAL-B', 'DEBIAN-ä', 'DEBIAN-z', 'x y', "o'q", 'q"\\{,}', 'NULL'];

/** A record that meets others where the order decides: names both rate (severity by name), a hash both list, a package both name. */
function randomRecord(r: () => number, id: string, v: number): OsvRecord {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const deb = id.startsWith('DEBIAN-');
  const mal = id.startsWith('MAL-');
  return {
    id,
    modified: `2026-01-01T00:${String(Math.floor(v / 60) % 60).padStart(2, '0')}:${String(v % 60).padStart(2, '0')}Z`,
    aliases: NAMES.filter(() => r() < 0.4),
    ...(deb ? { upstream: [pick(NAMES)] } : r() < 0.5 ? HIGH : r() < 0.5 ? LOW : {}),
    ...(r() < 0.2 ? { withdrawn: '2026-02-01T00:00:00Z' } : {}),
    summary: `${id} v${v}`,
    affected: deb
      ? [{ package: { ecosystem: 'Debian:12', name: pick(DEB) }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: pick(VERSIONS) }] }] }]
      : [
          {
            package: { ecosystem: 'PyPI', name: pick(PKGS) },
            versions: VERSIONS.filter(() => r() < 0.5),
            ...(mal ? { database_specific: { sha256: pick(HASHES) } } : {}),
          },
        ],
  } as OsvRecord;
}

/** Every question the advisories answer, over every name, package, version and hash above, and the policy's refusals. */
function dump(a: Advisories, ids: string[]): string {
  const out = [`size=${a.size} withdrawn=${a.withdrawn} newest=${a.newest} debian=${a.osCoverage('Debian:12')}`];
  const policy = new Policy({ advisories: { refuse: 'high' } } as never).withAdvisories(a);
  for (const p of PKGS)
    for (const v of VERSIONS)
      for (const h of [undefined, ...HASHES]) {
        out.push(`${p}@${v}#${h?.[0]}: ${JSON.stringify(a.matchPypi(p, v, h))} refused=${policy.pypiAdvisory(p, v, h)?.reason ?? '-'}`);
      }
  for (const p of DEB) for (const v of VERSIONS) out.push(`${p}@${v}: ${JSON.stringify(a.matchOs('Debian:12', { name: p, version: v }))}`);
  for (const n of [...NAMES, ...ids]) {
    const rec = a.get(n);
    out.push(`${JSON.stringify(n)}: get=${JSON.stringify(rec)} find=${a.find(n)?.id} hashes=${rec ? a.hashesOf(rec).join(',') : '-'}`);
  }
  return out.join('\n');
}

describe('break: replicas on SQLite and on PostgreSQL (ICU collation) apply the same changes alike', () => {
  it('after each notice, both answer every question as a whole re-read of either store does', async () => {
    const sq = sqliteStore('collation');
    const pq = await pgStore(icuUrl);
    // The store does sort differently: the first page of each.
    const r = rng(29);
    const pool = [...ODD_IDS, ...Array.from({ length: 40 }, (_, i) => `${['PYSEC', 'GHSA', 'MAL', 'DEBIAN'][i % 4]}-${i}`)];
    const first = pool.map((id, i) => randomRecord(r, id, i));
    for (const m of [sq, pq]) {
      await m.putAdvisories(first.map(row));
      await m.markAdvisoriesTold(await m.advisoryGeneration());
    }
    const sqOrder = (await sq.advisoryPage(null, 1000)).map((x) => x.id);
    const pqOrder = (await pq.advisoryPage(null, 1000)).map((x) => x.id);
    expect(pqOrder).not.toEqual(sqOrder);
    const [rs, rp] = [await replica(sq), await replica(pq)];
    let v = 1000;
    for (let step = 0; step < 12; step++) {
      const changes = pool.filter(() => r() < 0.12).map((id) => randomRecord(r, id, v++));
      if (step % 3 === 0) changes.push(randomRecord(r, `NEW-${step}`, v++), randomRecord(r, `MAL-new-${step}`, v++));
      for (const m of [sq, pq]) await m.putAdvisories(changes.map(row), 'osv-x');
      const [ts, tp] = [await rs.feeds.notice(), await rp.feeds.notice()];
      expect(ts.length * 2, 'the changes path, not a whole re-read').toBeLessThan(rs.live.advisories.size + rs.live.advisories.withdrawn);
      expect(new Set(tp)).toEqual(new Set(ts));
      const ids = [...pool, ...changes.map((c) => c.id)];
      const want = dump(await readAdvisories(sq), ids);
      expect(dump(await readAdvisories(pq), ids), `step ${step}: the whole re-reads agree`).toBe(want);
      expect(dump(rs.live.advisories, ids), `step ${step}: SQLite replica`).toBe(want);
      expect(dump(rp.live.advisories, ids), `step ${step}: PostgreSQL replica`).toBe(want);
    }
  }, 60_000);
});

describe('break: a record whose JSON id is not the id of its row (PostgreSQL)', () => {
  // Broke on main (f1e3678): before e426203 an import stored an id with a lone surrogate, and
  // PostgreSQL keeps it with a U+FFFD in its place (node-pg encodes the text as UTF-8): the row's id is
  // not its record's. A start's whole read holds the record under its JSON id. A record whose id is
  // that row's (an import today) writes over the row, and a whole re-read holds only the new one; the
  // notice put the new one in and took out only row ids it no longer found, so the old record stayed
  // in force (refusing what the store no longer names) until a SIGHUP re-read everything. Fixed: a
  // changed id with a U+FFFD re-reads every record (reload.ts).
  it('an import writing over such a row: the record it replaced leaves force', async () => {
    const meta = await pgStore();
    const r = rng(41);
    const ids = Array.from({ length: 40 }, (_, i) => `PYSEC-${i}`);
    await meta.putAdvisories(ids.map((id, i) => row(randomRecord(r, id, i))));
    // As an import before e426203 stored it (the store's own write: the import now leaves such an id out).
    const legacy = {
      id: 'MAL-\uD800',
      modified: '2026-01-01T00:00:00Z',
      summary: 'legacy',
      affected: [{ package: { ecosystem: 'PyPI', name: 'alpha' }, versions: ['1.0', '2.0', '3.0'] }],
    };
    await meta.putAdvisories([row(legacy as OsvRecord)]);
    expect((await meta.advisoryPage(null, 100)).map((x) => x.id)).toContain('MAL-\uFFFD');
    await meta.markAdvisoriesTold(await meta.advisoryGeneration());
    const b = await replica(meta);
    expect(b.live.policy.pypiAdvisory('alpha', '1.0')?.match.id).toBe('MAL-\uD800');
    const tree = join(dir, 'fffd');
    mkdirSync(tree, { recursive: true });
    writeFileSync(
      join(tree, 'a.json'),
      JSON.stringify({ id: 'MAL-\uFFFD', modified: '2026-02-01T00:00:00Z', affected: [{ package: { ecosystem: 'PyPI', name: 'beta' }, versions: ['9.0'] }] }),
    );
    expect((await importAdvisories(meta, tree)).changed).toBe(1);
    expect(await b.feeds.notice()).toEqual(['MAL-\uFFFD']);
    const whole = await readAdvisories(meta);
    expect(whole.matchPypi('alpha', '1.0').map((m) => m.id)).not.toContain('MAL-\uD800');
    const all = [...ids, 'MAL-\uD800', 'MAL-\uFFFD'];
    expect(dump(b.live.advisories, all)).toBe(dump(whole, all));
  });
});

describe('break: a writer replica racing notices, SIGHUP re-reads and a stop (PostgreSQL)', () => {
  /** The record in force of `id` here, withdrawn or not (the index holds withdrawn ones apart). */
  const held = (a: Advisories, id: string): OsvRecord | undefined => (a as unknown as { prepared: Map<string, { rec: OsvRecord }> }).prepared.get(id)?.rec;
  const version = (rec: OsvRecord | undefined) => (rec ? Number(/ v(\d+)$/.exec(rec.summary ?? '')?.[1]) : -1);

  /** `meta` behind a slow link: each read of the advisories waits 0-12 ms before and after (more interleavings). */
  function slowed(meta: PgMetaStore, r: () => number): PgMetaStore {
    const m = meta as unknown as Record<string, (...x: unknown[]) => Promise<unknown>>;
    for (const name of ['advisoryPage', 'advisoryRecords', 'advisoryChangesSince', 'advisoryGeneration']) {
      const real = m[name].bind(m);
      m[name] = async (...x: unknown[]) => {
        await new Promise((res) => setTimeout(res, r() * 12));
        const out = await real(...x);
        await new Promise((res) => setTimeout(res, r() * 12));
        return out;
      };
    }
    return meta;
  }

  for (const seed of [31, 32, 33])
    it(`never tells the hooks of a change not in force, and ends with exactly what the store holds (seed ${seed})`, async () => {
      const r = rng(seed);
      const [writer, plain] = await pgPair();
      const reader = slowed(plain, rng(seed + 100));
      const pool = [...ODD_IDS, ...Array.from({ length: 300 }, (_, i) => `${['PYSEC', 'GHSA', 'MAL', 'DEBIAN'][i % 4]}-${i}`)];
      let v = 0;
      const first = pool.map((id) => randomRecord(r, id, v++));
      await writer.putAdvisories(first.map(row), 'osv-x');
      await writer.markAdvisoriesTold(await writer.advisoryGeneration());
      const b = await replica(reader);
      /** Each write: the versions it stored and the generation it got. */
      const writes: { gen: number; ids: Map<string, number> }[] = [
        { gen: await writer.advisoryGeneration(), ids: new Map(first.map((x) => [x.id, version(x)])) },
      ];
      const wrong: string[] = [];
      let toldCount = 0;
      onAdvisoriesApplied(async (c) => {
        const g = b.generation();
        for (const id of c.changedIds) {
          toldCount++;
          // The version the store held for `id` as of the generation the notice applied.
          const want =
            writes
              .filter((w) => w.gen <= g && w.ids.has(id))
              .pop()
              ?.ids.get(id) ?? -1;
          const got = version(held(b.live.advisories, id));
          if (got < want) wrong.push(`${JSON.stringify(id)}: told at generation ${g} with v${got} in force, v${want} stored by then`);
        }
      });
      let writing = true;
      const writerRun = (async () => {
        for (let k = 0; k < 60; k++) {
          const batch = pool.filter(() => r() < 0.03).map((id) => randomRecord(r, id, v++));
          if (k % 10 === 0) batch.push(randomRecord(r, `NEW-${k}`, v++));
          const written = await writer.putAdvisories(batch.map(row), k % 2 ? 'osv-x' : undefined);
          if (written) writes.push({ gen: await writer.advisoryGeneration(), ids: new Map(batch.map((x) => [x.id, version(x)])) });
          await new Promise((res) => setTimeout(res, r() * 6));
        }
        writing = false;
      })();
      const noticer = (async () => {
        while (writing) {
          await (r() < 0.3 ? b.sighup() : b.feeds.notice());
          await new Promise((res) => setTimeout(res, r() * 8));
        }
      })();
      // SIGHUPs at their own pace, beside the notices.
      let hupCount = 0;
      const hups = (async () => {
        while (writing) {
          hupCount++;
          await b.sighup();
          await new Promise((res) => setTimeout(res, 20 + r() * 30));
        }
      })();
      await Promise.all([writerRun, noticer, hups]);
      await b.feeds.notice();
      console.log(`seed ${seed}: ${writes.length} writes, ${toldCount} ids told, ${hupCount} SIGHUPs`);
      expect(wrong).toEqual([]);
      expect(toldCount).toBeGreaterThan(0);
      const ids = [...pool, ...Array.from({ length: 6 }, (_, k) => `NEW-${k * 10}`)];
      expect(dump(b.live.advisories, ids)).toBe(dump(await readAdvisories(reader), ids));
      // A stop while a SIGHUP re-read and a notice run: prompt, and nothing left running.
      await writer.putAdvisories([randomRecord(r, pool[3], v++)].map(row));
      const running = Promise.allSettled([b.sighup(), b.feeds.notice(), b.sighup()]);
      const t0 = performance.now();
      await b.feeds.stop();
      const took = performance.now() - t0;
      await running;
      expect(took).toBeLessThan(500);
    }, 60_000);
});
