import { compare, valid } from '@renovatebot/pep440';
import { normalizeName } from '../names/pypi.js';
import { compareVersions, schemeOf } from '../versions/index.js';
import { PolicyError } from './types.js';

/** The OSV fields Airlock reads (https://ossf.github.io/osv-schema/); everything else is kept as stored. */
export interface OsvRecord {
  id: string;
  modified?: string;
  withdrawn?: string;
  aliases?: string[];
  /** The records this one derives from (a Debian or Ubuntu record names its CVE here). */
  upstream?: string[];
  summary?: string;
  details?: string;
  severity?: { type: string; score: string }[];
  affected?: OsvAffected[];
  database_specific?: Record<string, unknown>;
}

interface OsvAffected {
  package?: { ecosystem?: string; name?: string; purl?: string };
  ranges?: { type?: string; events?: Record<string, string>[] }[];
  versions?: string[];
  severity?: { type: string; score: string }[];
  ecosystem_specific?: Record<string, unknown>;
  database_specific?: Record<string, unknown>;
}

export type SeverityLabel = 'LOW' | 'MEDIUM' | 'HIGH' | 'CRITICAL';
const ORDER: SeverityLabel[] = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];

export interface AdvisoryMatch {
  id: string;
  /** Other names of the advisory: its aliases and the upstream records it derives from (a Debian record's CVE). */
  aliases: string[];
  summary: string;
  malicious: boolean;
  severity: { score?: number; label?: SeverityLabel };
  /** The lowest fixed version above the one matched, when the record names one. */
  fixed?: string;
}

export type RefuseLevel = 'none' | 'all' | 'low' | 'medium' | 'high' | 'critical';

const roundUp1 = (x: number) => {
  const i = Math.round(x * 100000);
  return i % 10000 === 0 ? i / 100000 : (Math.floor(i / 10000) + 1) / 10;
};

/** CVSS v3.0/3.1 base score from a vector string (FIRST specification, section 7). */
export function cvss3BaseScore(vector: string): number | undefined {
  const m = /^CVSS:3\.[01]\/(.*)$/.exec(vector.trim());
  if (!m) return undefined;
  const v: Record<string, string> = {};
  for (const part of m[1].split('/')) {
    const [k, val] = part.split(':');
    v[k] = val;
  }
  const AV = { N: 0.85, A: 0.62, L: 0.55, P: 0.2 }[v.AV];
  const AC = { L: 0.77, H: 0.44 }[v.AC];
  const UI = { N: 0.85, R: 0.62 }[v.UI];
  const scopeChanged = v.S === 'C';
  const PR = { N: 0.85, L: scopeChanged ? 0.68 : 0.62, H: scopeChanged ? 0.5 : 0.27 }[v.PR];
  const cia = (x: string) => ({ H: 0.56, L: 0.22, N: 0 })[x];
  const C = cia(v.C);
  const I = cia(v.I);
  const A = cia(v.A);
  if ([AV, AC, UI, PR, C, I, A].some((x) => x === undefined) || (v.S !== 'U' && v.S !== 'C')) return undefined;
  const iss = 1 - (1 - C!) * (1 - I!) * (1 - A!);
  const impact = scopeChanged ? 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 : 6.42 * iss;
  if (impact <= 0) return 0;
  const exploitability = 8.22 * AV! * AC! * PR! * UI!;
  return scopeChanged ? roundUp1(Math.min(1.08 * (impact + exploitability), 10)) : roundUp1(Math.min(impact + exploitability, 10));
}

function labelOf(score: number): SeverityLabel | undefined {
  if (score <= 0) return undefined;
  return score < 4 ? 'LOW' : score < 7 ? 'MEDIUM' : score < 9 ? 'HIGH' : 'CRITICAL';
}

function severityOf(rec: OsvRecord, a: OsvAffected): AdvisoryMatch['severity'] {
  for (const s of [...(a.severity ?? []), ...(rec.severity ?? [])]) {
    if (s.type === 'CVSS_V3') {
      const score = cvss3BaseScore(s.score);
      if (score !== undefined) return { score, label: labelOf(score) };
    }
  }
  // Ubuntu's records rate each CVE (negligible, low, medium, high, critical).
  for (const s of [...(a.severity ?? []), ...(rec.severity ?? [])]) {
    if (s.type === 'Ubuntu') {
      const up = s.score.toUpperCase() as SeverityLabel;
      if (ORDER.includes(up)) return { label: up };
    }
  }
  // Debian rates each package's exposure as an urgency (low, medium, high; "unimportant" counts as low).
  const urgency = a.ecosystem_specific?.urgency;
  if (typeof urgency === 'string') {
    const u = urgency.replace(/\*$/, '').toLowerCase();
    const label = u === 'unimportant' ? 'LOW' : (u.toUpperCase() as SeverityLabel);
    if (ORDER.includes(label)) return { label };
  }
  // GHSA records carry a qualitative label; PYSEC may carry one in ecosystem_specific.
  const raw = (rec.database_specific?.severity ?? a.ecosystem_specific?.severity) as string | undefined;
  if (typeof raw === 'string') {
    const up = raw.toUpperCase() === 'MODERATE' ? 'MEDIUM' : (raw.toUpperCase() as SeverityLabel);
    if (ORDER.includes(up)) return { label: up };
  }
  return {};
}

