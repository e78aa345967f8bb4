import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied } from '../../src/advisories/applied.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet } from '../helpers/http.js';
import { longestStall } from '../helpers/stall.js';

/**
 * Attacks on a notice that applies only the changed advisories (f1e3678: reload.ts
 * applyAdvisoryChanges, the stores' advisoryRecords) from the side of a real server on the embedded
 * SQLite store: how long its event loop stops while a notice applies them (measured in the server's
 * own process, a 1 ms interval's longest gap), what it reads, and what its pulls are then answered.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-advchanges-srv-'));
const index = new FakeIndex();
const wheel = (v: string) => `lib-${v}-py3-none-any.whl`;
const servers: TestAirlock[] = [];
beforeAll(async () => {
  await index.start();
  for (const v of ['1.0', '2.0']) index.add('lib', { filename: wheel(v), bytes: Buffer.from(`lib ${v}`) });
});
/** Each test's servers stopped after it (their advisories held would weigh on the next test's collections). */
afterEach(async () => {
  clearAdvisoriesAppliedHooks();
  for (const s of servers.splice(0)) {
    await s.stop().catch(() => {});
    rmSync(s.dir, { recursive: true, force: true });
  }
});
afterAll(async () => {
  await index.stop();
  rmSync(dir, { recursive: true, force: true });
});

const yaml = () => `pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
advisories:
  poll: 0
policy:
  advisories: { refuse: high }
  pypi:
    allow:
      - { name: lib }
`;

/** The longest stop of this process's event loop (the server's: it runs in here) while `work` runs (test/helpers/stall.ts), and how long it took. */
async function longestStop<T>(work: () => Promise<T>): Promise<{ gap: number; value: T; ms: number }> {
  const t0 = performance.now();
  let ms = 0;
  const { value, stallMs } = await longestStall(async () => {
    const v = await work();
    ms = performance.now() - t0;
    return v;
  });
  return { gap: stallMs, value, ms };
}

const T = (v: number) => `2026-01-01T00:${String(Math.floor(v / 60) % 60).padStart(2, '0')}:${String(v % 60).padStart(2, '0')}Z`;
/** A record of a package with many releases, as osv.dev lists them (every affected version named): ~`versions` × 12 characters. */
function listing(id: string, v: number, versions: number): { id: string; modified: string; record: string } {
  const rec = {
    id,
    modified: T(v),
    summary: `${id} v${v}`,
    affected: [
      { package: { ecosystem: 'PyPI', name: `big-${id}` }, versions: Array.from({ length: versions + v }, (_, i) => `${Math.floor(i / 10)}.${i % 10}.${v}`) },
    ],
  };
  return { id, modified: rec.modified, record: JSON.stringify(rec) };
}
const small = (id: string, v: number) => {
  const rec = { id, modified: T(v), details: 'd'.repeat(3500), affected: [{ package: { ecosystem: 'PyPI', name: `p-${id}` }, versions: [`${v}.0`] }] };
  return { id, modified: rec.modified, record: JSON.stringify(rec) };
};
const mal = (v: number, withdrawn: boolean) => {
  const rec = {
    id: 'MAL-2026-lib',
    modified: T(v),
    ...(withdrawn ? { withdrawn: T(v) } : {}),
    affected: [{ package: { ecosystem: 'PyPI', name: 'lib' }, versions: ['1.0'] }],
  };
  return { id: rec.id, modified: rec.modified, record: JSON.stringify(rec) };
};

/** A data directory whose store holds `rows`, all told to the hooks (a server started on it applies nothing at its first look). */
async function dataDir(name: string, rows: { id: string; modified: string; record: string }[]): Promise<string> {
  const data = join(dir, name);
  mkdirSync(data, { recursive: true });
  const meta = new SqliteMetaStore(join(data, 'airlock.db'));
  for (let i = 0; i < rows.length; i += 250) await meta.putAdvisories(rows.slice(i, i + 250));
  await meta.markAdvisoriesTold(await meta.advisoryGeneration());
  await meta.close();
  return data;
}

/** Write `rows` into the server's store as another writer (an `airlock advisories import`) would: its own connection. */
async function writeBeside(data: string, rows: { id: string; modified: string; record: string }[]): Promise<void> {
  const meta = new SqliteMetaStore(join(data, 'airlock.db'));
  for (let i = 0; i < rows.length; i += 20) await meta.putAdvisories(rows.slice(i, i + 20));
  await meta.close();
}

