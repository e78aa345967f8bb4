import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluatePending } from '../../src/alerts/evaluate.js';
import { importAdvisories } from '../../src/cli/advisories.js';
import type { OsvRecord } from '../../src/policy/advisories.js';
import { readAdvisories } from '../../src/reload.js';
import { advisoryPages } from '../../src/storage/advisory-pages.js';
import type { AdvisoryKey } from '../../src/storage/alert-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { answers, atOnce, noticing, osvDir, quiet, rec, rng, row } from '../helpers/advisory-rig.js';

/**
 * Attacks on the paged advisory reader (storage/advisory-pages.ts, 2721d80) and the batched
 * `airlock advisories import` (cli/advisories.ts, cb30d00), on the embedded SQLite store: odd ids,
 * page boundaries, writes between the pages of a reload or an alert evaluation, imports side by side.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-advpages-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const fresh = () => new SqliteMetaStore(join(dir, `s${seq++}.db`));
describe('paged advisory reader: page boundaries', () => {
  it('reads 0, 1, 249, 250, 251, 499, 500 and 501 records each exactly once, in ceil((n+1)/250) page reads', async () => {
    for (const n of [0, 1, 249, 250, 251, 499, 500, 501]) {
      const m = fresh();
      try {
        const recs = Array.from({ length: n }, (_, i) => rec(`PYSEC-2026-${i}`, i % 7, i % 50 === 0));
        if (n) await m.putAdvisories(recs.map(row));
        const calls: number[] = [];
        const page = m.advisoryPage.bind(m);
        Object.assign(m, {
          advisoryPage: async (after: string | null, limit: number) => {
            const rows = await page(after, limit);
            calls.push(rows.length);
            return rows;
          },
        });
        const read = await readAdvisories(m as never);
        expect(calls, `n=${n}`).toEqual([...Array.from({ length: Math.floor(n / 250) }, () => 250), n % 250]);
        expect(answers(read, 7), `n=${n}`).toBe(answers(await atOnce(m), 7));
        expect(read.size + read.withdrawn, `n=${n}`).toBe(n);
      } finally {
        await m.close();
      }
    }
  });

  it('orders ids by SQLite binary order consistently: case, punctuation, dots, underscores, unicode and 2,000-character ids across page boundaries', async () => {
    const m = fresh();
    try {
      const ids = new Set<string>();
      const r = rng(7);
      const parts = ['A', 'a', 'Z', 'z', '-', '_', '.', ':', '+', '0', '9', 'é', 'É', 'ß', 'ǅ', '\u00a0', '\u2028', '😀', '\uffff', 'x'.repeat(2000), ' '];
      while (ids.size < 777) {
        let id = '';
        for (let k = 1 + Math.floor(r() * 4); k > 0; k--) id += parts[Math.floor(r() * parts.length)];
        ids.add(id);
      }
      await m.putAdvisories([...ids].map((id, i) => row(rec(id, i % 5))));
      const seen: string[] = [];
      // Page of 250 (the server's) and odd sizes that put other ids on the boundaries.
      for (const size of [250, 1, 7, 249]) for await (const page of advisoryPages<{ id: string }>(m, size)) seen.push(...page.map((p) => `${size}\0${p.id}`));
      for (const size of [250, 1, 7, 249]) {
        const got = seen.filter((s) => s.startsWith(`${size}\0`)).map((s) => s.slice(s.indexOf('\0') + 1));
        expect(got.length, `size ${size}`).toBe(ids.size);
        expect(new Set(got).size, `size ${size}`).toBe(ids.size);
      }
    } finally {
      await m.close();
    }
  });
});

describe('paged advisory reader: odd ids an `airlock advisories import` by hand stores', () => {
  /**
   * The import takes any string id (the feeds check theirs against an OSV id pattern; the hand
   * import does not). What it stores must be what the server reads: a record stored and never read
   * is a record not in force, silently.
   */
  it("reads the record whose id is '' (the reader's first page starts after '')", async () => {
    const m = fresh();
    try {
      const root = osvDir(dir, 'empty-id', [
        ['a.json', rec('', 1)],
        ['b.json', rec('PYSEC-2026-1', 2)],
      ]);
      const r = await importAdvisories(m, root);
      expect([r.read, r.changed]).toEqual([2, 2]);
      const stored = await m.listAdvisories();
      const read = await readAdvisories(m as never);
      // Read at once (before 2721d80) both were in force; paged, the '' record was never read.
      expect(read.size + read.withdrawn).toBe(stored.length);
      expect(answers(read, 3)).toBe(answers(await atOnce(m), 3));
    } finally {
      await m.close();
    }
  });

  it('loses no record behind an id with a lone surrogate at a page boundary (its id reads back as U+FFFD and the cursor jumps)', async () => {
    const m = fresh();
    try {
      // 249 ids before it, so the lone-surrogate id is the 250th: the last of the first page.
      const files: [string, unknown][] = Array.from({ length: 249 }, (_, i) => [`a/${i}.json`, rec(`A-${String(i).padStart(4, '0')}`, i % 3)]);
      // JSON's \ud800 escape: JSON.parse gives a lone surrogate; SQLite stores it as the bytes ED A0 80,
      // and reads it back as U+FFFD (EF BF BD), past every id from ED A0 80 up to EF BF BD.
      files.push([
        'b/lone.json',
        '{"id":"X\\ud800","modified":"2026-01-01T00:00:01Z","affected":[{"package":{"ecosystem":"PyPI","name":"pkg0"},"versions":["9.0"]}]}',
      ]);
      files.push(['c/cjk.json', { ...rec('X\uf900', 1), affected: [{ package: { ecosystem: 'PyPI', name: 'pkg1' }, versions: ['9.0'] }] }]);
      files.push([
        'd/lone2.json',
        '{"id":"X\\udc00","modified":"2026-01-01T00:00:01Z","affected":[{"package":{"ecosystem":"PyPI","name":"pkg2"},"versions":["9.0"]}]}',
      ]);
      const r = await importAdvisories(m, osvDir(dir, 'lone-surrogate', files));
      const stored = await m.listAdvisories();
      expect(r.read).toBe(stored.length);
      const read = await readAdvisories(m as never);
      expect(read.size + read.withdrawn).toBe(stored.length);
      // The record with a well-formed id past the boundary is in force, whatever became of the malformed ones.
      expect(read.matchPypi('pkg1', '9.0').map((x) => x.id)).toEqual(['X\uf900']);
    } finally {
      await m.close();
    }
  });
});

