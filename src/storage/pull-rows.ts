import type { PullRecord, StoredPullRecord } from './meta-store.js';

/**
 * The pull record as SQL backends store it (SQLite and PostgreSQL share the table's shape): the
 * row type, its mapping to a StoredPullRecord, and the per-day tally the running summary adds.
 */
export interface PullRow {
  id: number;
  ts: number;
  client: string;
  ecosystem: string;
  name: string;
  version: string | null;
  filename: string | null;
  sha256: string | null;
  size: number | null;
  cache: string;
  decision: string;
  reason: string | null;
  rule: string | null;
  request_id: string | null;
  scan: string | null;
  prev_hash: string | null;
  hash: string | null;
  code: string | null;
  count: number | null;
  last_ts: number | null;
  signature: string | null;
}

/** The columns a pull is written to, in the order of `pullValues` (both SQL backends insert with them). */
export const PULL_COLUMNS = [
  'ts',
  'client',
  'ecosystem',
  'name',
  'version',
  'filename',
  'sha256',
  'size',
  'cache',
  'decision',
  'reason',
  'rule',
  'request_id',
  'scan',
  'prev_hash',
  'hash',
  'code',
  'count',
  'last_ts',
  'signature',
] as const;

/** A pull's values for PULL_COLUMNS, positional (cheaper than named parameters on the per-pull path). */
export function pullValues(rec: PullRecord, prevHash: string, hash: string): unknown[] {
  return [
    rec.ts,
    rec.client,
    rec.ecosystem,
    rec.name,
    rec.version ?? null,
    rec.filename ?? null,
    rec.sha256 ?? null,
    rec.size ?? null,
    rec.cache,
    rec.decision,
    rec.reason ?? null,
    rec.rule ?? null,
    rec.requestId ?? null,
    rec.scan ?? null,
    prevHash,
    hash,
    rec.code ?? null,
    rec.count ?? null,
    // The end of a fold window belongs only to a folded row.
    rec.count != null ? (rec.lastTs ?? null) : null,
    rec.signature ?? null,
  ];
}

/** A stored row as the record's type (a row without a refusal code has no `code`). */
export function pullOf(r: PullRow): StoredPullRecord {
  return {
    id: r.id,
    ts: r.ts,
    client: r.client,
    ecosystem: r.ecosystem as StoredPullRecord['ecosystem'],
    name: r.name,
    version: r.version,
    filename: r.filename,
    sha256: r.sha256,
    size: r.size,
    cache: r.cache as StoredPullRecord['cache'],
    decision: r.decision as StoredPullRecord['decision'],
    reason: r.reason,
    rule: r.rule,
    requestId: r.request_id,
    scan: r.scan,
    prevHash: r.prev_hash,
    hash: r.hash,
    ...(r.code ? { code: r.code } : {}),
    ...(r.count != null ? { count: r.count, lastTs: r.last_ts } : {}),
    ...(r.signature ? { signature: r.signature } : {}),
  };
}

const DAY_MS = 86_400_000;

/** Rows per (day, ecosystem, decision) in a batch: what the running summary adds. */
export function dayTally(recs: PullRecord[]): [number, string, string, number][] {
  const m = new Map<string, [number, string, string, number]>();
  for (const r of recs) {
    const day = Math.floor(r.ts / DAY_MS) * DAY_MS;
    const k = `${day}|${r.ecosystem}|${r.decision}`;
    const t = m.get(k);
    // A folded row stands for `count` events.
    const n = r.count ?? 1;
    if (t) t[3] += n;
    else m.set(k, [day, r.ecosystem, r.decision, n]);
  }
  return [...m.values()];
}

/**
 * A row's estimated size in bytes, in SQL both backends run (length() counts characters): its text
 * columns plus 320 for what every row has (two hex hashes, numbers, the index entries). An
 * estimate for the record's size budget (records.max_bytes), not a measure of the file.
 */
export const ROW_BYTES_SQL_V1 =
  '(320 + length(client) + 2 * length(name) + COALESCE(length(version), 0) + COALESCE(length(filename), 0) + COALESCE(length(sha256), 0) * 2' +
  ' + COALESCE(length(reason), 0) + COALESCE(length(rule), 0) + COALESCE(length(request_id), 0) + COALESCE(length(scan), 0) + COALESCE(length(code), 0) * 2)';

/**
 * ROW_BYTES_SQL_V1 plus the signature column (issue 26). V1 stays as the schema step that created
 * pull_size ran it (that step runs before the column exists); a row without a signature measures
 * the same under both, so the kept total stays a sum of this estimate.
 */
export const ROW_BYTES_SQL = `(${ROW_BYTES_SQL_V1} + COALESCE(length(signature), 0))`;

/** What pull_days adds up per (day, ecosystem, decision) from stored rows (a folded row counts its events). */
export const DAY_RECOUNT_SQL = 'SELECT (ts / 86400000) * 86400000, ecosystem, decision, SUM(COALESCE(count, 1)) FROM pulls';
