import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { affected } from '../../src/audit/affected.js';
import { buildSbom } from '../../src/audit/sbom.js';
import type { AlertDocument } from '../../src/alerts/message.js';
import { impactOf } from '../../src/alerts/impact.js';
import { queueModelRefusal } from '../../src/alerts/model.js';
import type { NewlyRefused } from '../../src/hf/rescan.js';
import type { OsvRecord } from '../../src/policy/advisories.js';
import type { PullFilter, StoredPullRecord } from '../../src/storage/meta-store.js';
import { MAX_PULL_PAGE, pullPages } from '../../src/storage/pull-pages.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { sqlitePlan } from '../helpers/pull-record-fixture.js';

/**
 * "Who pulled it" must see every pull. One listPulls answers at most MAX_PULL_PAGE (100,000) rows,
 * and a release CI pulls a few thousand times a day passes that within weeks: the alerts, `airlock
 * affected`, the SBOM, the model-file alert and `airlock records --limit` read the record a page
 * at a time (storage/pull-pages.ts). Before, each stopped at its newest 100,000 rows (the model
 * alert at 10,000) without saying so, and the clients whose pulls were older were not told.
 */
const TOTAL = MAX_PULL_PAGE + 30_000;
const HF_TOTAL = 12_000;
const SHA = 'a'.repeat(64);
const HF_SHA = 'b'.repeat(64);
const T0 = 1_790_000_000_000;

const dir = mkdtempSync(join(tmpdir(), 'airlock-pull-pages-'));
let meta: SqliteMetaStore;

beforeAll(() => {
  mkdirSync(join(dir, 'data'));
  const path = join(dir, 'data', 'airlock.db');
  new SqliteMetaStore(path).close();
  // Written directly (the chain is not what is tested): the oldest rows are the only pulls of ci-old and hf-old.
  const db = new Database(path);
  const ins = db.prepare(
    "INSERT INTO pulls (ts, client, ecosystem, name, version, filename, sha256, cache, decision) VALUES (?, ?, ?, ?, ?, ?, ?, 'hit', 'allow')",
  );
  db.transaction(() => {
    for (let i = 0; i < TOTAL; i++) ins.run(T0 + i, i < 100 ? 'ci-old' : `ci-${i % 20}`, 'pypi', 'popular', '1.0', 'popular-1.0-py3-none-any.whl', SHA);
    for (let i = 0; i < HF_TOTAL; i++)
      ins.run(T0 + TOTAL + i, i < 10 ? 'hf-old' : `gpu-${i % 5}`, 'hf', 'org/model', 'c'.repeat(40), 'model.safetensors', HF_SHA);
  })();
  db.close();
  meta = new SqliteMetaStore(path);
  writeFileSync(join(dir, 'airlock.yaml'), `listen: 127.0.0.1:0\ndata_dir: ${join(dir, 'data')}\nlog_level: silent\n`);
}, 60_000);
afterAll(async () => {
  await meta?.close();
  rmSync(dir, { recursive: true, force: true });
});

