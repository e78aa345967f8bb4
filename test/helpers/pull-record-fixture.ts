import type Database from 'better-sqlite3';
import { pullSearchSql } from '../../src/storage/pull-rows.js';
import type { PullFilter, PullRecord } from '../../src/storage/meta-store.js';

/** A realistic pull record and searches over it, for the record-search attacks (SQLite and PostgreSQL). */
export const N = 100_000;
export const T0 = 1_760_000_000_000;
const ECOS = ['pypi', 'pypi', 'pypi', 'oci', 'oci', 'hf'] as const;
const DENY_CODES = ['not_allowlisted', 'advisory', 'too_new', 'bad_token', 'digest_mismatch'];

/** A seeded PRNG (mulberry32): the same record and searches on every run. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The record: mostly allowed pulls; ~4% denied (some before codes existed, some folded), ~1% errors, allowed rows carrying a code, prune anchors and admin refusals. */
export function makeRecord(n: number, seed = 7): PullRecord[] {
  const r = rng(seed);
  const recs: PullRecord[] = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    // Clock skew: a few rows are stamped earlier than the row before them.
    const ts = T0 + i * 30_000 - (i % 997 === 0 ? 3_600_000 : 0);
    const ecosystem = ECOS[i % ECOS.length];
    const base = {
      ts,
      client: `client-${i % 13}`,
      ecosystem,
      name: i % 1009 === 0 ? 'ünïcode-name' : `p${Math.floor(r() * 700)}`,
      version: i % 11 === 0 ? null : `1.${i % 17}`,
      filename: null,
      sha256: i % 5 === 0 ? null : (i % 400).toString(16).padStart(64, '0'),
      size: i % 3 === 0 ? null : i,
      cache: 'miss' as const,
      reason: null,
      rule: null,
      requestId: `r${i}`,
    };
    if (i % 20_011 === 5) {
      // A prune anchor (ecosystem 'audit'), as retention leaves one.
      recs.push({ ...base, ecosystem: 'audit', name: 'prune', sha256: 'f'.repeat(64), decision: 'allow', cache: 'none', version: null });
    } else if (i % 3001 === 17) {
      // A refusal of the admin API (the console shows ecosystem 'admin' as 'audit').
      recs.push({ ...base, ecosystem: 'audit', name: 'admin', decision: 'deny', code: 'bad_token' });
    } else if (x < 0.04) {
      // Before the code column (first 10% of the record), denials carry no code.
      const code = i < n / 10 ? undefined : DENY_CODES[i % DENY_CODES.length];
      const fold = code && i % 7 === 0 ? { count: 3 + (i % 5), lastTs: ts + 1000 } : {};
      recs.push({ ...base, decision: 'deny', ...(code ? { code } : {}), ...fold });
    } else if (x < 0.05) {
      recs.push({ ...base, decision: 'error', ...(i % 2 ? { code: 'upstream_failed' } : {}) });
    } else if (x < 0.053) {
      // An allowed row carrying a code (a cut transfer).
      recs.push({ ...base, decision: 'allow', code: 'client_gone' });
    } else {
      recs.push({ ...base, decision: 'allow' });
    }
  }
  return recs;
}

/** What a search must return: a filter over the whole record, newest (highest id) first. */
export function expected(rows: (PullRecord & { id: number })[], f: PullFilter): number[] {
  const limit = Math.max(1, Math.min(f.limit ?? 1000, 100_000));
  const out: number[] = [];
  for (let k = rows.length - 1; k >= 0 && out.length < limit; k--) {
    const r = rows[k];
    if (f.ecosystem && r.ecosystem !== f.ecosystem) continue;
    if (f.name && r.name !== f.name) continue;
    if (f.version && r.version !== f.version) continue;
    if (f.sha256 && r.sha256 !== f.sha256) continue;
    if (f.decision && r.decision !== f.decision) continue;
    if (f.code && r.code !== f.code) continue;
    if (f.before !== undefined && !(r.id < f.before)) continue;
    if (f.since !== undefined && !(r.ts >= f.since)) continue;
    if (f.until !== undefined && !(r.ts <= f.until)) continue;
    out.push(r.id);
  }
  return out;
}

/** Random searches over every field the filter has (seeded), with small, page-sized and huge limits. */
export function searches(count: number, seed = 11): PullFilter[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const out: PullFilter[] = [];
  for (let i = 0; i < count; i++) {
    const f: PullFilter = {};
    if (r() < 0.6) f.decision = pick(['deny', 'deny', 'error', 'allow'] as const);
    if (r() < 0.4) f.code = pick([...DENY_CODES, 'upstream_failed', 'client_gone', 'no_such_code']);
    if (r() < 0.35) f.ecosystem = pick(['pypi', 'oci', 'hf', 'audit'] as const);
    if (r() < 0.15) f.name = pick(['p1', 'p350', 'prune', 'admin', 'ünïcode-name', 'nobody']);
    if (r() < 0.1) f.version = pick(['1.3', '1.16']);
    if (r() < 0.1) f.sha256 = (Math.floor(r() * 400) as number).toString(16).padStart(64, '0');
    if (r() < 0.3) f.before = Math.floor(r() * (N + 10));
    if (r() < 0.25) f.since = T0 + Math.floor(r() * N) * 30_000;
    if (r() < 0.25) f.until = T0 + Math.floor(r() * N) * 30_000;
    f.limit = pick([1, 7, 50, 1000, 100_000, Number.MAX_SAFE_INTEGER]);
    out.push(f);
  }
  return out;
}

/** SQLite's plan for a record search as the stores build it (pullSearchSql), its steps joined by '; '. */
export function sqlitePlan(db: Database.Database, f: PullFilter): string {
  const args: unknown[] = [];
  const sql = pullSearchSql(f, (v) => (args.push(v), '?'));
  return db
    .prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
    .all(...args)
    .map((p) => p.detail)
    .join('; ');
}
