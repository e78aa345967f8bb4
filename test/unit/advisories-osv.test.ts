import { describe, expect, it } from 'vitest';
import { checkOsvRecord, modifiedSince, normTime } from '../../src/advisories/osv.js';

describe('OSV feed parsing (advisories/osv.ts)', () => {
  it('normalises RFC 3339 times to fixed-width UTC, keeping microseconds, so they compare as strings', () => {
    expect(normTime('2026-12-03T10:00:00Z')).toBe('2026-12-03T10:00:00.000000000Z');
    expect(normTime('2026-12-03T10:00:00.123456Z')).toBe('2026-12-03T10:00:00.123456000Z');
    expect(normTime('2026-12-03T12:00:00.5+02:00')).toBe('2026-12-03T10:00:00.500000000Z');
    expect(normTime('2026-12-03T10:00:00.000001Z')! > normTime('2026-12-03T10:00:00Z')!).toBe(true);
    for (const bad of ['2026-12-03', '2026-12-03 10:00:00Z', 'yesterday', '2026-13-45T99:00:00Z']) expect(normTime(bad)).toBeNull();
  });

  it("reads modified_id.csv: the lines at or after the mark, whatever their order, with osv.dev's optional prefix and header", () => {
    const csv = 'modified,id\n2026-12-03T10:00:00.5Z,GHSA-new\n2026-12-01T00:00:00Z,PyPI/PYSEC-old\n2026-12-02T00:00:00Z,PYSEC-mid\n\n';
    expect(modifiedSince(csv, normTime('2026-12-01T00:00:00.000001Z'))).toEqual([
      { id: 'GHSA-new', modified: '2026-12-03T10:00:00.500000000Z' },
      { id: 'PYSEC-mid', modified: '2026-12-02T00:00:00.000000000Z' },
    ]);
    expect(modifiedSince(csv, null).map((e) => e.id)).toEqual(['GHSA-new', 'PYSEC-old', 'PYSEC-mid']);
    // A record at the mark itself is listed again (times are not unique: one may have appeared since the last sync).
    expect(modifiedSince(csv, normTime('2026-12-03T10:00:00.5Z')).map((e) => e.id)).toEqual(['GHSA-new']);
    expect(modifiedSince(csv, normTime('2026-12-03T10:00:00.6Z'))).toEqual([]);
  });

  it('refuses a CSV line that is not a time and an id, or whose id would leave the ecosystem directory', () => {
    expect(() => modifiedSince('2026-12-03T10:00:00Z,GHSA-1\nnot a line\n', null)).toThrow(/modified_id\.csv line 2: expected "<RFC 3339 time>,<id>"/);
    expect(() => modifiedSince('2026-12-03T10:00:00Z,..\n', null)).toThrow(/line 1/);
    expect(() => modifiedSince('2026-12-03T10:00:00Z,GHSA-1?x=1\n', null)).toThrow(/line 1/);
  });

  it('checks a record against the OSV schema parts Airlock relies on', () => {
    const ok = {
      id: 'GHSA-1',
      modified: '2026-12-03T10:00:00Z',
      affected: [{ package: { ecosystem: 'PyPI', name: 'x' }, ranges: [{ type: 'ECOSYSTEM', events: [] }], versions: ['1'] }],
    };
    expect(checkOsvRecord(JSON.stringify(ok), 'f')).toEqual(ok);
    const bad: [unknown, RegExp][] = [
      ['{', /f: not JSON/],
      [[], /not a JSON object/],
      [{ modified: ok.modified }, /no valid "id"/],
      [{ id: '../x', modified: ok.modified }, /no valid "id"/],
      [{ id: 'A', modified: 'soon' }, /A: "modified" is not an RFC 3339 time/],
      [{ id: 'A' }, /"modified"/],
      [{ ...ok, withdrawn: 5 }, /"withdrawn"/],
      [{ ...ok, affected: {} }, /"affected" is not an array/],
      [{ ...ok, affected: ['x'] }, /an "affected" entry is not an object/],
      [{ ...ok, affected: [{ package: { name: 3 } }] }, /package is not an object of strings/],
      [{ ...ok, affected: [{ ranges: [{ type: 'SEMVER' }] }] }, /"ranges" is not a list of ranges with events/],
      [{ ...ok, affected: [{ versions: [1] }] }, /"versions" is not a list of strings/],
      [{ ...ok, aliases: 'CVE-1' }, /"aliases"/],
    ];
    for (const [rec, why] of bad) expect(checkOsvRecord(typeof rec === 'string' ? rec : JSON.stringify(rec), 'f')).toMatch(why);
  });
});
