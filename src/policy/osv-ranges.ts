import { compare, valid } from '@renovatebot/pep440';
import { compareVersions, schemeOf } from '../versions/index.js';

/** A version order an OSV ECOSYSTEM range is evaluated in. */
export interface VersionOrder {
  valid(v: string): boolean;
  compare(a: string, b: string): number;
}

export const PEP440: VersionOrder = { valid: (v) => valid(v) !== null, compare };

/** The OS package orders, by OSV ecosystem (Debian:12, Alpine:v3.20, ...). */
export function orderOf(ecosystem: string): VersionOrder | null {
  const scheme = schemeOf(ecosystem);
  return scheme ? { valid: (v) => v.length > 0, compare: (a, b) => compareVersions(scheme, a, b) } : null;
}

/**
 * OSV's IsVulnerable for one ECOSYSTEM range in a version order: events sorted by version;
 * introduced ("0" = the beginning) makes a version affected, fixed (>=) or last_affected (>)
 * makes it not, and a limit bounds the range. Also returns the fix: the lowest fixed version above.
 */
export function rangeVerdict(order: VersionOrder, version: string, events: Record<string, string>[]): { affected: boolean; fixed?: string } {
  const evs = events
    .map((e) => {
      const [kind, ver] = Object.entries(e)[0] ?? [];
      return { kind, ver };
    })
    .filter((e) => e.kind && e.ver !== undefined && (e.ver === '0' || e.ver === '*' || order.valid(e.ver)));
  evs.sort((x, y) => (x.ver === '0' ? -1 : y.ver === '0' ? 1 : x.ver === '*' ? 1 : y.ver === '*' ? -1 : order.compare(x.ver, y.ver)));
  let affected = false;
  for (const e of evs) {
    if (e.kind === 'introduced') {
      if (e.ver === '0' || order.compare(version, e.ver) >= 0) affected = true;
    } else if (e.kind === 'fixed') {
      if (order.compare(version, e.ver) >= 0) affected = false;
    } else if (e.kind === 'last_affected') {
      if (order.compare(version, e.ver) > 0) affected = false;
    } else if (e.kind === 'limit') {
      if (e.ver !== '*' && order.compare(version, e.ver) >= 0) affected = false;
    }
  }
  if (!affected) return { affected };
  const fixed = evs.find((e) => e.kind === 'fixed' && order.compare(e.ver, version) > 0)?.ver;
  return fixed ? { affected, fixed } : { affected };
}

/** IsVulnerable under PEP 440 (PyPI). */
export function inRange(version: string, events: Record<string, string>[]): boolean {
  return rangeVerdict(PEP440, version, events).affected;
}
