import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { normTime, olderThan } from '../../src/advisories/osv.js';
import { importAdvisories } from '../../src/cli/advisories.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { rng } from '../helpers/advisory-rig.js';
import { copy, storedOf, tree } from '../helpers/import-older.js';

/**
 * Attacks on olderThan reading the ISO 8601 forms a hand-written record carries (978efcc): the
 * order it gives across forms against an independent reading of each instant (date alone, no zone,
 * basic offsets, hh:mm, a space for T, lower-case t and z, fractions, leap seconds), RFC 3339 pairs
 * against the comparison before the change, and the forms tools write that it does not read.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-syncprune-time-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** olderThan before 978efcc: RFC 3339 only. */
const before = (given: string, held: string) => {
  const h = normTime(held);
  return h !== null && (normTime(given) ?? '') < h;
};

const p2 = (n: number) => String(n).padStart(2, '0');
/** An instant: UTC milliseconds of its second, nanoseconds within it (a leap second: 999,999,999 of :59, as normTime reads it). */
interface At {
  ms: number;
  ns: number;
}
const cmp = (a: At, b: At) => a.ms - b.ms || a.ns - b.ns;

/** The forms of one wall-clock time at `off` minutes east of UTC, each with the instant it names (read here, not by osv.ts). */
function forms(y: number, mo: number, d: number, h: number, mi: number, s: number, frac: string, off: number, tools = false): [string, At][] {
  const leap = s === 60;
  const ms = Date.UTC(y, mo - 1, d, h, mi, leap ? 59 : s) - off * 60_000;
  const at: At = { ms, ns: leap ? 999_999_999 : Number(frac.slice(0, 9).padEnd(9, '0')) };
  const date = `${y}-${p2(mo)}-${p2(d)}`;
  const sign = off < 0 ? '-' : '+';
  const oh = p2(Math.floor(Math.abs(off) / 60));
  const om = p2(Math.abs(off) % 60);
  const time = `${p2(h)}:${p2(mi)}:${p2(s)}${frac ? `.${frac}` : ''}`;
  const out: [string, At][] = [
    [`${date}T${time}${off === 0 ? 'Z' : `${sign}${oh}:${om}`}`, at],
    [`${date}t${time}${off === 0 ? 'z' : `${sign}${oh}:${om}`}`, at],
    [`${date} ${time}${sign}${oh}:${om}`, at],
    [`${date}T${time}${sign}${oh}${om}`, at],
  ];
  if (off === 0) out.push([`${date}T${time}`, at], [`${date} ${time}`, at]);
  if (s === 0 && !frac) out.push([`${date}T${p2(h)}:${p2(mi)}${sign}${oh}${om}`, at]);
  if (s === 0 && !frac && off === 0) out.push([`${date}T${p2(h)}:${p2(mi)}`, at]);
  if (h === 0 && mi === 0 && s === 0 && !frac && off === 0) out.push([date, at]);
  if (tools) {
    // TOOL_FORMS below: git's, PostgreSQL's, date -Ihours, a decimal comma, white space around.
    out.push([`${date} ${time} ${sign}${oh}${om}`, at], [` ${out[0][0]}\n`, at]);
    if (om === '00') out.push([`${date} ${time}${sign}${oh}`, at]);
    if (mi === 0 && s === 0 && !frac) out.push([`${date}T${p2(h)}${sign}${oh}:${om}`, at]);
    if (frac) out.push([out[0][0].replace('.', ','), at]);
  }
  return out;
}

/** Times around one midnight (31 May to 1 June 2026 UTC), in every form each can take. */
function corpus(tools = false): [string, At][] {
  const r = rng(978);
  const out: [string, At][] = [];
  const offs = [0, 0, 60, -60, 330, -330, 840, -720, 1439];
  // The midnight itself, a leap second before it, the same wall-clock times in other zones, and random times near it.
  out.push(...forms(2026, 6, 1, 0, 0, 0, '', 0, tools), ...forms(2026, 5, 31, 23, 59, 60, '', 0, tools), ...forms(2026, 5, 31, 23, 59, 60, '5', 0, tools));
  out.push(...forms(2026, 5, 31, 23, 59, 59, '999999999', 0, tools), ...forms(2026, 6, 1, 0, 0, 0, '000000001', 0, tools));
  for (const off of offs) out.push(...forms(2026, 6, 1, 0, 0, 0, '', off, tools), ...forms(2026, 6, 1, 0, 30, 0, '', off, tools));
  for (let i = 0; i < 40; i++) {
    const day = r() < 0.5 ? 31 : 1;
    const frac =
      r() < 0.5
        ? ''
        : String(Math.floor(r() * 1e6))
            .padStart(6, '0')
            .slice(0, 1 + Math.floor(r() * 6));
    out.push(
      ...forms(
        2026,
        day === 31 ? 5 : 6,
        day,
        Math.floor(r() * 24),
        Math.floor(r() * 60),
        Math.floor(r() * 60),
        frac,
        offs[Math.floor(r() * offs.length)],
        tools,
      ),
    );
  }
  return out;
}

