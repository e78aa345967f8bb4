import type { OsvRecord } from '../policy/advisories.js';

/** An OSV id as it may appear in a URL path segment of the export (no slashes, no dot segments). */
const ID = /^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$/;
/** The `<ecosystem>/` prefix osv.dev may put on an id in modified_id.csv: one directory name (config/advisories-schema.ts). */
const PREFIX = /^[A-Za-z0-9][A-Za-z0-9 .:_-]{0,63}$/;
const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i;

/**
 * An RFC 3339 time as a fixed-width UTC string (nanoseconds), so times compare as strings without
 * losing osv.dev's microseconds to Date's milliseconds; null when it is not RFC 3339. RFC 3339 allows
 * a leap second (:60, the last of its minute: after every :59.x) and any number of fraction digits
 * (past nine, cut): taken as not a time, a newer copy at one was left out as older than any.
 */
export function normTime(s: string): string | null {
  const m = RFC3339.exec(s);
  if (!m) return null;
  const leap = m[2] === '60';
  const d = new Date(`${m[1]}:${leap ? '59' : m[2]}${m[4].toUpperCase()}`);
  if (Number.isNaN(d.getTime())) return null;
  return `${d.toISOString().slice(0, 19)}.${leap ? '999999999' : (m[3] ?? '').slice(0, 9).padEnd(9, '0')}Z`;
}

/**
 * ISO 8601 forms a record written by hand may carry instead: a date alone, a time with no zone or
 * with hours and minutes only (or hours only: `date -Ihours`), a basic offset (+0000) or one of hours
 * alone (+00: PostgreSQL's timestamptz as text), a space before the offset (`git log --date=iso`), a
 * decimal comma. White space around the whole is ignored (a hand-edited file).
 */
const ISO_BY_HAND = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d(?::\d\d(?::\d\d)?)?)(?:[.,](\d+))? ?(Z|[+-]\d\d(?::?\d\d)?)?)?$/i;

/**
 * A record's time as normTime gives it, also for the ISO 8601 forms of ISO_BY_HAND (a date is its
 * midnight, a time with no zone is UTC, as OSV's times are): what an import compares, so a record
 * written by hand and dated "2026-06-01" is not rolled back by an older copy. Null for anything else.
 */
function timeOf(s: string): string | null {
  const t = normTime(s);
  if (t !== null) return t;
  const m = ISO_BY_HAND.exec(s.trim());
  if (!m) return null;
  // A fraction needs seconds (10:30,5 is not read as half a minute: no time).
  if (m[3] !== undefined && (m[2] ?? '').length !== 8) return null;
  const time = `${(m[2] ?? '00').padEnd(8, ':00').slice(0, 8)}${m[3] !== undefined ? `.${m[3]}` : ''}`;
  const z = m[4] ?? 'Z';
  const zone = z.length === 1 ? z : z.length === 3 ? `${z}:00` : z.length === 5 ? `${z.slice(0, 3)}:${z.slice(3)}` : z;
  return normTime(`${m[1]}T${time}${zone}`);
}

/**
 * Whether a copy of a record modified at `given` is older than one modified at `held` (both as the
 * records gave them): then it must not replace it (storage/meta-store.ts OlderThan). Times are read
 * by timeOf; a `held` that is no time is replaced, a `given` that is no time is older than any.
 */
export function olderThan(given: string, held: string): boolean {
  const h = timeOf(held);
  return h !== null && (timeOf(given) ?? '') < h;
}

/**
 * A feed record checked against the parts of the OSV schema Airlock relies on: an id, a modified
 * time, `affected` an array of objects (each package an object with string fields, ranges and
 * versions arrays), `withdrawn` a time when present. Returns why not, or the record.
 */
