import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { copy, tree, zipOf } from '../helpers/import-older.js';
import { writeZip } from '../helpers/zip-writer.js';

/**
 * `airlock advisories import` leaving out older copies (053bb51), from the command line on the
 * embedded SQLite store (the built CLI: `npx tsc -p tsconfig.build.json` first): its output line and
 * exit code, input that is not what it should be (one line on stderr, nothing written), and a write
 * that fails part of the way through.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-import-older-cli-'));
const cfg = join(dir, 'airlock.yaml');
const db = join(dir, 'data', 'airlock.db');
const T1 = '2026-01-01T00:00:00Z';
const T2 = '2026-02-01T00:00:00Z';
const T3 = '2026-03-01T00:00:00Z';
const pad = (i: number) => `PYSEC-2026-${String(i).padStart(4, '0')}`;
const N = 600;
const imp = (...args: string[]) => airlockCli(['advisories', 'import', ...args, '--config', cfg]);
/** The stored rows, read on a connection of the test's own. */
function rows(): Map<string, { modified: string; summary: string; generation: number }> {
  const c = new Database(db, { readonly: true });
  try {
    return new Map(
      c
        .prepare<[], { id: string; modified: string; record: string; generation: number }>('SELECT id, modified, record, generation FROM advisories')
        .all()
        .map((r) => [r.id, { modified: r.modified, summary: (JSON.parse(r.record) as { summary: string }).summary, generation: r.generation }]),
    );
  } finally {
    c.close();
  }
}
const snapshot = () => JSON.stringify([...rows()].sort());

beforeAll(async () => {
  writeFileSync(cfg, `data_dir: ${join(dir, 'data')}\nlog_level: silent\n`);
  // What is stored to begin with: ids 0-599, every third newer (T3) than the copies the tests import (T2), the rest older.
  const held = tree(
    dir,
    'held',
    Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), i % 3 ? T1 : T3, 'held')]),
  );
  const r = await imp(held);
  expect(r.stdout.split('\n')[0]).toBe(`read ${N} OSV records from ${held}: ${N} new or changed, 0 withdrawn (kept, never matched)`);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('break: `airlock advisories import` bad input: one line, nothing written (SQLite)', () => {
  it('no such path, a zip cut short, a zip entry failing its CRC, a broken link, a bad option: one line, exit 1 or 2, the store as it was', async () => {
    const before = snapshot();
    const good = copy(pad(0), '2027-01-01T00:00:00Z', 'would win');
    const zip = readFileSync(
      zipOf(dir, 'ok.zip', [
        ['a.json', good],
        ['b.json', copy(pad(1), T2, 'b')],
      ]),
    );
    writeFileSync(join(dir, 'cut.zip'), zip.subarray(0, zip.length - 30));
    // An entry's data (stored, not deflated) changed by one bit: its CRC no longer matches.
    const raw = writeZip(
      [
        { name: 'a.json', data: JSON.stringify(good) },
        { name: 'b.json', data: JSON.stringify(copy(pad(1), T2, 'b')) },
      ],
      { stored: true },
    );
    raw[raw.indexOf(Buffer.from('would win'))] ^= 1;
    writeFileSync(join(dir, 'crc.zip'), raw);
    const linked = tree(dir, 'linked', [['a.json', good]]);
    symlinkSync(join(dir, 'nowhere.json'), join(linked, 'b.json'));
    const cases: [string[], number, RegExp][] = [
      [[join(dir, 'absent')], 2, /^airlock: advisories import: .*absent: no such file or directory$/],
      [[join(dir, 'cut.zip')], 2, /^airlock: advisories import: .*cut\.zip: zip: /],
      [[join(dir, 'crc.zip')], 2, /^airlock: advisories import: .*crc\.zip: .*CRC/i],
      [[linked], 1, /^airlock: .*nowhere\.json|^airlock: .*b\.json/],
      [[linked, '--replace=yes'], 2, /^airlock: .*replace/],
      [[], 2, /^airlock: usage: airlock advisories import PATH \[--replace\]$/],
    ];
    for (const [args, code, line] of cases) {
      const r = await imp(...args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stdout, args.join(' ')).toBe('');
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0], args.join(' ')).toMatch(line);
    }
    expect(snapshot()).toBe(before);
  });

  it('what is not an OSV record is listed as skipped, the rest imported: the output line counts each kind exactly, exit 0', async () => {
    const d = tree(dir, 'mixed', [
      ['a.json', copy(pad(0), T2, 'older than stored')],
      ['b.json', copy(pad(1), T2, 'newer than stored')],
      ['c.json', copy(pad(2), T2, 'withdrawn, newer', { withdrawn: T2 })],
      ['d.json', '{"id": "PYSEC-2026-0003", "modified": '],
      ['e.json', copy(pad(4), 20270101, 'a number')],
      ['f.json', copy(pad(3), T2, 'a duplicate, older', { summary: 'dup' })],
      ['g.json', copy(pad(3), T3, 'newest kept')],
      ['h.json', copy('MAL-0000-staging', T3, 'staging')],
    ]);
    const before = rows();
    const r = await imp(d);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(
      `read 4 OSV records from ${d}: 3 new or changed, 1 withdrawn (kept, never matched), 1 left out (older than the copy stored; --replace imports them), 4 skipped`,
    );
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(4);
    const after = rows();
    expect([0, 1, 2, 3, 4].map((i) => after.get(pad(i))!.summary)).toEqual(['held', 'newer than stored', 'withdrawn, newer', 'newest kept', 'held']);
    expect(after.get(pad(4))).toEqual(before.get(pad(4)));
    // --replace: the one left out is written; nothing else changes.
    const again = await imp(d, '--replace');
    expect(again.stdout.split('\n')[0]).toBe(`read 4 OSV records from ${d}: 1 new or changed, 1 withdrawn (kept, never matched), 4 skipped`);
    expect(rows().get(pad(0))!.summary).toBe('older than stored');
    // Put it back as it was for the tests after (ids 0-4 at their first times).
    const back = tree(
      dir,
      'back',
      [0, 1, 2, 3, 4].map((i) => [`${pad(i)}.json`, copy(pad(i), i % 3 ? T1 : T3, 'held')]),
    );
    expect((await imp(back, '--replace')).code).toBe(0);
  });
});

