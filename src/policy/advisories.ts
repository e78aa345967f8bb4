import { normalizeName } from '../names/pypi.js';
import { OsvIndex, prepare, type Entry, type Prepared } from './osv-index.js';
import { PEP440, orderOf, rangeVerdict, type VersionOrder } from './osv-ranges.js';
import { ORDER, severityOf, type OsvAffected, type OsvRecord, type Severity, type SeverityLabel } from './osv-record.js';
import { PolicyError } from './types.js';

export { inRange, orderOf, rangeVerdict, type VersionOrder } from './osv-ranges.js';
export { cvss3BaseScore, type OsvRecord, type SeverityLabel } from './osv-record.js';
export type { Prepared } from './osv-index.js';

export interface AdvisoryMatch {
  id: string;
  /** Other names of the advisory: its aliases and the upstream records it derives from (a Debian record's CVE). */
  aliases: string[];
  summary: string;
  malicious: boolean;
  severity: Severity;
  /** The lowest fixed version above the one matched, when the record names one. */
  fixed?: string;
}

export type RefuseLevel = 'none' | 'all' | 'low' | 'medium' | 'high' | 'critical';

/** An OS package as an image inventory lists it (the fields advisory matching reads). */
export interface OsPackage {
  name: string;
  version: string;
  source?: string;
  sourceVersion?: string;
}

/** Ids in the order an index takes records (UTF-16 code units, as `<`): the same on every store. */
const byIdOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Records put into an index between two looks at the clock (a slice's end). */
const STEP = 16;

/** A generator of long work run to its end at once. */
function finish<T>(g: Generator<void, T>): T {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}

/** ...or with `slice` awaited at each of its yields. */
async function finishSliced<T>(g: Generator<void, T>, slice: () => Promise<void>): Promise<T> {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
    await slice();
  }
}

/** `fresh` (sorted, none in `ids`) merged into the sorted `ids`: a new array. */
function merged(ids: string[], fresh: string[]): string[] {
  const out: string[] = [];
  let j = 0;
  for (const id of ids) {
    while (j < fresh.length && fresh[j] < id) out.push(fresh[j++]);
    out.push(id);
  }
  while (j < fresh.length) out.push(fresh[j++]);
  return out;
}

/**
 * Imported advisories, indexed for the pull path (pure; built from stored OSV records). Each record
 * is prepared once (osv-index.ts); the maps matching reads are built from the prepared records in
 * id order on first use, so `withChanges` (what a feed sync changed) costs the changed records and
 * a pass over the rest, not a re-read and re-parse of every record.
 */
export class Advisories {
  /** Every record given, withdrawn ones too, prepared, by id. */
  private prepared = new Map<string, Prepared>();
  /** Their ids in index order; null until asked for after an add. */
  private order: string[] | null = [];
  private built: OsvIndex | null = null;

  constructor(records: Iterable<OsvRecord> = []) {
    this.add(records);
  }

  /** Prepare a record for `withChanges` (the costly part: done a slice at a time by its caller). */
  static prepare(rec: OsvRecord): Prepared {
    return prepare(rec);
  }

  /** Index more records (a reader builds it a page at a time, storage/advisory-pages.ts, before it is put in force); a record of an id given before replaces it. */
  add(records: Iterable<OsvRecord>): void {
    for (const rec of records) this.prepared.set(rec.id, prepare(rec));
    this.order = null;
    this.built = null;
  }

  /**
   * These advisories with `changes` put in (by id: a withdrawn copy withdraws it), as a new object
   * with its maps built; this one is unchanged, and its unchanged records are shared as prepared.
   * Nothing is taken out: stored advisories are never deleted (a withdrawal is a change).
   */
  withChanges(changes: Prepared[]): Advisories {
    return finish(this.changing(changes));
  }

  /** The same, `slice` awaited every few records (core/turns.ts slicer): at once it stopped the loop for 40 ms at 20,000 records. */
  withChangesSliced(changes: Prepared[], slice: () => Promise<void>): Promise<Advisories> {
    return finishSliced(this.changing(changes), slice);
  }

  /** Build the maps now (before the advisories are put in force), not on the first pull that reads them. */
  seal(): this {
    this.index();
    return this;
  }