const advisory = {
  id: 'PYSEC-2026-77',
  modified: '2026-12-01T00:00:00Z',
  summary: 'popular 1.0',
  affected: [{ package: { ecosystem: 'PyPI', name: 'popular' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
} as unknown as OsvRecord;

describe('every pull is read, past one page of the record', () => {
  it('the alert of an advisory counts every pull and names the client whose pulls are the oldest', async () => {
    const [impact] = await impactOf(meta, advisory);
    expect(impact.clients.reduce((n, c) => n + c.pulls, 0)).toBe(TOTAL);
    expect(impact.clients.find((c) => c.client === 'ci-old')).toMatchObject({ pulls: 100, first: T0 });
  });

  it('`airlock affected` lists every pull, newest first, down to the oldest', async () => {
    await meta.putAdvisories([{ id: advisory.id, modified: advisory.modified!, record: JSON.stringify(advisory) }]);
    const rep = await affected(meta, advisory.id);
    expect(rep.pulls).toHaveLength(TOTAL);
    expect(rep.pulls.at(-1)).toMatchObject({ client: 'ci-old', ts: T0 });
    expect(rep.pulls.every((p, i) => i === 0 || p.id < rep.pulls[i - 1].id)).toBe(true);
    expect(rep.counts).toEqual({ pulls: TOTAL, served: TOTAL, clientsServed: 21 });
    // A console page lists the newest 1,000 and counts them all, without holding every row.
    const page = await affected(meta, advisory.id, undefined, 1000);
    expect(page.counts).toEqual(rep.counts);
    expect(page.pulls.map((p) => p.id)).toEqual(rep.pulls.slice(0, 1000).map((p) => p.id));
  });

  it('the SBOM of the whole record counts every pull and every client', async () => {
    const bom = JSON.parse(await buildSbom(meta, { ecosystem: 'pypi', version: 'test' })) as {
      components: { name: string; properties: { name: string; value: string }[] }[];
    };
    const c = bom.components.find((x) => x.name === 'popular')!;
    expect(c.properties.find((p) => p.name === 'airlock:pulls')?.value).toBe(String(TOTAL));
    expect(c.properties.filter((p) => p.name === 'airlock:client').map((p) => p.value)).toContain('ci-old');
  });

  it('the alert of a model file refused after a rescan names every client that pulled it (it stopped at 10,000 pulls)', async () => {
    const n = { sha256: HF_SHA, repo: 'org/model', path: 'model.safetensors', decision: { allow: false, reason: 'test' } } as unknown as NewlyRefused;
    expect(await queueModelRefusal(meta, n, ['log'], 'http://airlock.test')).toBe(1);
    const [row] = await meta.alerts.listAlerts({ limit: 10 });
    const doc = JSON.parse(row.payload) as AlertDocument;
    expect(doc.clients.map((c) => c.client)).toContain('hf-old');
    expect(doc.clients.reduce((s, c) => s + c.pulls, 0)).toBe(HF_TOTAL);
  });

  it('`airlock records --limit` past one page gives that many rows, as text and as one JSON array', async () => {
    const cli = (args: string[]) =>
      new Promise<{ code: number; out: string }>((resolve) => {
        const p = spawn('node', [join(process.cwd(), 'dist', 'cli', 'main.js'), 'records', '--config', join(dir, 'airlock.yaml'), ...args]);
        const chunks: Buffer[] = [];
        p.stdout.on('data', (d: Buffer) => chunks.push(d));
        p.on('close', (code) => resolve({ code: code ?? 1, out: Buffer.concat(chunks).toString() }));
      });
    const text = await cli(['--name', 'popular', '--limit', String(TOTAL + 5)]);
    expect(text.code).toBe(0);
    const lines = text.out.trimEnd().split('\n');
    expect(lines).toHaveLength(TOTAL);
    expect(lines.at(-1)).toContain('\tci-old\t');
    const json = await cli(['--name', 'popular', '--limit', String(MAX_PULL_PAGE + 1), '--json']);
    const rows = JSON.parse(json.out) as StoredPullRecord[];
    expect(rows).toHaveLength(MAX_PULL_PAGE + 1);
    // The same layout as JSON.stringify(rows, null, 2), which the command wrote before.
    expect(json.out).toBe(JSON.stringify(rows, null, 2) + '\n');
    const none = await cli(['--name', 'nothing', '--json']);
    expect(none.out).toBe('[]\n');
  }, 120_000);

  it('pages follow each other by id: rows written between two pages are not read, and none twice', async () => {
    const seen: number[] = [];
    let wrote = false;
    for await (const page of pullPages(meta, { ecosystem: 'hf', sha256: HF_SHA }, 5000)) {
      seen.push(...page.map((r) => r.id));
      if (!wrote) {
        wrote = true;
        const db = new Database(join(dir, 'data', 'airlock.db'));
        db.prepare("INSERT INTO pulls (ts, client, ecosystem, name, sha256, cache, decision) VALUES (?, 'late', 'hf', 'org/model', ?, 'hit', 'allow')").run(
          T0 * 2,
          HF_SHA,
        );
        db.close();
      }
    }
    expect(seen).toHaveLength(HF_TOTAL);
    expect(new Set(seen).size).toBe(HF_TOTAL);
    const capped: number[] = [];
    for await (const page of pullPages(meta, { ecosystem: 'hf', limit: 11_111 }, 5000)) capped.push(page.length);
    expect(capped).toEqual([5000, 5000, 1111]);
  });

  it('each page is a search of an index from where the last one stopped (SQLite; PostgreSQL in pg-contracts)', () => {
    const db = new Database(join(dir, 'data', 'airlock.db'), { readonly: true });
    const plans = (
      [
        { ecosystem: 'pypi', name: 'popular', before: 5000 },
        { ecosystem: 'pypi', sha256: SHA, before: 5000 },
        { ecosystem: 'oci', sha256: SHA, decision: 'allow', before: 5000 },
        { ecosystem: 'audit', name: 'prune', before: 5000 },
        { since: T0, until: T0 + 10, decision: 'allow', before: 5000 },
      ] as PullFilter[]
    ).map((f) => sqlitePlan(db, { ...f, limit: 10_000 }));
    db.close();
    expect(plans[0]).toMatch(/USING INDEX pulls_name_id \(name=\? AND id<\?\)/);
    expect(plans[1]).toMatch(/USING INDEX pulls_sha256 \(sha256=\? AND rowid<\?\)/);
    expect(plans[2]).toMatch(/USING INDEX pulls_sha256 \(sha256=\? AND rowid<\?\)/);
    expect(plans[3]).toMatch(/USING INDEX pulls_name_id \(name=\? AND id<\?\)/);
    expect(plans[4]).toMatch(/USING INTEGER PRIMARY KEY \(rowid<\?\)/);
    for (const p of plans) expect(p).not.toMatch(/TEMP B-TREE/);
  });

  it('a time window read in pages stops at its oldest row, not at the oldest row of the record', async () => {
    // About the newest 15,000 rows of the record: two pages of 10,000.
    const since = T0 + TOTAL + HF_TOTAL - 15_000;
    const asked: PullFilter[] = [];
    const log = { listPulls: (f: PullFilter) => (asked.push(f), meta.listPulls(f)) };
    const ids: number[] = [];
    for await (const page of pullPages(log, { since })) ids.push(...page.map((r) => r.id));
    const direct = (await meta.listPulls({ since, limit: 100_000 })).map((r) => r.id);
    expect(ids).toEqual(direct);
    expect(ids.length).toBeGreaterThan(10_000);
    // Asked once where the window starts; the last page is bounded below by it.
    expect(asked.filter((f) => f.oldestFirst)).toHaveLength(1);
    expect(asked.at(-1)).toMatchObject({ from: ids.at(-1), before: ids[9_999] });
    const db = new Database(join(dir, 'data', 'airlock.db'), { readonly: true });
    const oldest = sqlitePlan(db, { since, limit: 1, oldestFirst: true });
    const last = sqlitePlan(db, { since, before: ids[9_999], from: ids.at(-1), limit: 10_000 });
    db.close();
    expect(oldest).toMatch(/USING INDEX pulls_ts \(ts>\?\)/);
    expect(last).toMatch(/USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/);
    // An empty window asks nothing more; one page's worth never asks where it starts.
    asked.length = 0;
    for await (const page of pullPages(log, { since: T0 * 3 })) expect(page).toHaveLength(0);
    const small: number[] = [];
    for await (const page of pullPages(log, { since: T0 + TOTAL + HF_TOTAL - 50 })) small.push(page.length);
    expect(small).toHaveLength(1);
    expect(asked.filter((f) => f.oldestFirst)).toHaveLength(0);
  });
});