/** A version order an OSV ECOSYSTEM range is evaluated in. */
export interface VersionOrder {
  valid(v: string): boolean;
  compare(a: string, b: string): number;
}

const PEP440: VersionOrder = { valid: (v) => valid(v) !== null, compare };

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

interface Entry {
  rec: OsvRecord;
  aff: OsvAffected;
  versions: Set<string>;
}

/** Every sha256 a malicious-package record lists for the bad files (package_integrity indicators). */
function integrityHashes(v: unknown, out: Set<string>): void {
  if (!v || typeof v !== 'object') return;
  if (Array.isArray(v)) {
    v.forEach((x) => integrityHashes(x, out));
    return;
  }
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === 'sha256' && typeof x === 'string' && /^[0-9a-f]{64}$/i.test(x)) out.add(x.toLowerCase());
    else integrityHashes(x, out);
  }
}

/** An OS package as an image inventory lists it (the fields advisory matching reads). */
export interface OsPackage {
  name: string;
  version: string;
  source?: string;
  sourceVersion?: string;
}

/** Imported advisories, indexed for the pull path (pure; built from stored OSV records). */
export class Advisories {
  private readonly pypi = new Map<string, Entry[]>();
  /** OS packages by "<ecosystem>\0<name>" (Debian:12, Alpine:v3.20, Ubuntu:22.04:LTS, ...). */
  private readonly os = new Map<string, Entry[]>();
  private readonly osEcosystems = new Map<string, number>();
  private readonly hashes = new Map<string, OsvRecord>();
  private readonly byId = new Map<string, OsvRecord>();
  /** Severity of records by id and alias, for records that carry none of their own (Debian, Alpine). */
  private readonly severityByName = new Map<string, AdvisoryMatch['severity']>();
  withdrawn = 0;
  /** Ids, aliases and upstream ids of the withdrawn records, which are not held here (`find`). */
  private readonly withdrawnNames = new Set<string>();

  constructor(records: Iterable<OsvRecord> = []) {
    this.add(records);
  }

  /** Index more records (a reader builds it a page at a time, storage/advisory-pages.ts, before it is put in force). */
  add(records: Iterable<OsvRecord>): void {
    for (const rec of records) {
      if (rec.withdrawn) {
        this.withdrawn++;
        for (const n of [rec.id, ...(rec.aliases ?? []), ...(rec.upstream ?? [])]) this.withdrawnNames.add(n);
        continue;
      }
      this.byId.set(rec.id, rec);
      if (rec.modified && rec.modified > (this.newest ?? '')) this.newest = rec.modified;
      for (const a of rec.affected ?? []) {
        const eco = a.package?.ecosystem;
        if (!eco || !a.package?.name) continue;
        if (eco === 'PyPI') {
          const name = normalizeName(a.package.name);
          const list = this.pypi.get(name) ?? [];
          list.push({ rec, aff: a, versions: new Set(a.versions ?? []) });
          this.pypi.set(name, list);
        } else if (orderOf(eco)) {
          const key = `${eco}\0${a.package.name}`;
          const list = this.os.get(key) ?? [];
          list.push({ rec, aff: a, versions: new Set(a.versions ?? []) });
          this.os.set(key, list);
          this.osEcosystems.set(eco, (this.osEcosystems.get(eco) ?? 0) + 1);
        }
      }
      const sev = severityOf(rec, {});
      if (sev.label)
        for (const n of [rec.id, ...(rec.aliases ?? []), ...(rec.upstream ?? [])]) if (!this.severityByName.has(n)) this.severityByName.set(n, sev);
      if (rec.id.startsWith('MAL-')) {
        const hs = new Set<string>();
        integrityHashes(
          rec.affected?.map((a) => a.database_specific),
          hs,
        );
        integrityHashes(rec.database_specific, hs);
        for (const h of hs) this.hashes.set(h, rec);
      }
    }
  }

  get size(): number {
    return this.byId.size;
  }

  /** The newest `modified` among the records (ISO 8601): how fresh the imported data is. */
  newest: string | undefined;

  /** How many affected-package entries each OS ecosystem has (an image of an ecosystem with none cannot be judged). */
  osCoverage(ecosystem: string): number {
    return this.osEcosystems.get(ecosystem) ?? 0;
  }

  get(id: string): OsvRecord | undefined {
    return this.byId.get(id) ?? [...this.byId.values()].find((r) => (r.aliases ?? []).includes(id));
  }

  /**
   * The record with this id, else the first naming it among its aliases or upstream ids (what
   * `airlock affected` is asked). Undefined for a name a withdrawn record also bears: the store,
   * which holds it, answers (a withdrawn GHSA record that a live PYSEC record lists as an alias is
   * found by its id there, a CVE two records list by the first stored).
   */
  find(name: string): OsvRecord | undefined {
    if (this.withdrawnNames.has(name)) return undefined;
    return this.byId.get(name) ?? [...this.byId.values()].find((r) => [...(r.aliases ?? []), ...(r.upstream ?? [])].includes(name));
  }

