import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { importAdvisories, type ImportResult } from '../../src/cli/advisories.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { feedsOver, noticing } from '../helpers/advisory-rig.js';
import { airlockCli } from '../helpers/cli.js';
import { caseId, copy, ODD_MODIFIED, oddCount, pad, runOdd, serveZipOn, sourceOn, storedOf, tree, zipOf } from '../helpers/import-older.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * Attacks on `airlock advisories import` leaving out a copy older than the stored one (053bb51), on
 * a real PostgreSQL 15 (the built CLI for the command-line tests: `npx tsc -p tsconfig.build.json`
 * first): odd `modified` values, identical re-imports (PostgreSQL asks olderThan before it compares
 * contents), two replicas importing at once, an import racing another replica's feed sync, a batch
 * failing half-way, and `airlock migrate` of what an import stored.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-import-older-pg-'));
const feed = new OsvFeedServer();
let pgsrv: TestPostgres;
let schemas = 0;
const opened: PgMetaStore[] = [];
const count = oddCount;
const src = (name: string): FeedSource => sourceOn(feed, name);
const serveZip = (recs: Record<string, unknown>[]) => serveZipOn(feed, recs);
const N = 600;
const T1 = '2026-01-01T00:00:00Z';
const T2 = '2026-02-01T00:00:00Z';
const T3 = '2026-03-01T00:00:00Z';

/** Two replicas' stores on a schema of their own. */
async function fleet(): Promise<[PgMetaStore, PgMetaStore, string]> {
  const schema = `break_import_older_${process.pid}_${schemas++}`;
  const a = await PgMetaStore.open(pgsrv.url, { schema });
  const b = await PgMetaStore.open(pgsrv.url, { schema });
  opened.push(a, b);
  return [a, b, schema];
}

