import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { importAdvisories } from '../../src/cli/advisories.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { feedsOver, noticing } from '../helpers/advisory-rig.js';
import { caseId, copy, FORMS, ODD_MODIFIED, oddCount, pad, runOdd, serveZipOn, sourceOn, storedOf, tree, zipOf } from '../helpers/import-older.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';

/**
 * Attacks on `airlock advisories import` leaving out a copy older than the stored one (053bb51), on
 * the embedded SQLite store: odd `modified` values in every input form, duplicates of an id, the
 * counts, what a server applies after, and an import racing a feed sync of the same ids.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-import-older-'));
const feed = new OsvFeedServer();
let dbs = 0;
const stores: SqliteMetaStore[] = [];
function store(file = join(dir, `${dbs++}.db`)): SqliteMetaStore {
  const m = new SqliteMetaStore(file);
  stores.push(m);
  return m;
}
const count = oddCount;
const src = (name: string): FeedSource => sourceOn(feed, name);
const serveZip = (recs: Record<string, unknown>[]) => serveZipOn(feed, recs);

beforeAll(async () => {
  await feed.start();
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});
afterAll(async () => {
  await feed.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('break: odd `modified` values against the stored copy (SQLite)', () => {
  for (const form of FORMS)
    it(`${form}: each copy is left out exactly when older, written otherwise, and the counts say so`, async () => {
      const meta = store();
      const { first, res, after } = await runOdd(meta, dir, `odd-${form.replace(/\W/g, '')}`, form);
      expect(first).toMatchObject({ read: ODD_MODIFIED.length, changed: ODD_MODIFIED.length, older: 0 });
      for (const a of after) expect(a.summary, a.name).toBe(a.expect === 'written' ? 'given' : 'held');
      expect(res.older).toBe(count('left'));
      expect(res.changed).toBe(count('written'));
      expect(res.read).toBe(ODD_MODIFIED.length - count('skipped'));
      expect(res.skipped.filter((s) => /"modified" is not a string/.test(s))).toHaveLength(count('skipped'));
    });

  it('a re-import counts no identical record as older or changed; the server applies exactly the written ones, then nothing', async () => {
    const meta = store();
    const { feeds, inForce } = noticing(meta);
    const held = ODD_MODIFIED.map((c, i): [string, unknown] => [`${caseId(i)}.json`, copy(caseId(i), c.held, 'held')]);
    await importAdvisories(meta, tree(dir, 'reimport-held', held), { replace: true });
    expect(await feeds.notice()).toHaveLength(ODD_MODIFIED.length);
    const gen = await meta.advisoryGeneration();
    const givenDir = tree(
      dir,
      'reimport-given',
      ODD_MODIFIED.map((c, i) => [`${caseId(i)}.json`, copy(caseId(i), c.given, 'given')]),
    );
    await importAdvisories(meta, givenDir);
    const written = ODD_MODIFIED.flatMap((c, i) => (c.expect === 'written' ? [caseId(i)] : []));
    expect((await feeds.notice()).sort()).toEqual(written);
    expect(inForce().size).toBe(ODD_MODIFIED.length);
    // Again: the written copies are now identical (not counted at all), the older ones still older.
    const again = await importAdvisories(meta, givenDir);
    expect(again).toMatchObject({ changed: 0, older: count('left') });
    expect(await meta.advisoryGeneration()).toBe(gen + 1);
    expect(await feeds.notice()).toEqual([]);
    // An import of exactly what is stored: nothing changed, nothing left out.
    const same = await importAdvisories(
      meta,
      tree(
        dir,
        'reimport-same',
        held.filter((_, i) => ODD_MODIFIED[i].expect !== 'written'),
      ),
    );
    expect(same).toMatchObject({ read: count('left') + count('skipped'), changed: 0, older: 0 });
  });

  // RFC 3339 allows a leap second (23:59:60) and any number of fraction digits; normTime (src/advisories/osv.ts) took
  // neither, so olderThan judged such a time "not a time": a newer copy was left out and counted as older than the
  // stored copy (the output line said so), and a stored copy at such a time was replaced by an older one.
  it('a leap second and a fraction of ten digits are times: a newer copy is written, an older one left out', async () => {
    const meta = store();
    const cases: [string, string, 'given' | 'held'][] = [
      ['2016-12-31T23:59:59Z', '2016-12-31T23:59:60Z', 'given'],
      ['2016-12-31T23:59:60Z', '2016-12-31T23:59:59Z', 'held'],
      ['2026-06-01T00:00:00Z', '2026-06-01T00:00:00.0000000001Z', 'given'],
      ['2026-06-01T00:00:00.0000000001Z', '2026-05-01T00:00:00Z', 'held'],
    ];
    await importAdvisories(
      meta,
      tree(
        dir,
        'leap-held',
        cases.map(([h], i) => [`L${i}.json`, copy(`GHSA-leap-${i}`, h, 'held')]),
      ),
    );
    const r = await importAdvisories(
      meta,
      tree(
        dir,
        'leap-given',
        cases.map(([, g], i) => [`L${i}.json`, copy(`GHSA-leap-${i}`, g, 'given')]),
      ),
    );
    for (const [i, [, , want]] of cases.entries()) expect((await storedOf(meta, `GHSA-leap-${i}`))?.summary, `case ${i}`).toBe(want);
    expect(r).toMatchObject({ changed: 2, older: 2 });
  });

  // The import stores any string as `modified` (the feeds refuse what is not RFC 3339). A hand-written record dated
  // "2026-06-01" (no time), "...T00:00:00" (no zone) or "...+0000" (ISO 8601 basic offset) was rolled back silently by
  // an older checkout (`0 left out`, the newer copy gone): olderThan could not read its time and replaced it. It now
  // reads those forms (a date: its midnight; no zone: UTC). A newer copy still replaces them, and a `modified` that is
  // no time at all is still replaced by any copy (skipping such records would leave a MAL- record out of force).
  it('a stored copy whose `modified` is a date, a time without a zone or a +0000 offset is not replaced by an older one', async () => {
    const meta = store();
    const held = ['2026-06-01', '2026-06-01T00:00:00', '2026-06-01T00:00:00+0000'];
    await importAdvisories(
      meta,
      tree(
        dir,
        'iso-held',
        held.map((h, i) => [`I${i}.json`, copy(`GHSA-iso-${i}`, h, 'held')]),
      ),
    );
    const r = await importAdvisories(
      meta,
      tree(
        dir,
        'iso-given',
        held.map((_, i) => [`I${i}.json`, copy(`GHSA-iso-${i}`, '2026-01-01T00:00:00Z', 'old checkout')]),
      ),
    );
    expect(r).toMatchObject({ changed: 0, older: 3 });
    for (const i of held.keys()) expect((await storedOf(meta, `GHSA-iso-${i}`))?.summary).toBe('held');
    // The same day an hour later, in each form's own terms, is newer: written.
    const later = ['2026-06-01T01:00:00Z', '2026-06-01 01:00', '2026-06-01T01:00:00+0000'];
    const newer = await importAdvisories(
      meta,
      tree(
        dir,
        'iso-newer',
        later.map((t, i) => [`I${i}.json`, copy(`GHSA-iso-${i}`, t, 'newer')]),
      ),
    );
    expect(newer).toMatchObject({ changed: 3, older: 0 });
    // A `modified` that is no time at all is replaced by any copy.
    await importAdvisories(meta, tree(dir, 'junk-held', [['J.json', copy('GHSA-junk', 'last tuesday', 'held')]]));
    expect(await importAdvisories(meta, tree(dir, 'junk-given', [['J.json', copy('GHSA-junk', '2020-01-01T00:00:00Z', 'any')]]))).toMatchObject({
      changed: 1,
      older: 0,
    });
  });
});

describe('break: duplicates of an id within one import (SQLite)', () => {
  const T = (d: number) => `2026-0${d}-01T00:00:00Z`;
  // X: the newest copy in the middle, newer than stored. Y: the same copies, the stored one newer than all.
  // Z: two copies at the stored time (the later read wins). W: one copy identical to the stored, one older.
  // V: an older copy and one whose modified is not a string (skipped).
  const stored = [
    copy('GHSA-X', T(3), 'held'),
    copy('GHSA-Y', T(5), 'held'),
    copy('GHSA-Z', T(2), 'held'),
    copy('GHSA-W', T(3), 'held'),
    copy('GHSA-V', T(2), 'held'),
  ];
  const files: [string, unknown][] = [
    ['a/X.json', copy('GHSA-X', T(1), 'x1')],
    ['b/X.json', copy('GHSA-X', T(4), 'x4')],
    ['c/X.json', copy('GHSA-X', T(2), 'x2')],
    ['a/Y.json', copy('GHSA-Y', T(1), 'y1')],
    ['b/Y.json', copy('GHSA-Y', T(4), 'y4')],
    ['c/Y.json', copy('GHSA-Y', T(2), 'y2')],
    ['a/Z.json', copy('GHSA-Z', T(2), 'z-a')],
    ['b/Z.json', copy('GHSA-Z', T(2), 'z-b')],
    ['a/W.json', copy('GHSA-W', T(3), 'held')],
    ['b/W.json', copy('GHSA-W', T(1), 'w1')],
    ['a/V.json', copy('GHSA-V', T(1), 'v1')],
    ['b/V.json', copy('GHSA-V', 20270101, 'v-number')],
  ];
  for (const form of ['directory', 'zip'] as const)
    it(`${form}: one copy per id is judged against the stored one, and a left-out id is counted once, not per copy`, async () => {
      const meta = store();
      await importAdvisories(
        meta,
        tree(
          dir,
          `dup-held-${form}`,
          stored.map((r) => [`${r.id as string}.json`, r]),
        ),
      );
      const path = form === 'directory' ? tree(dir, `dup-${form}`, files) : zipOf(dir, `dup-${form}.zip`, files);
      const r = await importAdvisories(meta, path);
      expect(r).toMatchObject({ read: 5, changed: 2, older: 2 });
      expect(r.skipped).toHaveLength(7);
      const got = Object.fromEntries(await Promise.all(['X', 'Y', 'Z', 'W', 'V'].map(async (k) => [k, (await storedOf(meta, `GHSA-${k}`))?.summary])));
      expect(got).toEqual({ X: 'x4', Y: 'held', Z: 'z-b', W: 'held', V: 'held' });
      // --replace writes the one copy kept per id, over the newer stored one too: Y (y4) and V (v1); W is identical.
      expect(await importAdvisories(meta, path, { replace: true })).toMatchObject({ read: 5, changed: 2, older: 0 });
      expect((await storedOf(meta, 'GHSA-Y'))?.summary).toBe('y4');
      expect((await storedOf(meta, 'GHSA-V'))?.summary).toBe('v1');
    });

  // The output line's "W withdrawn (kept, never matched)" counted every record read, including one left out as older: an
  // old checkout holding a withdrawn copy of a record a feed has since revised (live again) reported "1 withdrawn
  // (kept, never matched), 1 left out" while the stored record is live and matches.
  it('a withdrawn copy left out as older is not counted as withdrawn (kept)', async () => {
    const meta = store();
    await importAdvisories(meta, tree(dir, 'wd-held', [['R.json', copy('GHSA-R', '2026-06-01T00:00:00Z', 'revised')]]));
    const r = await importAdvisories(
      meta,
      tree(dir, 'wd-old', [['R.json', copy('GHSA-R', '2026-02-01T00:00:00Z', 'old', { withdrawn: '2026-02-01T00:00:00Z' })]]),
    );
    expect(r.older).toBe(1);
    expect((await storedOf(meta, 'GHSA-R'))?.withdrawn).toBeUndefined();
    expect(r.withdrawn).toBe(0);
    // Written (--replace), or already stored as read, it is counted.
    const again = tree(dir, 'wd-old-2', [['R.json', copy('GHSA-R', '2026-02-01T00:00:00Z', 'old', { withdrawn: '2026-02-01T00:00:00Z' })]]);
    expect(await importAdvisories(meta, again, { replace: true })).toMatchObject({ changed: 1, withdrawn: 1 });
    expect(await importAdvisories(meta, again)).toMatchObject({ changed: 0, older: 0, withdrawn: 1 });
  });
});

describe('break: an import racing a feed sync of the same ids (SQLite)', () => {
  const N = 600;
  const T1 = '2026-01-01T00:00:00Z';
  const T2 = '2026-02-01T00:00:00Z';
  const T3 = '2026-03-01T00:00:00Z';

  it("a sync between the import's batches: the newest copy of every id stays, and the import counts exactly the ids it reached after", async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv')]);
    // The feed: the first half newer than the import's copies, the rest older.
    serveZip(Array.from({ length: N }, (_, i) => copy(pad(i), i < N / 2 ? T3 : T1, 'feed')));
    const real = meta.putAdvisories.bind(meta);
    let imports = 0;
    Object.assign(meta, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        const n = await real(...a);
        if (a[1] === undefined && ++imports === 1) expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: N });
        return n;
      },
    });
    const root = tree(
      dir,
      'race-batches',
      Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), T2, 'import')]),
    );
    const r = await importAdvisories(meta, root);
    expect(imports).toBe(3);
    // Batch 1 (0-249) written, then the sync: 0-299 at T3 and 300-599 at T1. Batches 2-3: 250-299 left out, 300-599 written.
    expect(r).toMatchObject({ read: N, changed: 250 + 300, older: 50 });
    const all = await meta.advisoriesModified(Array.from({ length: N }, (_, i) => pad(i)));
    for (let i = 0; i < N; i++) expect(all.get(pad(i)), pad(i)).toBe(i < N / 2 ? T3 : T2);
    // The next full sync leaves the import's newer copies alone.
    expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'unchanged', changed: 0 });
  });

  it("an import between a sync's batches: the sync leaves out what the import wrote newer, and the import what the sync did", async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv')]);
    serveZip(Array.from({ length: N }, (_, i) => copy(pad(i), i % 2 ? T3 : T1, 'feed')));
    const root = tree(
      dir,
      'race-sync-batches',
      Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), T2, 'import')]),
    );
    const real = meta.putAdvisories.bind(meta);
    let syncs = 0;
    let r: Awaited<ReturnType<typeof importAdvisories>> | undefined;
    Object.assign(meta, {
      putAdvisories: async (...a: Parameters<typeof real>) => {
        const n = await real(...a);
        if (a[1] !== undefined && ++syncs === 1) r = await importAdvisories(meta, root);
        return n;
      },
    });
    const s = await feeds.syncNow(src('osv'));
    // The sync's first batch (0-249) came first: the import leaves out its odd ids (T3) there and writes the rest.
    expect(r).toMatchObject({ read: N, changed: N - 125, older: 125 });
    // The sync's later batches (250-599): odd ids newer (written), even ids older than the import's (left out).
    expect(s).toMatchObject({ outcome: 'changed', changed: 250 + 175 });
    const all = await meta.advisoriesModified(Array.from({ length: N }, (_, i) => pad(i)));
    for (let i = 0; i < N; i++) expect(all.get(pad(i)), pad(i)).toBe(i % 2 ? T3 : T2);
  });

  it('an import and a sync at once on two connections, over and over: every id ends at its newest copy, and the counts add up', async () => {
    const file = join(dir, `race-${dbs++}.db`);
    const a = store(file);
    const b = store(file);
    const feeds = feedsOver(b, [src('osv')]);
    for (let round = 0; round < 4; round++) {
      // A year per round, so each round's copies are newer than what the rounds before stored.
      const tImport = (i: number) => `${2020 + round}-0${1 + ((i + round) % 3)}-01T00:00:00Z`;
      const tFeed = (i: number) => `${2020 + round}-0${1 + ((i * 2 + round) % 3)}-01T00:00:00Z`;
      serveZip(Array.from({ length: N }, (_, i) => copy(pad(i), tFeed(i), `feed-${round}`)));
      const root = tree(
        dir,
        `race-at-once-${round}-${dbs}`,
        Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), tImport(i), `import-${round}`)]),
      );
      const [r, s] = await Promise.all([importAdvisories(a, root), feeds.syncNow(src('osv'))]);
      expect(s, JSON.stringify(s)).toMatchObject({ outcome: 'changed' });
      const all = new Map((await a.listAdvisories()).map((j) => JSON.parse(j) as Record<string, string>).map((o) => [o.id, o]));
      let newerFeed = 0;
      for (let i = 0; i < N; i++) {
        const got = all.get(pad(i))!;
        const want = tFeed(i) > tImport(i) ? tFeed(i) : tImport(i);
        expect(got.modified, `${round} ${pad(i)}`).toBe(want);
        if (tFeed(i) > tImport(i)) newerFeed++;
        else if (tFeed(i) < tImport(i)) expect(got.summary).toBe(`import-${round}`);
      }
      // Every copy of the import was written or left out (none identical), and only where the feed's was newer.
      expect(newerFeed).toBe(N / 3);
      expect(r.changed + r.older, `round ${round}`).toBe(N);
      expect(r.older).toBeLessThanOrEqual(newerFeed);
      // Imported again: each feed copy newer than the import's is left out, counted once.
      expect((await importAdvisories(a, root)).older).toBe(newerFeed);
    }
  }, 60_000);
});

describe('the decision beside a feed: rollbacks and typos (SQLite)', () => {
  it("a --replace rollback of a feed's record lasts until the feed's next full sync, which writes its newer copy again", async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv')]);
    serveZip([copy('PYSEC-2026-RB', '2026-06-01T00:00:00Z', 'feed, wide ranges')]);
    expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: 1 });
    const old = tree(dir, 'rollback', [['RB.json', copy('PYSEC-2026-RB', '2026-01-01T00:00:00Z', 'rolled back')]]);
    expect(await importAdvisories(meta, old)).toMatchObject({ changed: 0, older: 1 });
    expect(await importAdvisories(meta, old, { replace: true })).toMatchObject({ changed: 1, older: 0 });
    expect((await storedOf(meta, 'PYSEC-2026-RB'))?.summary).toBe('rolled back');
    expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: 1 });
    expect((await storedOf(meta, 'PYSEC-2026-RB'))?.summary).toBe('feed, wide ranges');
  });

  it('a record imported by hand with a mistyped future `modified`: later corrections are left out and said so, the feed leaves its copies out silently, --replace mends it', async () => {
    const meta = store();
    const feeds = feedsOver(meta, [src('osv')]);
    const typo = tree(dir, 'typo', [['TY.json', copy('PYSEC-2026-TY', '2062-06-01T00:00:00Z', 'typo')]]);
    // The import takes a time in the future (a feed refuses one); every copy after it is older.
    expect(await importAdvisories(meta, typo)).toMatchObject({ changed: 1, older: 0 });
    const fixed = tree(dir, 'typo-fixed', [['TY.json', copy('PYSEC-2026-TY', '2026-06-01T00:00:00Z', 'corrected')]]);
    expect(await importAdvisories(meta, fixed)).toMatchObject({ changed: 0, older: 1 });
    serveZip([copy('PYSEC-2026-TY', '2026-11-01T00:00:00Z', 'feed update')]);
    expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'unchanged', changed: 0 });
    expect((await storedOf(meta, 'PYSEC-2026-TY'))?.summary).toBe('typo');
    expect(await importAdvisories(meta, fixed, { replace: true })).toMatchObject({ changed: 1, older: 0 });
    expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: 1 });
    expect((await storedOf(meta, 'PYSEC-2026-TY'))?.summary).toBe('feed update');
  });
});

describe('normTime: the RFC 3339 times it used to refuse', () => {
  it('a leap second is the last instant of its minute; a fraction past nine digits is cut; what is not RFC 3339 stays refused', async () => {
    const { normTime } = await import('../../src/advisories/osv.js');
    expect(normTime('2016-12-31T23:59:60Z')).toBe('2016-12-31T23:59:59.999999999Z');
    expect(normTime('2016-12-31T23:59:60Z')! > normTime('2016-12-31T23:59:59.999999998Z')!).toBe(true);
    expect(normTime('2016-12-31T23:59:60Z')! < normTime('2017-01-01T00:00:00Z')!).toBe(true);
    expect(normTime('2017-01-01T00:59:60+01:00')).toBe('2016-12-31T23:59:59.999999999Z');
    expect(normTime('2026-06-01T00:00:00.1234567891Z')).toBe('2026-06-01T00:00:00.123456789Z');
    for (const bad of ['2026-06-01T00:00:61Z', '2026-06-01T00:00:00.Z', '2026-06-01T24:00:60Z', '2026-06-01T00:00:00', '2026-06-01'])
      expect(normTime(bad), bad).toBeNull();
  });
});