export function checkOsvRecord(text: string, where: string): OsvRecord | string {
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch {
    return `${where}: not JSON`;
  }
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return `${where}: not a JSON object`;
  const r = rec as Record<string, unknown>;
  if (typeof r.id !== 'string' || !ID.test(r.id)) return `${where}: no valid "id"`;
  if (typeof r.modified !== 'string' || !normTime(r.modified)) return `${where}: ${r.id}: "modified" is not an RFC 3339 time`;
  if (r.withdrawn !== undefined && (typeof r.withdrawn !== 'string' || !normTime(r.withdrawn))) return `${where}: ${r.id}: "withdrawn" is not an RFC 3339 time`;
  if (r.aliases !== undefined && !(Array.isArray(r.aliases) && r.aliases.every((a) => typeof a === 'string')))
    return `${where}: ${r.id}: "aliases" is not a list of ids`;
  if (r.affected !== undefined) {
    if (!Array.isArray(r.affected)) return `${where}: ${r.id}: "affected" is not an array`;
    for (const a of r.affected as unknown[]) {
      if (!a || typeof a !== 'object' || Array.isArray(a)) return `${where}: ${r.id}: an "affected" entry is not an object`;
      const { package: p, ranges, versions } = a as Record<string, unknown>;
      if (p !== undefined && (!p || typeof p !== 'object' || Object.values(p).some((v) => typeof v !== 'string')))
        return `${where}: ${r.id}: an "affected" package is not an object of strings`;
      if (
        ranges !== undefined &&
        !(Array.isArray(ranges) && ranges.every((x) => x && typeof x === 'object' && Array.isArray((x as { events?: unknown }).events)))
      )
        return `${where}: ${r.id}: "ranges" is not a list of ranges with events`;
      if (versions !== undefined && !(Array.isArray(versions) && versions.every((v) => typeof v === 'string')))
        return `${where}: ${r.id}: "versions" is not a list of strings`;
    }
  }
  return r as unknown as OsvRecord;
}

/**
 * modified_id.csv, osv.dev's per-ecosystem index: one `<RFC 3339 modified>,<id>` line per record,
 * newest first (a header line, blank lines and an `<ecosystem>/` prefix on the id are tolerated).
 * Returns the entries at or after `since` (all when null; every line is read, the order is not trusted):
 * records at the mark itself are listed again, since osv.dev's times are not unique and one listed after
 * the last sync may share the mark's time (the store skips a record it already holds unchanged).
 * Throws on a line that is neither, whose prefix is not `ecosystem` (when given) or not one path segment,
 * or whose time is after `notAfter` (normalised; a time in the future would hold the mark past later changes).
 */
export function modifiedSince(csv: string, since: string | null, opts: { ecosystem?: string; notAfter?: string } = {}): { id: string; modified: string }[] {
  const out: { id: string; modified: string }[] = [];
  const lines = csv.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || (i === 0 && /^[a-z_]+,[a-z_]+$/i.test(line))) continue;
    const comma = line.indexOf(',');
    const modified = comma > 0 ? normTime(line.slice(0, comma)) : null;
    const named = line.slice(comma + 1);
    const slash = named.lastIndexOf('/');
    const id = named.slice(slash + 1);
    const prefix = slash < 0 ? null : named.slice(0, slash);
    const badPrefix = prefix !== null && (!PREFIX.test(prefix) || prefix.includes('..') || (opts.ecosystem !== undefined && prefix !== opts.ecosystem));
    if (!modified || !ID.test(id) || badPrefix)
      throw new Error(
        `modified_id.csv line ${i + 1}: expected "<RFC 3339 time>,<id>"${opts.ecosystem ? ` of ${opts.ecosystem}` : ''}, got ${JSON.stringify(line.slice(0, 80))}`,
      );
    if (opts.notAfter !== undefined && modified > opts.notAfter)
      throw new Error(`modified_id.csv line ${i + 1}: ${id} is modified in the future (${modified})`);
    if (since !== null && modified < since) continue;
    out.push({ id, modified });
  }
  return out;
}