beforeAll(async () => {
  [pgsrv] = await Promise.all([startPostgres(), feed.start()]);
}, 60_000);
afterAll(async () => {
  for (const m of opened) await m.close().catch(() => {});
  await feed.stop();
  await pgsrv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('break: odd `modified` values and duplicates on PostgreSQL', () => {
  for (const form of ['directory', 'zip'] as const)
    it(`${form}: each copy is left out exactly when older, written otherwise, and the counts say so`, async () => {
      const [a] = await fleet();
      const { res, after } = await runOdd(a, dir, `odd-${form}`, form);
      for (const x of after) expect(x.summary, x.name).toBe(x.expect === 'written' ? 'given' : 'held');
      expect(res).toMatchObject({ read: ODD_MODIFIED.length - count('skipped'), changed: count('written'), older: count('left') });
    });

  it('a re-import on the other replica counts no identical record as older; it applies exactly the written ones, then nothing', async () => {
    const [a, b] = await fleet();
    const { feeds } = noticing(b);
    const held = ODD_MODIFIED.map((c, i): [string, unknown] => [`${caseId(i)}.json`, copy(caseId(i), c.held, 'held')]);
    await importAdvisories(a, tree(dir, 'pg-re-held', held), { replace: true });
    expect(await feeds.notice()).toHaveLength(ODD_MODIFIED.length);
    const given = tree(
      dir,
      'pg-re-given',
      ODD_MODIFIED.map((c, i) => [`${caseId(i)}.json`, copy(caseId(i), c.given, 'given')]),
    );
    await importAdvisories(a, given);
    expect((await feeds.notice()).sort()).toEqual(ODD_MODIFIED.flatMap((c, i) => (c.expect === 'written' ? [caseId(i)] : [])));
    const gen = await b.advisoryGeneration();
    expect(await importAdvisories(b, given)).toMatchObject({ changed: 0, older: count('left') });
    // Exactly what is stored (identical, whatever its time: none, "yesterday", an offset): nothing changed or left out.
    const same = held.filter((_, i) => ODD_MODIFIED[i].expect !== 'written');
    expect(await importAdvisories(b, tree(dir, 'pg-re-same', same))).toMatchObject({ changed: 0, older: 0 });
    expect(await b.advisoryGeneration()).toBe(gen);
    expect(await feeds.notice()).toEqual([]);
  });

  it('duplicates of an id in one zip: one copy judged per id, a left-out id counted once', async () => {
    const [a] = await fleet();
    await importAdvisories(a, tree(dir, 'pg-dup-held', [['Y.json', copy('GHSA-Y', '2026-05-01T00:00:00Z', 'held')]]));
    const z = zipOf(dir, 'pg-dup.zip', [
      ['a/Y.json', copy('GHSA-Y', T1, 'y1')],
      ['b/Y.json', copy('GHSA-Y', '2026-04-01T00:00:00Z', 'y4')],
      ['Y.json', copy('GHSA-Y', T2, 'y2')],
      ['X.json', copy('GHSA-X', T2, 'x')],
    ]);
    const r = await importAdvisories(a, z);
    expect(r).toMatchObject({ read: 2, changed: 1, older: 1 });
    expect(r.skipped).toHaveLength(2);
    expect((await storedOf(a, 'GHSA-Y'))?.summary).toBe('held');
  });
});

describe('break: side by side with other writers on PostgreSQL', () => {
  it('two replicas import different copies of the same ids at once, over and over: the newest copy of every id stays, the counts add up', async () => {
    const [a, b] = await fleet();
    for (let round = 0; round < 3; round++) {
      const tA = (i: number) => `${2020 + round}-0${1 + ((i + round) % 3)}-01T00:00:00Z`;
      const tB = (i: number) => `${2020 + round}-0${1 + ((i * 2 + round) % 3)}-01T00:00:00Z`;
      const dA = tree(
        dir,
        `pg-two-a-${round}`,
        Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), tA(i), `a-${round}`)]),
      );
      const dB = tree(
        dir,
        `pg-two-b-${round}`,
        Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), tB(i), `b-${round}`)]),
      );
      const [rA, rB] = await Promise.all([importAdvisories(a, dA), importAdvisories(b, dB)]);
      const all = new Map((await a.listAdvisories()).map((j) => JSON.parse(j) as Record<string, string>).map((o) => [o.id, o]));
      let bNewer = 0;
      let aNewer = 0;
      for (let i = 0; i < N; i++) {
        const got = all.get(pad(i))!;
        expect(got.modified, `${round} ${pad(i)}`).toBe(tA(i) > tB(i) ? tA(i) : tB(i));
        if (tA(i) > tB(i)) (aNewer++, expect(got.summary).toBe(`a-${round}`));
        if (tB(i) > tA(i)) (bNewer++, expect(got.summary).toBe(`b-${round}`));
      }
      expect([aNewer, bNewer]).toEqual([N / 3, N / 3]);
      expect([rA.changed + rA.older, rB.changed + rB.older]).toEqual([N, N]);
      expect(rA.older).toBeLessThanOrEqual(bNewer);
      expect(rB.older).toBeLessThanOrEqual(aNewer);
      expect([(await importAdvisories(b, dA)).older, (await importAdvisories(a, dB)).older]).toEqual([bNewer, aNewer]);
    }
  }, 120_000);

  it("another replica's sync between the import's batches, and an import between another replica's sync batches: exact counts, newest kept", async () => {
    const [a, b] = await fleet();
    const feeds = feedsOver(b, [src('osv')], { owner: 'replica-b' });
    serveZip(Array.from({ length: N }, (_, i) => copy(pad(i), i < N / 2 ? T3 : T1, 'feed')));
    const realA = a.putAdvisories.bind(a);
    let imports = 0;
    Object.assign(a, {
      putAdvisories: async (...x: Parameters<typeof realA>) => {
        const n = await realA(...x);
        if (++imports === 1) expect(await feeds.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: N });
        return n;
      },
    });
    const r = await importAdvisories(
      a,
      tree(
        dir,
        'pg-race-1',
        Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), T2, 'import')]),
      ),
    );
    expect(r).toMatchObject({ read: N, changed: 550, older: 50 });
    let all = await a.advisoriesModified(Array.from({ length: N }, (_, i) => pad(i)));
    for (let i = 0; i < N; i++) expect(all.get(pad(i)), pad(i)).toBe(i < N / 2 ? T3 : T2);

    // The other way about, on a fresh schema: replica A imports between replica B's sync batches.
    const [c, d] = await fleet();
    const feedsD = feedsOver(d, [src('osv')], { owner: 'replica-d' });
    serveZip(Array.from({ length: N }, (_, i) => copy(pad(i), i % 2 ? T3 : T1, 'feed')));
    const realD = d.putAdvisories.bind(d);
    let between: ImportResult | undefined;
    Object.assign(d, {
      putAdvisories: async (...x: Parameters<typeof realD>) => {
        const n = await realD(...x);
        between ??= await importAdvisories(
          c,
          tree(
            dir,
            'pg-race-2',
            Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), T2, 'import')]),
          ),
        );
        return n;
      },
    });
    expect(await feedsD.syncNow(src('osv'))).toMatchObject({ outcome: 'changed', changed: 250 + 175 });
    expect(between).toMatchObject({ read: N, changed: N - 125, older: 125 });
    all = await c.advisoriesModified(Array.from({ length: N }, (_, i) => pad(i)));
    for (let i = 0; i < N; i++) expect(all.get(pad(i)), pad(i)).toBe(i % 2 ? T3 : T2);
  }, 60_000);

  it("an import and another replica's sync at once, for real: every id ends at its newest copy", async () => {
    const [a, b] = await fleet();
    const feeds = feedsOver(b, [src('osv')], { owner: 'replica-b' });
    for (let round = 0; round < 3; round++) {
      const tI = (i: number) => `${2020 + round}-0${1 + ((i + round) % 3)}-01T00:00:00Z`;
      const tF = (i: number) => `${2020 + round}-0${1 + ((i * 5 + round) % 3)}-01T00:00:00Z`;
      serveZip(Array.from({ length: N }, (_, i) => copy(pad(i), tF(i), `feed-${round}`)));
      const d = tree(
        dir,
        `pg-at-once-${round}`,
        Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), tI(i), `import-${round}`)]),
      );
      const [r, s] = await Promise.all([importAdvisories(a, d), feeds.syncNow(src('osv'))]);
      expect(s, JSON.stringify(s)).toMatchObject({ outcome: 'changed' });
      const all = await a.advisoriesModified(Array.from({ length: N }, (_, i) => pad(i)));
      let feedNewer = 0;
      for (let i = 0; i < N; i++) {
        expect(all.get(pad(i)), `${round} ${pad(i)}`).toBe(tF(i) > tI(i) ? tF(i) : tI(i));
        if (tF(i) > tI(i)) feedNewer++;
      }
      expect(feedNewer).toBe(N / 3);
      expect(r.changed + r.older).toBe(N);
      expect((await importAdvisories(a, d)).older).toBe(feedNewer);
    }
  }, 120_000);
});

