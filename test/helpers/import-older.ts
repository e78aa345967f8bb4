import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { importAdvisories, type ImportResult } from '../../src/cli/advisories.js';
import type { FeedSource } from '../../src/advisories/feed.js';
import type { OsvFeedServer } from './osv-feed.js';
import type { AdvisoryStore } from '../../src/storage/meta-store.js';
import { writeZip } from './zip-writer.js';

/**
 * What the attacks on `airlock advisories import`'s older-copy rule (053bb51) share, on SQLite
 * (test/unit/break-import-older*.test.ts) and PostgreSQL (test/integration/break-import-older-pg.test.ts).
 */

/** A record of `id` whose `modified` is `modified` (left out when undefined), tagged so the copies differ. */
export function copy(id: string, modified: unknown, tag: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    ...(modified === undefined ? {} : { modified }),
    summary: tag,
    affected: [{ package: { ecosystem: 'PyPI', name: `p-${id.toLowerCase()}` }, versions: ['1.0'] }],
    ...extra,
  };
}

/** What an import must do with a copy given over a stored one. */
export type Outcome = 'left' | 'written' | 'skipped';
export interface OddCase {
  name: string;
  /** The stored copy's `modified` (undefined: the record has none). */
  held: string | undefined;
  given: unknown;
  expect: Outcome;
}

/** `modified` values an import meets, against the stored copy's: RFC 3339 times in every form, none, and not times. */
export const ODD_MODIFIED: OddCase[] = [
  { name: 'an offset whose UTC time is earlier', held: '2026-06-01T00:00:00Z', given: '2026-06-01T02:00:00+03:00', expect: 'left' },
  { name: 'greater as a string but earlier in UTC', held: '2026-06-01T00:00:00Z', given: '2026-06-01T01:00:00+05:00', expect: 'left' },
  { name: 'smaller as a string but later in UTC', held: '2026-06-01T00:00:00Z', given: '2026-05-31T23:30:00-01:00', expect: 'written' },
  { name: 'the same instant in another zone, other contents', held: '2026-06-01T00:00:00Z', given: '2026-06-01T01:00:00+01:00', expect: 'written' },
  { name: 'the held time in an offset, the given in Z, later', held: '2026-06-01T05:00:00+05:00', given: '2026-06-01T00:00:01Z', expect: 'written' },
  { name: '-00:00, a second earlier', held: '2026-06-01T00:00:00Z', given: '2026-05-31T23:59:59-00:00', expect: 'left' },
  { name: 'a microsecond earlier', held: '2026-06-01T00:00:00.000001Z', given: '2026-06-01T00:00:00Z', expect: 'left' },
  { name: 'a nanosecond earlier', held: '2026-06-01T00:00:00.000000002Z', given: '2026-06-01T00:00:00.000000001Z', expect: 'left' },
  { name: 'a fraction earlier, in an offset', held: '2026-06-01T00:00:00.5Z', given: '2026-06-01T02:00:00.4+02:00', expect: 'left' },
  { name: 'the same fraction in other digits', held: '2026-06-01T00:00:00.5Z', given: '2026-06-01T00:00:00.500000000Z', expect: 'written' },
  { name: 'later below the millisecond Date keeps', held: '2026-06-01T00:00:00.0001Z', given: '2026-06-01T00:00:00.00011Z', expect: 'written' },
  { name: 'lower-case t and z, later', held: '2026-06-01T00:00:00Z', given: '2026-06-02t00:00:00z', expect: 'written' },
  { name: 'lower-case t and z, earlier', held: '2026-06-02T00:00:00Z', given: '2026-06-01t00:00:00z', expect: 'left' },
  { name: 'across new year in an offset, later', held: '2026-01-01T00:30:00+01:00', given: '2025-12-31T23:45:00Z', expect: 'written' },
  { name: 'across new year in an offset, earlier', held: '2025-12-31T23:45:00Z', given: '2026-01-01T00:30:00+01:00', expect: 'left' },
  { name: '29 February, the last nanosecond before it', held: '2024-02-29T00:00:00Z', given: '2024-02-28T23:59:59.999999999Z', expect: 'left' },
  { name: 'the same time, other contents', held: '2026-06-01T00:00:00Z', given: '2026-06-01T00:00:00Z', expect: 'written' },
  { name: 'no modified over a time', held: '2026-06-01T00:00:00Z', given: undefined, expect: 'left' },
  { name: 'modified null over a time', held: '2026-06-01T00:00:00Z', given: null, expect: 'left' },
  { name: 'modified "" over a time', held: '2026-06-01T00:00:00Z', given: '', expect: 'left' },
  { name: 'not a time over a time', held: '2026-06-01T00:00:00Z', given: 'yesterday', expect: 'left' },
  { name: 'month 13 (not a time) over a time', held: '2026-06-01T00:00:00Z', given: '2027-13-01T00:00:00Z', expect: 'left' },
  { name: 'a time over no modified', held: undefined, given: '2020-01-01T00:00:00Z', expect: 'written' },
  { name: 'none over none, other contents', held: undefined, given: undefined, expect: 'written' },
  { name: 'a time over not a time', held: 'yesterday', given: '2020-01-01T00:00:00Z', expect: 'written' },
  { name: 'a number', held: '2026-06-01T00:00:00Z', given: 20270101, expect: 'skipped' },
  { name: 'a boolean', held: '2026-06-01T00:00:00Z', given: true, expect: 'skipped' },
  { name: 'an object', held: '2026-06-01T00:00:00Z', given: { t: '2027-01-01T00:00:00Z' }, expect: 'skipped' },
];

