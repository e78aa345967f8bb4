import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { affected } from '../../src/audit/affected.js';
import { pullsCsv } from '../../src/console/advisories.js';
import { appendPulls, prunePulls, verifyChain } from '../../src/core/chain.js';
import type { PullRecord, StoredPullRecord } from '../../src/storage/meta-store.js';
import { eachPull, PULL_PAGE, pullPages } from '../../src/storage/pull-pages.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { airlockCli } from '../helpers/cli.js';

/**
 * "Who pulled it sees every pull", attacked from the side (SQLite): pages read while the record is
 * written and pruned, and `airlock records --json` written a row at a time.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-record-pages-attacks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const row = (i: number, extra: Partial<PullRecord> = {}): PullRecord => ({
  ts: 1_790_000_000_000 + i,
  client: `c${i % 3}`,
  ecosystem: 'pypi',
  name: 'popular',
  version: '1.0',
  sha256: 'a'.repeat(64),
  cache: 'hit',
  decision: 'allow',
  ...extra,
});

describe('pages of the record', () => {
  it('a search read a page at a time while rows are written and the oldest pruned reads every row that was there at its start and is still there, once, and none written after it', async () => {
    const meta = new SqliteMetaStore(join(dir, 'pages.db'));
    try {
      await appendPulls(
        meta,
        Array.from({ length: 40 }, (_, i) => row(i, i % 4 === 0 ? { name: 'other' } : {})),
      );
      const before = new Set((await meta.listPulls({ name: 'popular', limit: 1000 })).map((r) => r.id));
      const seen: number[] = [];
      let turn = 0;
      for await (const page of pullPages(meta, { name: 'popular', sha256: 'a'.repeat(64) }, 4)) {
        seen.push(...page.map((r) => r.id));
        // Between pages: new pulls of it, and a retention prune of its oldest rows.
        await appendPulls(meta, [row(100 + turn), row(200 + turn)]);
        if (turn++ === 2) await prunePulls(meta, 1_790_000_000_000 + 6, 'test', 2);
      }
      const after = new Set((await meta.listPulls({ name: 'popular', limit: 1000 })).map((r) => r.id));
      const kept = [...before].filter((id) => after.has(id));
      expect(new Set(seen).size).toBe(seen.length);
      for (const id of kept) expect(seen).toContain(id);
      for (const id of seen) expect(before.has(id)).toBe(true);
      expect(seen).toEqual([...seen].sort((a, b) => b - a));
    } finally {
      await meta.close();
    }
  });
});

describe('airlock records --json', () => {
  it('writes every field as stored, whatever characters it holds (U+2028 and U+2029 end a line for a regular expression, not for JSON)', async () => {
    const data = join(dir, 'json-data');
    mkdirSync(data);
    const meta = new SqliteMetaStore(join(data, 'airlock.db'));
    const odd = ['line\u2028separator', 'paragraph\u2029separator', 'both\u2028\u2029', 'plain'];
    try {
      // A refused request's name and reason come from the client (a URL path) or an upstream's answer.
      await appendPulls(
        meta,
        odd.map((name, i) => row(i, { name, reason: `refused ${name}`, decision: 'deny', code: 'not_allowlisted' })),
      );
    } finally {
      await meta.close();
    }
    const config = join(dir, 'json.yaml');
    writeFileSync(config, `listen: 127.0.0.1:0\ndata_dir: ${data}\nlog_level: silent\n`);
    const { code, stdout: out } = await airlockCli(['records', '--config', config, '--json']);
    expect(code).toBe(0);
    const rows = JSON.parse(out) as StoredPullRecord[];
    expect(rows.map((r) => r.name)).toEqual([...odd].reverse());
    expect(rows.map((r) => r.reason)).toEqual([...odd].reverse().map((n) => `refused ${n}`));
    expect(out).toBe(JSON.stringify(rows, null, 2) + '\n');
  });
});

describe('reading every row leaves the event loop to the server between pages', () => {
  it('other work runs between the pages of an answer (SQLite reads a page synchronously: 500,000 rows of an advisory impact stopped the server 6.9 s)', async () => {
    const meta = new SqliteMetaStore(join(dir, 'turns.db'));
    try {
      await appendPulls(
        meta,
        Array.from({ length: 2 * PULL_PAGE + 10 }, (_, i) => row(i)),
      );
      // Work another client's request stands for: it runs whenever the event loop gets a turn.
      let turns = 0;
      let on = true;
      const other = () => {
        turns++;
        if (on) setImmediate(other);
      };
      setImmediate(other);
      const atPage: number[] = [];
      let read = 0;
      await eachPull(meta, { name: 'popular' }, () => {
        if (read++ % PULL_PAGE === 0) atPage.push(turns);
      });
      on = false;
      expect(read).toBe(2 * PULL_PAGE + 10);
      expect(atPage).toHaveLength(3);
      expect(atPage[1]).toBeGreaterThan(atPage[0]);
      expect(atPage[2]).toBeGreaterThan(atPage[1]);
    } finally {
      await meta.close();
    }
  });
});

describe('verifying the chain leaves the event loop to the server', () => {
  it('other work runs while the chain is walked (the console verifies in the server: 500,000 rows stopped it 3.2 s)', async () => {
    const meta = new SqliteMetaStore(join(dir, 'verify-turns.db'));
    try {
      for (let k = 0; k < 3; k++)
        await appendPulls(
          meta,
          Array.from({ length: 10_000 }, (_, i) => row(k * 10_000 + i)),
        );
      let turns = 0;
      let on = true;
      const other = () => {
        turns++;
        if (on) setImmediate(other);
      };
      setImmediate(other);
      const scan = meta.scanPulls.bind(meta);
      const atRow: number[] = [];
      meta.scanPulls = async function* () {
        let k = 0;
        for await (const r of scan()) {
          if (k++ % 10_000 === 0) atRow.push(turns);
          yield r;
        }
      };
      const rep = await verifyChain(meta);
      on = false;
      expect(rep.problem).toBeUndefined();
      expect(rep.rows).toBe(30_000);
      expect(atRow).toHaveLength(3);
      expect(atRow[1]).toBeGreaterThan(atRow[0]);
      expect(atRow[2]).toBeGreaterThan(atRow[1]);
    } finally {
      await meta.close();
    }
  });
});

describe('folded rows in "who pulled it"', () => {
  it('`airlock affected` and the CSV export count a folded row as the pulls it stands for, and give its last time', async () => {
    const data = join(dir, 'folded-data');
    mkdirSync(data);
    const meta = new SqliteMetaStore(join(data, 'airlock.db'));
    const last = Date.UTC(2026, 11, 4, 12, 0, 0);
    try {
      // One served pull, then 41 identical refusals of one client folded into one row (core/fold.ts).
      await appendPulls(meta, [
        row(0, { name: 'folded' }),
        row(1, { name: 'folded', decision: 'deny', code: 'advisory', reason: 'affected by PYSEC-1', count: 41, lastTs: last }),
      ]);
      const rep = await affected(meta, 'pkg:pypi/folded@1.0');
      const csv = pullsCsv(rep.pulls).trimEnd().split('\r\n');
      expect(csv[0].split(',')).toEqual(expect.arrayContaining(['count', 'last_time']));
      const cols = csv[0].split(',');
      const denied = csv[1].split(',');
      expect(denied[cols.indexOf('count')]).toBe('"41"');
      expect(denied[cols.indexOf('last_time')]).toBe(`"${new Date(last).toISOString()}"`);
    } finally {
      await meta.close();
    }
    const config = join(dir, 'folded.yaml');
    writeFileSync(config, `listen: 127.0.0.1:0\ndata_dir: ${data}\nlog_level: silent\n`);
    const { code, stdout: out } = await airlockCli(['affected', 'pkg:pypi/folded@1.0', '--config', config]);
    expect(code).toBe(0);
    expect(out).toContain('42 pulls (1 served, 41 refused)');
    expect(out).toContain(`\tdeny\tx41 until ${new Date(last).toISOString()}`);
  });
});