describe('`airlock advisories import`: counts, re-imports and one bad record (cb30d00: transactions of 250)', () => {
  it('a record whose "modified" is not a string is skipped, not an error after 500 records were committed and applied', async () => {
    const m = fresh();
    try {
      const files: [string, unknown][] = Array.from({ length: 600 }, (_, i) => [`PYSEC-${String(i).padStart(4, '0')}.json`, rec(`PYSEC-2026-${i}`, 1)]);
      files.push(['ZZ.json', { ...rec('PYSEC-2026-bad', 1), modified: true }]);
      const root = osvDir(dir, 'bad-modified', files);
      let r: Awaited<ReturnType<typeof importAdvisories>> | Error;
      try {
        r = await importAdvisories(m, root);
      } catch (e) {
        r = e as Error;
      }
      // Before: "SQLite3 can only bind numbers, strings, bigints, buffers, and null", with 500 of the
      // 600 good records committed in two generations a running server applied: an import it
      // reported failed, half in force.
      expect(r).not.toBeInstanceOf(Error);
      const ok = r as Awaited<ReturnType<typeof importAdvisories>>;
      expect([ok.read, ok.changed, ok.skipped.length]).toEqual([600, 600, 1]);
      expect((await m.listAdvisories()).length).toBe(600);
    } finally {
      await m.close();
    }
  });

  it('one id in two files (a checkout of ossf/malicious-packages beside an osv.dev export): the newer is kept, a re-import changes nothing and never un-withdraws it in between', async () => {
    const m = fresh();
    try {
      const files: [string, unknown][] = [];
      // The newer, withdrawn version first in the walk; 300 other records; the older live version last (another batch).
      files.push(['a-malicious-packages/osv/withdrawn/MAL-2026-1.json', { ...rec('MAL-2026-1', 5, true), modified: '2026-03-01T00:00:00Z' }]);
      for (let i = 0; i < 300; i++) files.push([`b-osv-dev/PYSEC-${String(i).padStart(4, '0')}.json`, rec(`PYSEC-2026-${i}`, 1)]);
      files.push(['c-osv-dev/MAL-2026-1.json', { ...rec('MAL-2026-1', 5), modified: '2026-01-01T00:00:00Z' }]);
      const root = osvDir(dir, 'dup-ids', files);
      const first = await importAdvisories(m, root);
      const states: boolean[] = [];
      const put = m.putAdvisories.bind(m);
      Object.assign(m, {
        putAdvisories: async (rows: Parameters<typeof put>[0]) => {
          const n = await put(rows);
          // What a running server could apply after this batch's commit: is MAL-2026-1 withdrawn?
          states.push((await atOnce(m)).matchPypi(rec('MAL-2026-1', 5).affected![0].package!.name!, '5.0').length === 0);
          return n;
        },
      });
      const again = await importAdvisories(m, root);
      expect(first.changed).toBe(301);
      expect(again.changed).toBe(0);
      expect(states.every((w) => w)).toBe(true);
      const stored = (await m.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord).find((x) => x.id === 'MAL-2026-1');
      expect(stored?.withdrawn).toBeTruthy();
    } finally {
      await m.close();
    }
  });

  it('two imports side by side (two connections, their batches interleaved by the pauses) count every change once and leave the store whole', async () => {
    const path = join(dir, `side-${seq++}.db`);
    const a = new SqliteMetaStore(path);
    const b = new SqliteMetaStore(path);
    try {
      const N = 1_100;
      const same = osvDir(
        dir,
        'side-same',
        Array.from({ length: N }, (_, i) => [`P-${i}.json`, rec(`PYSEC-2026-${i}`, 1)]),
      );
      const [r1, r2] = await Promise.all([importAdvisories(a, same), importAdvisories(b, same)]);
      expect(r1.changed + r2.changed).toBe(N);
      expect([r1.read, r2.read]).toEqual([N, N]);
      // Different data for the same ids: each import changed every record (it found the other's or none).
      const other = osvDir(
        dir,
        'side-other',
        Array.from({ length: N }, (_, i) => [`P-${i}.json`, rec(`PYSEC-2026-${i}`, 2, i % 10 === 0)]),
      );
      const third = osvDir(
        dir,
        'side-third',
        Array.from({ length: N }, (_, i) => [`P-${i}.json`, rec(`PYSEC-2026-${i}`, 3)]),
      );
      // Side by side, the newer copy of each id is kept whichever import's batch came first: third (v=3) changes every
      // record; other (v=2) changes those it reached first and leaves out the rest (older than what third wrote).
      const [r3, r4] = await Promise.all([importAdvisories(a, other), importAdvisories(b, third)]);
      expect(r4.changed).toBe(N);
      expect(r3.changed + r3.older).toBe(N);
      // Withdrawn: of the copies each wrote (a withdrawn copy other left out is not counted).
      expect(r3.withdrawn).toBeLessThanOrEqual(N / 10);
      expect(r4.withdrawn).toBe(0);
      expect((await a.listAdvisories()).length).toBe(N);
      expect(new Set((await a.listAdvisories()).map((r) => (JSON.parse(r) as { modified: string }).modified))).toEqual(new Set([rec('x', 3).modified]));
      // Re-importing the older copies changes nothing, from either connection.
      const again = [await importAdvisories(a, other), await importAdvisories(b, other)];
      expect(again.map((r) => [r.changed, r.older, r.withdrawn])).toEqual([
        [0, N, 0],
        [0, N, 0],
      ]);
      expect(answers(await readAdvisories(a as never), 4)).toBe(answers(await atOnce(b), 4));
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('a reload while another process writes between its pages (advisories/sync.ts notice)', () => {
  /**
   * A model: the store starts with 1,100 records (five pages); each round changes it, then notices
   * while another connection (as another process would) inserts before and after the cursor,
   * updates the record on each page boundary, withdraws and un-withdraws, between the pages of the
   * read. Then the writes stop and the next notice runs: the index in force must answer exactly as
   * one built from the store read at once, and no read may have seen an id twice.
   */
  for (const seed of [1, 2, 3]) {
    it(`is exact after the writes stop (seed ${seed})`, async () => {
      const path = join(dir, `model-${seed}.db`);
      const reader = new SqliteMetaStore(path);
      const writer = new SqliteMetaStore(path);
      const r = rng(seed);
      try {
        const ids: string[] = [];
        const version = new Map<string, number>();
        const put = async (rs: OsvRecord[]) => {
          for (const x of rs) if (!version.has(x.id)) ids.push(x.id);
          for (const x of rs) version.set(x.id, Number(x.affected![0].versions![0].split('.')[0]));
          await writer.putAdvisories(rs.map(row));
        };
        const idOf = (i: number) => `${['GHSA', 'PYSEC', 'MAL', 'ghsa', 'Pysec'][i % 5]}-${String((i * 7919) % 100_003).padStart(6, '0')}`;
        await put(Array.from({ length: 1_100 }, (_, i) => rec(idOf(i), 0)));
        let next = 1_100;
        let writing = false;
        const passes: string[][] = [];
        let pass: string[] = [];
        const page = reader.advisoryPage.bind(reader);
        Object.assign(reader, {
          advisoryPage: async (after: string | null, limit: number) => {
            const rows = await page(after, limit);
            if (after === null) passes.push((pass = []));
            pass.push(...rows.map((x) => x.id));
            if (writing && rows.length) {
              const last = rows[rows.length - 1].id;
              const v = () => 1 + Math.floor(r() * 9);
              const batch: OsvRecord[] = [rec(last, v(), r() < 0.3)];
              // The first id of the next page, and records on either side of the cursor.
              const after2 = (await page(last, 1))[0]?.id;
              if (after2) batch.push(rec(after2, v(), r() < 0.3));
              for (let k = 0; k < 6; k++) {
                const old = ids[Math.floor(r() * ids.length)];
                batch.push(rec(old, v(), r() < 0.2));
              }
              batch.push(rec(`${last.slice(0, -1)}`, v()), rec(`${last}0`, v()), rec(`A-${next++}`, v()), rec(`z-${next++}`, v()));
              await put(batch);
            }
            return rows;
          },
        });
        const { feeds, inForce } = noticing(reader);
        await feeds.notice();
        for (let round = 0; round < 4; round++) {
          await put([rec(ids[Math.floor(r() * ids.length)], 9)]);
          writing = true;
          await feeds.notice();
          writing = false;
          await feeds.notice();
          expect(answers(inForce(), 10), `round ${round}`).toBe(answers(await atOnce(reader), 10));
        }
        for (const p of passes) expect(new Set(p).size).toBe(p.length);
        expect(passes.length).toBeGreaterThanOrEqual(9);
      } finally {
        await reader.close();
        await writer.close();
      }
    });
  }
});

describe('alert evaluation while another process writes between its pages', () => {
  it('evaluates each stored (id, modified) once: none twice, none left once the writes stop', async () => {
    const path = join(dir, 'alerts.db');
    const reader = new SqliteMetaStore(path);
    const writer = new SqliteMetaStore(path);
    const r = rng(11);
    try {
      const ids = Array.from({ length: 800 }, (_, i) => `GHSA-${String((i * 104_729) % 1_000_003).padStart(7, '0')}`);
      let v = 0;
      await writer.putAdvisories(ids.map((id) => row(rec(id, v))));
      const evaluated: string[] = [];
      const enqueue = reader.alerts.enqueueAlerts.bind(reader.alerts);
      reader.alerts.enqueueAlerts = async (alerts, keys: AdvisoryKey[], now) => {
        evaluated.push(...keys.map((k) => `${k.id}@${k.modified}`));
        return enqueue(alerts, keys, now);
      };
      let writing = true;
      const page = reader.advisoryPage.bind(reader);
      Object.assign(reader, {
        advisoryPage: async (after: string | null, limit: number) => {
          const rows = await page(after, limit);
          if (writing && rows.length) {
            v++;
            const last = rows[rows.length - 1].id;
            const some = [last, ...Array.from({ length: 20 }, () => ids[Math.floor(r() * ids.length)]), `NEW-${v}`, `0-NEW-${v}`];
            await writer.putAdvisories([...new Set(some)].map((id) => row(rec(id, v))));
          }
          return rows;
        },
      });
      const d = { meta: reader, policy: () => undefined as never, channels: ['sec'], baseUrl: 'https://airlock.example/', log: quiet };
      await evaluatePending(d);
      await evaluatePending(d);
      writing = false;
      await evaluatePending(d);
      expect(evaluated.length).toBe(new Set(evaluated).size);
      const stored = (await reader.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord).map((x) => `${x.id}@${x.modified}`);
      const done = new Set(evaluated);
      expect(stored.filter((k) => !done.has(k))).toEqual([]);
      expect(new Set((await reader.alerts.listEvaluated()).map((k) => `${k.id}@${k.modified}`))).toEqual(done);
    } finally {
      await reader.close();
      await writer.close();
    }
  });
});