  private matchOf(rec: OsvRecord, aff: OsvAffected, fixed?: string): AdvisoryMatch {
    let severity = severityOf(rec, aff);
    if (!severity.label) {
      // A Debian or Alpine record names the CVE it tracks; another imported record of it may rate it.
      for (const n of [rec.id, ...(rec.aliases ?? []), ...(rec.upstream ?? [])]) {
        const s = this.severityByName.get(n);
        if (s?.label) {
          severity = s;
          break;
        }
      }
    }
    const m: AdvisoryMatch = {
      id: rec.id,
      aliases: [...new Set([...(rec.aliases ?? []), ...(rec.upstream ?? [])])],
      summary: rec.summary ?? rec.details?.split('\n')[0] ?? '',
      malicious: rec.id.startsWith('MAL-'),
      severity,
    };
    if (fixed) m.fixed = fixed;
    return m;
  }

  private matchEntries(entries: Entry[] | undefined, order: VersionOrder, version: string, seen: Set<string>, out: AdvisoryMatch[]): void {
    for (const e of entries ?? []) {
      if (seen.has(e.rec.id)) continue;
      let hit = e.versions.has(version);
      let fixed: string | undefined;
      if (order.valid(version)) {
        for (const r of e.aff.ranges ?? []) {
          if (r.type !== 'ECOSYSTEM') continue;
          const v = rangeVerdict(order, version, r.events ?? []);
          if (v.affected) {
            hit = true;
            fixed ??= v.fixed;
          }
        }
      }
      if (hit) {
        seen.add(e.rec.id);
        out.push(this.matchOf(e.rec, e.aff, fixed));
      }
    }
  }

  /** Advisories affecting a PyPI release (exact versions list, or ECOSYSTEM ranges under PEP 440), and its file hash. */
  matchPypi(name: string, version: string, sha256?: string): AdvisoryMatch[] {
    const out: AdvisoryMatch[] = [];
    const seen = new Set<string>();
    this.matchEntries(this.pypi.get(normalizeName(name)), PEP440, version, seen, out);
    if (sha256) {
      const rec = this.hashes.get(sha256);
      if (rec && !seen.has(rec.id)) out.push(this.matchOf(rec, rec.affected?.[0] ?? {}));
    }
    return out;
  }

  /**
   * Advisories affecting an installed OS package in its release's ecosystem. Debian, Ubuntu and
   * Alpine file advisories under the source package (dpkg Source:, apk origin) at its version;
   * the binary name is tried as well (rpm-based ecosystems list binary packages).
   */
  matchOs(ecosystem: string, pkg: OsPackage): AdvisoryMatch[] {
    const order = orderOf(ecosystem);
    if (!order) return [];
    const out: AdvisoryMatch[] = [];
    const seen = new Set<string>();
    if (pkg.source && pkg.source !== pkg.name)
      this.matchEntries(this.os.get(`${ecosystem}\0${pkg.source}`), order, pkg.sourceVersion ?? pkg.version, seen, out);
    this.matchEntries(this.os.get(`${ecosystem}\0${pkg.name}`), order, pkg.name === pkg.source ? (pkg.sourceVersion ?? pkg.version) : pkg.version, seen, out);
    return out;
  }

  /** The packages an advisory names: PyPI names, and OS packages as "<ecosystem> <name>". */
  packagesOf(rec: OsvRecord): string[] {
    return [...new Set((rec.affected ?? []).filter((a) => a.package?.ecosystem === 'PyPI' && a.package.name).map((a) => normalizeName(a.package!.name!)))];
  }

  /** The OS packages an advisory names, with their ecosystems. */
  osPackagesOf(rec: OsvRecord): { ecosystem: string; name: string }[] {
    return (rec.affected ?? [])
      .filter((a) => a.package?.ecosystem && a.package.name && orderOf(a.package.ecosystem))
      .map((a) => ({ ecosystem: a.package!.ecosystem!, name: a.package!.name! }));
  }

  hashesOf(rec: OsvRecord): string[] {
    return [...this.hashes].filter(([, r]) => r.id === rec.id).map(([h]) => h);
  }
}

/** Whether a policy level refuses a match: MAL- records always, others at or above the level. */
export function refuses(level: RefuseLevel, m: AdvisoryMatch): boolean {
  if (m.malicious) return true;
  if (level === 'none') return false;
  if (level === 'all') return true;
  const need = ORDER.indexOf(level.toUpperCase() as SeverityLabel);
  const got = m.severity.label ? ORDER.indexOf(m.severity.label) : -1;
  return got >= need;
}

export function checkRefuseLevel(v: string, path: (string | number)[]): RefuseLevel {
  if (!['none', 'all', 'low', 'medium', 'high', 'critical'].includes(v))
    throw new PolicyError(path, `expected none, all, low, medium, high or critical, got ${JSON.stringify(v)}`);
  return v as RefuseLevel;
}