describe('break: the command line on PostgreSQL', () => {
  const env = () => ({ AIRLOCK_TEST_PG: pgsrv.url });
  function config(schema: string): string {
    const file = join(dir, `${schema}.yaml`);
    writeFileSync(
      file,
      `data_dir: ${join(dir, `${schema}-data`)}\nlog_level: silent\nstorage:\n  meta: postgres\n  postgres_url_env: AIRLOCK_TEST_PG\n  postgres_schema: ${schema}\n`,
    );
    return file;
  }

  it('the output line counts what it left out, exit 0; --replace writes them; a batch that fails half-way keeps the batches before, and a re-run counts exactly', async () => {
    const [a, , schema] = await fleet();
    const cfg = config(schema);
    await importAdvisories(
      a,
      tree(
        dir,
        'pg-cli-held',
        Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), i % 3 ? T1 : T3, 'held')]),
      ),
    );
    const d = tree(
      dir,
      'pg-cli-given',
      Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), T2, 'given')]),
    );
    // A store error in the second batch (a trigger refusing one row): the first batch's 250 stay written.
    const c = new pg.Client({ connectionString: pgsrv.url });
    await c.connect();
    try {
      await c.query(`CREATE FUNCTION ${schema}.refuse() RETURNS trigger AS $$ BEGIN
        IF NEW.id = '${pad(400)}' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`);
      await c.query(`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ${schema}.advisories FOR EACH ROW EXECUTE FUNCTION ${schema}.refuse()`);
      const cut = await airlockCli(['advisories', 'import', d, '--config', cfg], env());
      expect(cut.code).toBe(1);
      expect(cut.stderr).toMatch(/refused by a trigger/);
      expect(cut.stderr.trimEnd().split('\n')).toEqual([
        `airlock: advisories import ${d}: stopped by a store error after 250 of ${N} records (166 new or changed, 84 left out as older than the copy stored): those stay written, the rest were not; run it again to finish (refused by a trigger)`,
      ]);
      expect(cut.stdout).toBe('');
      const mid = await a.advisoriesModified(Array.from({ length: N }, (_, i) => pad(i)));
      for (let i = 0; i < N; i++) expect(mid.get(pad(i)), pad(i)).toBe(i < 250 ? (i % 3 ? T2 : T3) : i % 3 ? T1 : T3);
      await c.query(`DROP TRIGGER refuse ON ${schema}.advisories`);
    } finally {
      await c.end();
    }
    // Re-run: the first batch's written copies are identical now (neither changed nor left out); every T3 copy is left out.
    const again = await airlockCli(['advisories', 'import', d, '--config', cfg], env());
    expect(again.code).toBe(0);
    expect(again.stderr).toBe('');
    expect(again.stdout.split('\n')[0]).toBe(
      `read ${N} OSV records from ${d}: ${350 - 116} new or changed, 0 withdrawn (kept, never matched), 200 left out (older than the copy stored; --replace imports them)`,
    );
    const replaced = await airlockCli(['advisories', 'import', d, '--replace', '--config', cfg], env());
    expect(replaced.stdout.split('\n')[0]).toBe(`read ${N} OSV records from ${d}: 200 new or changed, 0 withdrawn (kept, never matched)`);
    expect(new Set((await a.listAdvisories()).map((j) => (JSON.parse(j) as { modified: string }).modified))).toEqual(new Set([T2]));
  }, 60_000);

  // `airlock migrate --from sqlite --to postgres` re-read each stored record's `modified` from its JSON as it was:
  // a record an import stored without one (kept as '') went to PostgreSQL as NULL, which advisories.modified refuses,
  // after the pull record and the tokens were copied (a second run then refuses: "the PostgreSQL record is not empty").
  it('airlock migrate moves an imported record that has no `modified` (or a null one) into PostgreSQL', async () => {
    const data = join(dir, 'mig-data');
    const sqliteCfg = join(dir, 'mig-sqlite.yaml');
    writeFileSync(sqliteCfg, `data_dir: ${data}\nlog_level: silent\n`);
    const d = tree(dir, 'mig-recs', [
      ['A.json', copy('GHSA-none', undefined, 'no modified')],
      ['B.json', copy('GHSA-null', null, 'null modified')],
      ['C.json', copy('GHSA-time', T1, 'a time')],
    ]);
    expect((await airlockCli(['advisories', 'import', d, '--config', sqliteCfg])).stdout).toMatch(/^read 3 OSV records .*: 3 new or changed/);
    const pgCfg = join(dir, 'mig-pg.yaml');
    writeFileSync(
      pgCfg,
      `data_dir: ${data}\nlog_level: silent\nstorage:\n  meta: postgres\n  postgres_url_env: AIRLOCK_TEST_PG\n  postgres_schema: migrated_${process.pid}\n`,
    );
    const moved = await airlockCli(['migrate', '--from', 'sqlite', '--to', 'postgres', '--config', pgCfg], env());
    expect(moved.stderr).toBe('');
    expect(moved.stdout).toMatch(/3 advisories/);
    const m = await PgMetaStore.open(pgsrv.url, { schema: `migrated_${process.pid}` });
    opened.push(m);
    expect([...(await m.advisoriesModified(['GHSA-none', 'GHSA-null', 'GHSA-time']))].sort()).toEqual([
      ['GHSA-none', ''],
      ['GHSA-null', ''],
      ['GHSA-time', T1],
    ]);
    // Judged there as on SQLite: a copy with a time replaces one without; a copy without one is left out.
    const later = tree(dir, 'mig-later', [
      ['A.json', copy('GHSA-none', T1, 'now with a time')],
      ['C.json', copy('GHSA-time', undefined, 'lost its time')],
    ]);
    expect(await importAdvisories(m, later)).toMatchObject({ changed: 1, older: 1 });
  }, 60_000);
});
