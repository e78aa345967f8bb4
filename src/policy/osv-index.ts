import { normalizeName } from '../names/pypi.js';
import { orderOf } from './osv-ranges.js';
import { severityOf, type OsvAffected, type OsvRecord, type Severity } from './osv-record.js';

/** One affected package of a record, as matching reads it. */
export interface Entry {
  rec: OsvRecord;
  aff: OsvAffected;
  versions: Set<string>;
}

/**
 * A record as the index takes it: parsed and worked out once (its versions as sets, its severity,
 * the hashes a malicious-package record lists), then reused by every later index that keeps it
 * unchanged. Working a record out is most of an index's cost (a record listing thousands of
 * versions more than its size says); putting prepared records into maps is little.
 */
export interface Prepared {
  rec: OsvRecord;
  /** [normalized PyPI name, entry] per PyPI package it affects. */
  pypi: [string, Entry][];
  /** ["<ecosystem>\0<name>", ecosystem, entry] per OS package it affects. */
  os: [string, string, Entry][];
  /** Its id, aliases and upstream ids. */
  names: string[];
  /** The record's own severity, for records of the same names that carry none (Debian, Alpine). */
  severity: Severity;
  hashes: string[];
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

export function prepare(rec: OsvRecord): Prepared {
  const p: Prepared = { rec, pypi: [], os: [], names: [rec.id, ...(rec.aliases ?? []), ...(rec.upstream ?? [])], severity: {}, hashes: [] };
  if (rec.withdrawn) return p;
  for (const a of rec.affected ?? []) {
    const eco = a.package?.ecosystem;
    if (!eco || !a.package?.name) continue;
    if (eco === 'PyPI') p.pypi.push([normalizeName(a.package.name), { rec, aff: a, versions: new Set(a.versions ?? []) }]);
    else if (orderOf(eco)) p.os.push([`${eco}\0${a.package.name}`, eco, { rec, aff: a, versions: new Set(a.versions ?? []) }]);
  }
  p.severity = severityOf(rec, {});
  if (rec.id.startsWith('MAL-')) {
    const hs = new Set<string>();
    integrityHashes(
      rec.affected?.map((a) => a.database_specific),
      hs,
    );
    integrityHashes(rec.database_specific, hs);
    p.hashes = [...hs];
  }
  return p;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/**
 * The maps matching reads, built from prepared records put in one by one, in order. Where two records meet
 * (a name both rate, a hash both list) the order decides, so it is the ids' order (advisories.ts),
 * never the order a store returned them in: an index built whole and one built with changes agree,
 * as do replicas on stores that sort text differently.
 */
export class OsvIndex {
  readonly pypi = new Map<string, Entry[]>();
  /** OS packages by "<ecosystem>\0<name>" (Debian:12, Alpine:v3.20, Ubuntu:22.04:LTS, ...). */
  readonly os = new Map<string, Entry[]>();
  readonly osEcosystems = new Map<string, number>();
  readonly hashes = new Map<string, OsvRecord>();
  readonly byId = new Map<string, OsvRecord>();
  /** Severity of records by id and alias, for records that carry none of their own (Debian, Alpine). */
  readonly severityByName = new Map<string, Severity>();
  withdrawn = 0;
  /** Ids, aliases and upstream ids of the withdrawn records, which are not held here (`find`). */
  readonly withdrawnNames = new Set<string>();
  /** The newest `modified` among the records in force (ISO 8601). */
  newest: string | undefined;

  /** Take the next record in order. */
  put(p: Prepared): void {
    const rec = p.rec;
    if (rec.withdrawn) {
      this.withdrawn++;
      for (const n of p.names) this.withdrawnNames.add(n);
      return;
    }
    this.byId.set(rec.id, rec);
    if (rec.modified && rec.modified > (this.newest ?? '')) this.newest = rec.modified;
    for (const [name, e] of p.pypi) push(this.pypi, name, e);
    for (const [key, eco, e] of p.os) {
      push(this.os, key, e);
      this.osEcosystems.set(eco, (this.osEcosystems.get(eco) ?? 0) + 1);
    }
    if (p.severity.label) for (const n of p.names) if (!this.severityByName.has(n)) this.severityByName.set(n, p.severity);
    for (const h of p.hashes) this.hashes.set(h, rec);
  }
}