describe('holds: olderThan across the forms it reads', () => {
  it('orders every pair of forms as the instants they name (date-only, no zone, offsets, hh:mm, space, lower case, fractions, leap seconds)', () => {
    const all = corpus();
    expect(all.length).toBeGreaterThan(300);
    const wrong: string[] = [];
    for (const [a, at] of all)
      for (const [b, bt] of all) {
        const want = cmp(at, bt) < 0;
        if (olderThan(a, b) !== want) wrong.push(`olderThan(${a}, ${b}) = ${!want}`);
      }
    expect(wrong.slice(0, 10)).toEqual([]);
  });

  it('compares every pair of RFC 3339 times as before the change', () => {
    const rfc = corpus()
      .map(([s]) => s)
      .filter((s) => normTime(s) !== null);
    expect(rfc.length).toBeGreaterThan(100);
    const junk = ['', 'yesterday', '2027-13-01T00:00:00Z', '2026-06-01T10:60:00Z'];
    for (const a of [...rfc, ...junk]) for (const b of rfc) expect(olderThan(a, b), `${a} vs ${b}`).toBe(before(a, b));
    for (const a of rfc) for (const b of junk) expect(olderThan(a, b)).toBe(false);
  });
});

/**
 * Times as tools write them that olderThan does not read: `git log --date=iso` (a space before a
 * basic offset), PostgreSQL's timestamptz as text (an hour-only offset), ISO 8601's decimal comma,
 * and a time with white space around it (hand-edited JSON). Read as no time, such a stored copy is
 * replaced by any older copy, and such a newer copy is left out as older than any stored one.
 */
const TOOL_FORMS: [string, string][] = [
  ['git log --date=iso', '2026-06-01 10:00:00 +0000'],
  ['git log --date=iso, west of UTC', '2026-06-01 05:00:00 -0500'],
  ['PostgreSQL timestamptz::text', '2026-06-01 10:00:00+00'],
  ['PostgreSQL timestamptz::text with microseconds', '2026-06-01 10:00:00.123456+00'],
  ['PostgreSQL timestamptz::text east of UTC', '2026-06-01 12:00:00+02'],
  ['date -Ihours', '2026-06-01T10+00:00'],
  ['ISO 8601 decimal comma', '2026-06-01T10:00:00,5Z'],
  ['a trailing newline', '2026-06-01T10:00:00Z\n'],
  ['a leading space, a date alone', ' 2026-06-01'],
];

describe('break: times as tools write them', () => {
  it('an older copy never replaces a stored one in these forms; a newer copy always replaces one', () => {
    const wrong: string[] = [];
    for (const [name, t] of TOOL_FORMS) {
      if (!olderThan('2026-05-01T00:00:00Z', t)) wrong.push(`${name}: an older copy replaces a stored ${JSON.stringify(t)}`);
      if (olderThan(t, '2026-05-01T00:00:00Z')) wrong.push(`${name}: a newer ${JSON.stringify(t)} is left out over an older stored copy`);
      if (!olderThan(t, '2026-07-01T00:00:00Z')) wrong.push(`${name}: ${JSON.stringify(t)} replaces a newer stored copy`);
    }
    expect(wrong).toEqual([]);
  });

  it('they order with every other form as the instants they name', () => {
    const all = corpus(true);
    const wrong: string[] = [];
    for (const [a, at] of all)
      for (const [b, bt] of all) {
        const want = cmp(at, bt) < 0;
        if (olderThan(a, b) !== want) wrong.push(`olderThan(${JSON.stringify(a)}, ${JSON.stringify(b)}) = ${!want}`);
      }
    expect(all.length).toBeGreaterThan(500);
    expect(wrong.slice(0, 10)).toEqual([]);
  });

  it('an import of an old checkout does not roll back a record dated by git log --date=iso (SQLite)', async () => {
    const meta = new SqliteMetaStore(join(dir, 'git.db'));
    await importAdvisories(meta, tree(dir, 'git-held', [['G.json', copy('GHSA-git', '2026-06-01 10:00:00 +0000', 'held')]]));
    const r = await importAdvisories(meta, tree(dir, 'git-old', [['G.json', copy('GHSA-git', '2025-01-01T00:00:00Z', 'old')]]));
    expect(r).toMatchObject({ changed: 0, older: 1 });
    expect((await storedOf(meta, 'GHSA-git'))?.summary).toBe('held');
    await meta.close();
  });
});
