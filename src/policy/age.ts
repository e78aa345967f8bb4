import { PolicyError, pathString } from './types.js';

/**
 * Minimum age ("cooldown", issue 27): a release is served only once it has been public for
 * `min_age`, and never when it was published after `exclude_newer`. Pure: the caller passes the
 * publication time and `now`; nothing here reads a clock.
 */

const UNITS: Record<string, number> = { w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 };
const DURATION = /^(?:\d+[wdhms])+$/;

/** A duration such as "7d", "36h", "1d12h" or "0" in milliseconds; a PolicyError naming `path` otherwise. */
export function parseDuration(s: unknown, path: (string | number)[]): number {
  const t = typeof s === 'number' && s === 0 ? '0' : typeof s === 'string' ? s.trim() : '';
  if (t === '0') return 0;
  if (!DURATION.test(t))
    throw new PolicyError(path, `bad duration ${JSON.stringify(s)}: expected a number and a unit (w, d, h, m, s), such as "7d", "36h" or "1d12h", or 0`);
  let ms = 0;
  for (const m of t.matchAll(/(\d+)([wdhms])/g)) ms += Number(m[1]) * UNITS[m[2]];
  if (!Number.isSafeInteger(ms)) throw new PolicyError(path, `bad duration ${JSON.stringify(s)}: too long`);
  return ms;
}

/** RFC 3339: a date and time with a zone (Z or ±hh:mm), fractions of a second allowed. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 time in epoch milliseconds, or null when it is not one (an upstream's upload time). */
export function parseInstant(s: unknown): number | null {
  if (typeof s !== 'string' || !RFC3339.test(s)) return null;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : null;
}

/** The policy's `exclude_newer`: an RFC 3339 time, or a PolicyError naming `path`. */
export function checkInstant(s: unknown, path: (string | number)[]): number {
  const t = parseInstant(s);
  if (t === null) throw new PolicyError(path, `bad time ${JSON.stringify(s)}: expected an RFC 3339 date and time with a zone, such as "2026-01-31T00:00:00Z"`);
  return t;
}

/** A duration for people: "3d 4h", "5h 12m", "40s". */
export function formatAge(ms: number): string {
  if (ms < 0) return `${formatAge(-ms)} in the future`;
  const d = Math.floor(ms / 86_400_000);
  const h = Math.floor((ms % 86_400_000) / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return `${m}m`;
  return `${Math.floor(ms / 1000)}s`;
}

export interface AgeInput {
  min_age?: string | number;
  exclude_newer?: string;
}

/** What an ecosystem's (or one rule's) age settings compile to; `from` names the rule each came from. */
export interface AgeRule {
  minAge: number;
  minAgeFrom: string;
  excludeNewer: number | null;
  excludeNewerFrom: string;
  /** What to do when the upstream gives no time: refuse (fail closed, the default) or allow. */
  onMissing: 'refuse' | 'allow';
  onMissingFrom: string;
}

export const NO_AGE: AgeRule = { minAge: 0, minAgeFrom: '', excludeNewer: null, excludeNewerFrom: '', onMissing: 'allow', onMissingFrom: '' };

/** An ecosystem's settings (`pypi.min_age`, ...): `base` is its path, e.g. ["pypi"]. */
export function compileAge(input: AgeInput & { on_missing_time?: string }, base: (string | number)[]): AgeRule {
  const minAge = input.min_age === undefined ? 0 : parseDuration(input.min_age, [...base, 'min_age']);
  const excludeNewer = input.exclude_newer === undefined ? null : checkInstant(input.exclude_newer, [...base, 'exclude_newer']);
  const om = input.on_missing_time ?? 'refuse';
  if (om !== 'refuse' && om !== 'allow') throw new PolicyError([...base, 'on_missing_time'], `expected "refuse" or "allow", got ${JSON.stringify(om)}`);
  return {
    minAge,
    minAgeFrom: pathString([...base, 'min_age']),
    excludeNewer,
    excludeNewerFrom: pathString([...base, 'exclude_newer']),
    onMissing: om,
    onMissingFrom: pathString([...base, 'on_missing_time']),
  };
}

/** One rule's overrides over its ecosystem's settings (`pypi.allow[3].min_age`). */
export function overrideAge(eco: AgeRule, input: AgeInput, base: (string | number)[]): AgeRule {
  if (input.min_age === undefined && input.exclude_newer === undefined) return eco;
  const r = { ...eco };
  if (input.min_age !== undefined) {
    r.minAge = parseDuration(input.min_age, [...base, 'min_age']);
    r.minAgeFrom = pathString([...base, 'min_age']);
  }
  if (input.exclude_newer !== undefined) {
    r.excludeNewer = checkInstant(input.exclude_newer, [...base, 'exclude_newer']);
    r.excludeNewerFrom = pathString([...base, 'exclude_newer']);
  }
  return r;
}

export function ageApplies(r: AgeRule): boolean {
  return r.minAge > 0 || r.excludeNewer !== null;
}

/**
 * The age verdict for one artefact published at `published` (epoch ms; null when the upstream
 * gave no time): null when old enough, else why not and, for min_age, when it will be
 * (`until`, so a page filtered now knows when to filter again).
 */
export function judgeAge(
  r: AgeRule,
  what: string,
  published: number | null,
  now: number,
  verb = 'was published',
): { reason: string; rule: string; until: number | null } | null {
  if (!ageApplies(r)) return null;
  if (published === null) {
    if (r.onMissing === 'allow') return null;
    return {
      rule: r.onMissingFrom,
      until: null,
      reason: `${what}: the upstream gives no upload time, so its age cannot be checked against the minimum age (policy ${r.onMissingFrom}: refuse, the default)`,
    };
  }
  const when = () => new Date(published).toISOString();
  if (r.excludeNewer !== null && published > r.excludeNewer) {
    return {
      rule: r.excludeNewerFrom,
      until: null,
      reason: `${what} ${verb} ${when()}, after ${new Date(r.excludeNewer).toISOString()} (policy ${r.excludeNewerFrom})`,
    };
  }
  if (r.minAge > 0 && now - published < r.minAge) {
    return {
      rule: r.minAgeFrom,
      until: published + r.minAge,
      reason: `${what} ${verb} ${when()}, ${formatAge(now - published)} ago, younger than the minimum age ${formatAge(r.minAge)} (policy ${r.minAgeFrom}); it is served from ${new Date(published + r.minAge).toISOString()}`,
    };
  }
  return null;
}