  /** The same, `slice` awaited every few records: building them for 20,000 records stopped the loop for 33-50 ms at once. */
  async sealed(slice: () => Promise<void>): Promise<this> {
    if (!this.built) {
      const order = this.ids();
      const ix = await finishSliced(this.indexing(), slice);
      // Records added meanwhile (a reader's next page) made it stale: the next use builds it again.
      if (this.order === order) this.built ??= ix;
    }
    return this;
  }

  /** One pass in id order: the new records by id and their maps built together, a yield every STEP records. */
  private *changing(changes: Prepared[]): Generator<void, Advisories> {
    const put = new Map(changes.map((p) => [p.rec.id, p]));
    const fresh = [...put.keys()].filter((id) => !this.prepared.has(id)).sort(byIdOrder);
    const next = new Advisories();
    next.order = merged(this.ids(), fresh);
    const ix = new OsvIndex();
    let n = 0;
    for (const id of next.order) {
      const p = put.get(id) ?? this.prepared.get(id)!;
      next.prepared.set(id, p);
      ix.put(p);
      if (++n % STEP === 0) yield;
    }
    next.built = ix;
    return next;
  }

  private *indexing(): Generator<void, OsvIndex> {
    const ix = new OsvIndex();
    let n = 0;
    for (const id of this.ids()) {
      ix.put(this.prepared.get(id)!);
      if (++n % STEP === 0) yield;
    }
    return ix;
  }

  private ids(): string[] {
    return (this.order ??= [...this.prepared.keys()].sort(byIdOrder));
  }

  private index(): OsvIndex {
    return (this.built ??= finish(this.indexing()));
  }

  get size(): number {
    return this.index().byId.size;
  }

  /** How many records are withdrawn (held apart: `find`). */
  get withdrawn(): number {
    return this.index().withdrawn;
  }

  /** The newest `modified` among the records (ISO 8601): how fresh the imported data is. */
  get newest(): string | undefined {
    return this.index().newest;
  }

  /** How many affected-package entries each OS ecosystem has (an image of an ecosystem with none cannot be judged). */
  osCoverage(ecosystem: string): number {
    return this.index().osEcosystems.get(ecosystem) ?? 0;
  }

  get(id: string): OsvRecord | undefined {
    const { byId } = this.index();
    return byId.get(id) ?? [...byId.values()].find((r) => (r.aliases ?? []).includes(id));
  }

  /**
   * The record with this id, else the first naming it among its aliases or upstream ids (what
   * `airlock affected` is asked). Undefined for a name a withdrawn record also bears: the store,
   * which holds it, answers (a withdrawn GHSA record that a live PYSEC record lists as an alias is
   * found by its id there, a CVE two records list by the first stored).
   */
  find(name: string): OsvRecord | undefined {
    const { byId, withdrawnNames } = this.index();
    if (withdrawnNames.has(name)) return undefined;
    return byId.get(name) ?? [...byId.values()].find((r) => [...(r.aliases ?? []), ...(r.upstream ?? [])].includes(name));
  }

  private matchOf(rec: OsvRecord, aff: OsvAffected, fixed?: string): AdvisoryMatch {
    let severity = severityOf(rec, aff);
    if (!severity.label) {
      // A Debian or Alpine record names the CVE it tracks; another imported record of it may rate it.
      for (const n of [rec.id, ...(rec.aliases ?? []), ...(rec.upstream ?? [])]) {
        const s = this.index().severityByName.get(n);
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
    this.matchEntries(this.index().pypi.get(normalizeName(name)), PEP440, version, seen, out);
    if (sha256) {
      const rec = this.index().hashes.get(sha256);
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
      this.matchEntries(this.index().os.get(`${ecosystem}\0${pkg.source}`), order, pkg.sourceVersion ?? pkg.version, seen, out);
    this.matchEntries(
      this.index().os.get(`${ecosystem}\0${pkg.name}`),
      order,
      pkg.name === pkg.source ? (pkg.sourceVersion ?? pkg.version) : pkg.version,
      seen,
      out,
    );
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
    return [...this.index().hashes].filter(([, r]) => r.id === rec.id).map(([h]) => h);
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
