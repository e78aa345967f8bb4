import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importAdvisories } from '../../src/cli/advisories.js';
import { readAdvisories } from '../../src/reload.js';
import { advisoryPages } from '../../src/storage/advisory-pages.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { answers, atOnce, noticing, osvDir, rec, rng, row } from '../helpers/advisory-rig.js';

/**
 * Attacks on the paged advisory reader (2721d80) and the batched import (cb30d00) on a real
 * PostgreSQL 15, in a database whose collation is not C (ICU en-US, as a production database's
 * default locale orders case and punctuation), with writers on other connections at the same time.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-advpages-pg-'));
let pgsrv: TestPostgres;
let url = '';
const opened: PgMetaStore[] = [];
let seq = 0;
const open = async () => {
  const s = await PgMetaStore.open(url, { schema: `bap_${process.pid}_${seq++}` });
  opened.push(s);
  return s;
};
const again = async (s: PgMetaStore) => {
  const t = await PgMetaStore.open(url, { schema: (s as unknown as { schema: string }).schema ?? '' });
  opened.push(t);
  return t;
};
beforeAll(async () => {
  pgsrv = await startPostgres();
  const c = new pg.Client(pgsrv.url);
  await c.connect();
  await c.query(`CREATE DATABASE icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'`);
  await c.end();
  url = pgsrv.url.replace(/\/postgres$/, '/icu');
}, 60_000);
afterAll(async () => {
  for (const s of opened) await s.close().catch(() => {});
  await pgsrv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('PostgreSQL (ICU en-US collation): the paged reader', () => {
  it('reads every id once whatever the collation makes of case, punctuation and unicode, at every page size', async () => {
    const s = await open();
    const ids = new Set<string>();
    const r = rng(5);
    const parts = [
      'A',
      'a',
      'Z',
      'z',
      '-',
      '_',
      '.',
      ':',
      '+',
      '0',
      '9',
      'é',
      'É',
      'e\u0301',
      'ß',
      'ss',
      'ǅ',
      '\u00a0',
      '😀',
      '\uffff',
      ' ',
      'ı',
      'İ',
      'x'.repeat(300),
    ];
    while (ids.size < 600) {
      let id = 'K';
      for (let k = 1 + Math.floor(r() * 4); k > 0; k--) id += parts[Math.floor(r() * parts.length)];
      ids.add(id);
    }
    await s.putAdvisories([...ids].map((id, i) => row(rec(id, i % 5))));
    // 'é' and 'e\u0301' (canonically equal), 'ß' and 'ss': distinct rows, distinct reads.
    for (const size of [250, 1, 3, 7, 249, 251]) {
      const got: string[] = [];
      for await (const page of advisoryPages<{ id: string }>(s, size)) got.push(...page.map((p) => p.id));
      expect(got.length, `size ${size}`).toBe(ids.size);
      expect(new Set(got), `size ${size}`).toEqual(ids);
    }
    expect(answers(await readAdvisories(s as never), 5)).toBe(answers(await atOnce(s), 5));
  });

  it("reads the record whose id is '' (stored by a hand import; the first page starts after '')", async () => {
    const s = await open();
    const root = osvDir(dir, 'pg-empty-id', [
      ['a.json', rec('', 1)],
      ['b.json', rec('GHSA-1', 2)],
    ]);
    expect((await importAdvisories(s, root)).changed).toBe(2);
    const read = await readAdvisories(s as never);
    expect(read.size + read.withdrawn).toBe((await s.listAdvisories()).length);
    expect(answers(read, 3)).toBe(answers(await atOnce(s), 3));
  });

  it('is exact once a writer on other connections stops, with reloads running all through its writes', async () => {
    const s = await open();
    const w = await again(s);
    const r = rng(3);
    const ids = Array.from(
      { length: 1_000 },
      (_, i) => `${['GHSA', 'ghsa', 'PYSEC', 'Pysec', 'MAL', 'mal-'][i % 6]}-${String((i * 7919) % 100_003).padStart(6, '0')}`,
    );
    await w.putAdvisories(ids.map((id) => row(rec(id, 0))));
    const passes: string[][] = [];
    let pass: string[] = [];
    const page = s.advisoryPage.bind(s);
    Object.assign(s, {
      advisoryPage: async (after: string | null, limit: number) => {
        const rows = await page(after, limit);
        if (after === null) passes.push((pass = []));
        pass.push(...rows.map((x) => x.id));
        return rows;
      },
    });
    const { feeds, inForce } = noticing(s);
    let stop = false;
    let writes = 0;
    // The writer: batches of updates (withdrawals among them), inserts before and after any cursor, no pause.
    const writer = (async () => {
      for (let v = 1; !stop; v++) {
        const batch = Array.from({ length: 12 }, () => rec(ids[Math.floor(r() * ids.length)], v % 10, r() < 0.2));
        batch.push(rec(`0-new-${v}`, v % 10), rec(`zz-new-${v}`, v % 10), rec(`GHSA-${String(Math.floor(r() * 100_003)).padStart(6, '0')}x`, v % 10));
        await w.putAdvisories([...new Map(batch.map((b) => [b.id, b])).values()].map(row));
        writes++;
      }
    })();
    let stale = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 2_500) {
      await feeds.notice();
      if (answers(inForce(), 10) !== answers(await atOnce(s), 10)) stale++;
    }
    stop = true;
    await writer;
    await feeds.notice();
    expect(answers(inForce(), 10)).toBe(answers(await atOnce(s), 10));
    // The attack ran: the writer wrote all through, and reads in force during it were behind the store.
    expect(writes).toBeGreaterThan(20);
    expect(stale).toBeGreaterThan(0);
    expect(passes.length).toBeGreaterThan(3);
    for (const p of passes) expect(new Set(p).size).toBe(p.length);
  });
});

describe('PostgreSQL: `airlock advisories import` in batches', () => {
  it('two imports at once (two pools, as two processes) count each change once; a re-import changes nothing', async () => {
    const a = await open();
    const b = await again(a);
    const N = 1_300;
    const root = osvDir(
      dir,
      'pg-side',
      Array.from({ length: N }, (_, i) => [`P-${String(i).padStart(5, '0')}.json`, rec(`PYSEC-2026-${i}`, 1, i % 13 === 0)]),
    );
    const gen0 = await a.advisoryGeneration();
    const [r1, r2] = await Promise.all([importAdvisories(a, root), importAdvisories(b, root)]);
    expect(r1.changed + r2.changed).toBe(N);
    expect([r1.withdrawn, r2.withdrawn]).toEqual([100, 100]);
    // Each batch that changed something is a generation of its own, one after another.
    expect(await a.advisoryGeneration()).toBeGreaterThanOrEqual(gen0 + Math.ceil(N / 250));
    const [r3, r4] = await Promise.all([importAdvisories(a, root), importAdvisories(b, root)]);
    expect([r3.changed, r4.changed]).toEqual([0, 0]);
    expect(answers(await readAdvisories(a as never), 3)).toBe(answers(await atOnce(b), 3));
  });

  it('a record PostgreSQL cannot store (a NUL in its id, an id of 3,000 random characters, a "modified" with a NUL) is skipped, not an error after the batches before it were committed', async () => {
    const outcomes: string[] = [];
    for (const bad of [
      { ...rec('GHSA-nul\u0000x', 1) },
      { ...rec(`GHSA-${randomBytes(1500).toString('hex')}`, 1) },
      { ...rec('GHSA-nul-modified', 1), modified: '2026-01-01T00:00:00Z\u0000' },
    ]) {
      const s = await open();
      const files: [string, unknown][] = Array.from({ length: 300 }, (_, i) => [`P-${String(i).padStart(4, '0')}.json`, rec(`PYSEC-2026-${i}`, 1)]);
      files.push(['ZZ.json', bad]);
      const root = osvDir(dir, `pg-bad-${seq++}`, files);
      try {
        const ok = await importAdvisories(s, root);
        outcomes.push(`read ${ok.read}, changed ${ok.changed}, skipped ${ok.skipped.length}; stored ${(await s.listAdvisories()).length}`);
      } catch (e) {
        outcomes.push(`${(e as Error).message.slice(0, 60)}; stored ${(await s.listAdvisories()).length}`);
      }
    }
    // Before: "invalid byte sequence for encoding "UTF8": 0x00" / "index row size ... exceeds btree
    // version 4 maximum 2704", each with the first 250 records committed (and applied by the servers).
    expect(outcomes).toEqual(Array.from({ length: 3 }, () => 'read 300, changed 300, skipped 1; stored 300'));
  });
});