export const caseId = (i: number) => `GHSA-odd-${String(i).padStart(3, '0')}`;

/** A directory of `files` (name to record) under `root`/`name`. */
export function tree(root: string, name: string, files: [string, unknown][]): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  for (const [f, body] of files) {
    mkdirSync(dirname(join(d, f)), { recursive: true });
    writeFileSync(join(d, f), typeof body === 'string' ? body : JSON.stringify(body));
  }
  return d;
}

/** `files` as an osv.dev-style zip at `root`/`name`. */
export function zipOf(root: string, name: string, files: [string, unknown][]): string {
  const p = join(root, name);
  writeFileSync(p, writeZip(files.map(([n, b]) => ({ name: n, data: typeof b === 'string' ? b : JSON.stringify(b) }))));
  return p;
}

export type Form = 'directory' | 'zip' | 'one .json each';
export const FORMS: Form[] = ['directory', 'zip', 'one .json each'];

/** Import `files` in `form`: one import of a tree or a zip, or one import per file (the results summed). */
export async function importAs(meta: AdvisoryStore, root: string, name: string, form: Form, files: [string, unknown][]): Promise<ImportResult> {
  if (form === 'directory') return importAdvisories(meta, tree(root, name, files));
  if (form === 'zip') return importAdvisories(meta, zipOf(root, `${name}.zip`, files));
  const sum: ImportResult = { read: 0, changed: 0, withdrawn: 0, older: 0, skipped: [] };
  const d = tree(root, name, files);
  for (const [f] of files) {
    const r = await importAdvisories(meta, join(d, f));
    sum.read += r.read;
    sum.changed += r.changed;
    sum.withdrawn += r.withdrawn;
    sum.older += r.older;
    sum.skipped.push(...r.skipped);
  }
  return sum;
}

/** The stored record of `id`, parsed (undefined when none). */
export async function storedOf(meta: AdvisoryStore, id: string): Promise<Record<string, unknown> | undefined> {
  for (const r of await meta.listAdvisories()) {
    const o = JSON.parse(r) as Record<string, unknown>;
    if (o.id === id) return o;
  }
  return undefined;
}

/**
 * Every case of ODD_MODIFIED over `meta` in `form`: the held copies stored first (by an import with
 * --replace, as an earlier import or a feed would have), then the given copies imported. Returns the
 * result and, per case, what the store holds after.
 */
export async function runOdd(meta: AdvisoryStore, root: string, tag: string, form: Form) {
  const held: [string, unknown][] = ODD_MODIFIED.map((c, i) => [`${caseId(i)}.json`, copy(caseId(i), c.held, 'held')]);
  const first = await importAdvisories(meta, tree(root, `${tag}-held`, held), { replace: true });
  const given: [string, unknown][] = ODD_MODIFIED.map((c, i) => [`${caseId(i)}.json`, copy(caseId(i), c.given, 'given')]);
  const res = await importAs(meta, root, `${tag}-given`, form, given);
  const all = new Map((await meta.listAdvisories()).map((r) => [(JSON.parse(r) as { id: string }).id, JSON.parse(r) as Record<string, unknown>]));
  const after = ODD_MODIFIED.map((c, i) => ({ name: c.name, expect: c.expect, summary: all.get(caseId(i))?.summary }));
  return { first, res, after };
}

/** How many of ODD_MODIFIED's cases end as `o`. */
export const oddCount = (o: Outcome) => ODD_MODIFIED.filter((c) => c.expect === o).length;

/** A PYSEC id numbered `i`. */
export const pad = (i: number) => `PYSEC-2026-${String(i).padStart(4, '0')}`;

/** The loopback export's source `name` (full syncs only). */
export const sourceOn = (feed: OsvFeedServer, name: string): FeedSource => ({ name, url: feed.url, ecosystem: 'PyPI', incremental: false });

/** The loopback export answers all.zip with `recs` (and only for an ecosystem it holds records of: PyPI). */
export function serveZipOn(feed: OsvFeedServer, recs: Record<string, unknown>[]): void {
  const z = writeZip(recs.map((r) => ({ name: `${r.id as string}.json`, data: JSON.stringify(r) })));
  feed.zip = () => z;
  if (!feed.records.has('PyPI')) feed.records.set('PyPI', new Map());
}