describe('break: `airlock advisories import` cut short by the store (SQLite)', () => {
  // A store error in the middle of an import (a trigger here; in life SQLITE_BUSY past the 5 s busy timeout beside a
  // long write, a full disk, a PostgreSQL failover) ended the command with "airlock: unexpected error" and a stack
  // trace, and nothing said that the batches before it were written, nor how many it left out. It is one line now,
  // counting only the batches that committed (a left-out copy in the failed batch is not counted).
  it('a store error at the second batch: one line saying what was written and left out before it, exit 1; the re-run completes it exactly', async () => {
    const d = tree(
      dir,
      'cut',
      Array.from({ length: N }, (_, i) => [`${pad(i)}.json`, copy(pad(i), T2, 'given')]),
    );
    const c = new Database(db);
    try {
      c.exec(`CREATE TRIGGER refuse BEFORE INSERT ON advisories WHEN NEW.id = '${pad(400)}' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END`);
    } finally {
      c.close();
    }
    let r: Awaited<ReturnType<typeof imp>>;
    try {
      r = await imp(d);
    } finally {
      const c2 = new Database(db);
      c2.exec('DROP TRIGGER refuse');
      c2.close();
    }
    // The first batch (0-249) stays written: 166 copies newer than the stored, 84 left out (every third).
    const mid = rows();
    for (let i = 0; i < N; i++) expect(mid.get(pad(i))!.modified, pad(i)).toBe(i < 250 ? (i % 3 ? T2 : T3) : i % 3 ? T1 : T3);
    const again = await imp(d);
    expect(again.stdout.split('\n')[0]).toBe(
      `read ${N} OSV records from ${d}: 234 new or changed, 0 withdrawn (kept, never matched), 200 left out (older than the copy stored; --replace imports them)`,
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/refused by a trigger/);
    expect(lines[0]).toMatch(/250 of 600/);
    expect(lines[0]).toMatch(/166 new or changed/);
    expect(lines[0]).toMatch(/84 left out/);
  }, 60_000);
});