async function start(data: string): Promise<TestAirlock> {
  const a = await startAirlock(yaml(), { dataDir: data });
  servers.push(a);
  await a.airlock.feeds.tick();
  return a;
}
/** A data directory of 20,000 records of ~3.6 KB and a withdrawn malicious release of lib (made once, shared). */
let manyDir: Promise<string> | undefined;
const many = () =>
  (manyDir ??= dataDir('many', [...Array.from({ length: 20_000 }, (_, i) => small(`PYSEC-2026-${String(i).padStart(5, '0')}`, 1)), mal(1, true)]));
const pull = async (a: TestAirlock, v: string) => (await rawGet(`${a.url}/pypi/files/lib/${wheel(v)}`, { connection: 'close' })).status;

describe('break: a notice of changed advisories on a real server (SQLite)', () => {
  // Broke on main (f1e3678): the changed records are read 100 ids at a time (CHANGED_READ), and on
  // SQLite advisoryRecords read them all in one synchronous run, with no bound on their size (the
  // whole re-read returns pages of at most 512 KB: advisory-pages.ts PAGE_CHARS). A sync that changes
  // 100 records of a package with many releases (osv.dev adds a release to every advisory of a
  // package it still affects: ~20,000 versions listed, ~200 KB each) stopped the server's event loop
  // for 110-170 ms at once; with a turn every 512 KB read, 19-30 ms. (The whole re-read of the same
  // store, the reference logged: 120-180 ms on main, each page reading all of its 250 rows' records
  // to cut it at 512 KB; 56-72 ms with octet_length, the rest its pages' parse and garbage collection.)
  it('100 changed records of ~200 KB among 1,000: the notice stops the event loop no longer than ~50 ms, and the pulls are answered as the store says', async () => {
    const BIG = 100;
    const VERSIONS = 20_000;
    const rows = [
      ...Array.from({ length: 900 }, (_, i) => small(`PYSEC-2026-${i}`, 1)),
      ...Array.from({ length: BIG }, (_, i) => listing(`GHSA-big-${i}`, 1, VERSIONS)),
      mal(1, true),
    ];
    const data = await dataDir('big', rows);
    const a = await start(data);
    expect(await pull(a, '1.0')).toBe(200);
    // The reference: a SIGHUP with nothing changed re-reads every record, in pages.
    const whole = await longestStop(() => a.airlock.reloadAdvisories());
    expect(whole.value).toBe(rows.length - 1);

    await writeBeside(data, [...Array.from({ length: BIG }, (_, i) => listing(`GHSA-big-${i}`, 2, VERSIONS)), mal(2, false)]);
    const notice = await longestStop(() => a.airlock.feeds.notice());
    console.log(
      `100 changed records of ${(rows[900].record.length / 1024).toFixed(0)} KB among ${rows.length}: the notice took ${notice.ms.toFixed(0)} ms, ` +
        `its longest stop ${notice.gap.toFixed(0)} ms; the whole re-read ${whole.ms.toFixed(0)} ms, its longest stop ${whole.gap.toFixed(0)} ms`,
    );
    expect(notice.value).toHaveLength(BIG + 1);
    // Applied: the malicious release of lib (un-withdrawn) is refused.
    expect(await pull(a, '1.0')).toBe(403);
    expect(await pull(a, '2.0')).toBe(200);
    expect(notice.gap).toBeLessThan(60);
  }, 60_000);

  // Broke on main (f1e3678): the notice looked at the stop only between reads of 100 ids, and parsing
  // and preparing 100 records listing ~20,000 releases takes ~1 s: the server's shutdown waited
  // 1.1 s for it (the whole re-read it replaced stopped at its next page of 512 KB). Checked at each
  // record: 50-80 ms, and the change is told by the next start.
  it('a stop while a notice applies 100 changed records of ~200 KB: prompt, and the change is told once, then or at the next start', async () => {
    const rows = [
      ...Array.from({ length: 900 }, (_, i) => small(`PYSEC-2026-${i}`, 1)),
      ...Array.from({ length: 100 }, (_, i) => listing(`GHSA-big-${i}`, 1, 20_000)),
    ];
    const data = await dataDir('stop', rows);
    const a = await start(data);
    await writeBeside(
      data,
      Array.from({ length: 100 }, (_, i) => listing(`GHSA-big-${i}`, 2, 20_000)),
    );
    const told: string[] = [];
    onAdvisoriesApplied(async (c) => void told.push(...c.changedIds));
    const noticed = a.airlock.feeds.notice();
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await a.stop();
    const took = performance.now() - t0;
    await noticed;
    const b = await start(data);
    await b.airlock.feeds.notice();
    console.log(`stopped in ${took.toFixed(0)} ms while a notice of 100 changed records of ~200 KB ran; told ${told.length}`);
    expect(told.length).toBe(100);
    expect(took).toBeLessThan(400);
  }, 60_000);

  // Held: a notice of 3 changed records among 20,000 (~4 KB each) reads those 3 and no page of the
  // rest, and its longest stop of the event loop is well under the 50 ms the change promises.
  it('3 changed among 20,000: only those read, the event loop stopped briefly, a withdrawal and an un-withdrawal applied', async () => {
    const data = await many();
    const a = await start(data);
    const m = a.airlock.meta as unknown as Record<string, (...x: unknown[]) => Promise<unknown>>;
    let pages = 0;
    let read = 0;
    for (const [name, count] of [
      ['advisoryPage', () => pages++],
      ['advisoryRecords', (ids: string[]) => (read += ids.length)],
    ] as const) {
      const real = m[name].bind(m);
      m[name] = (...x: unknown[]) => (count(x[0] as string[]), real(...x));
    }
    const gaps: number[] = [];
    const cpu: number[] = [];
    for (let round = 2; round <= 5; round++) {
      await writeBeside(data, [small('PYSEC-2026-00007', round), small(`NEW-${round}`, round), mal(round, round % 2 === 1)]);
      const c0 = process.cpuUsage();
      const notice = await longestStop(() => a.airlock.feeds.notice());
      const c = process.cpuUsage(c0);
      gaps.push(notice.gap);
      cpu.push((c.user + c.system) / 1000);
      expect(notice.value.sort()).toEqual(round === 2 ? ['MAL-2026-lib', 'NEW-2', 'PYSEC-2026-00007'] : ['MAL-2026-lib', `NEW-${round}`, 'PYSEC-2026-00007']);
      expect(await pull(a, '1.0'), `round ${round}`).toBe(round % 2 === 1 ? 200 : 403);
    }
    console.log(
      `3 changed among 20,000: longest stops ${gaps.map((g) => g.toFixed(0)).join(', ')} ms; CPU ${cpu.map((g) => g.toFixed(0)).join(', ')} ms; pages read ${pages}, records read ${read}`,
    );
    expect(pages).toBe(0);
    expect(read).toBe(12);
    // The first notice after a start: see the next test.
    expect(Math.max(...gaps.slice(1))).toBeLessThan(50);
  }, 60_000);

  // Broke, before f1e3678 as after (fixed: the paged reader's short pages run PRAGMA shrink_memory): the first notice after a start, once another connection
  // (an `airlock advisories import`, here or in another process) has committed, stops the event loop
  // 60-130 ms in its first read of the store (advisoryGeneration, a one-row SELECT). The start's whole
  // read filled the connection's page cache (better-sqlite3's default cache_size, 16 MB), and SQLite
  // discards it when it sees another connection's commit, at ~4 ms a MB on this machine (cache 2 MB:
  // 10 ms; 64 MB: 240 ms; PRAGMA shrink_memory frees the same 16 MB in ~1 ms). Later notices find the
  // cache mostly empty: 13-24 ms. Any first read after an import does the same (a pull's lookups);
  // options: a smaller cache_size for the server's connection, or shrink_memory after a whole read.
  it('the first notice after a start, after an import by another connection: the event loop stopped no longer than ~50 ms', async () => {
    const data = await many();
    const a = await start(data);
    await writeBeside(data, [small('PYSEC-2026-00008', 9), small('NEW-9', 9)]);
    const m = a.airlock.meta as unknown as Record<string, (...x: unknown[]) => Promise<unknown>>;
    const real = m.advisoryGeneration.bind(m);
    let first = -1;
    m.advisoryGeneration = (...x: unknown[]) => {
      const t0 = performance.now();
      const out = real(...x);
      if (first < 0) first = performance.now() - t0;
      return out;
    };
    const notice = await longestStop(() => a.airlock.feeds.notice());
    console.log(
      `the first notice after a start: longest stop ${notice.gap.toFixed(0)} ms, its first read of the store (advisoryGeneration) ${first.toFixed(0)} ms`,
    );
    expect(notice.value.sort()).toEqual(['NEW-9', 'PYSEC-2026-00008']);
    expect(notice.gap).toBeLessThan(50);
  }, 60_000);
});
