import type { PullFilter, PullRecord, StoredPullRecord } from './meta-store.js';
import { MAX_PULL_PAGE } from './pull-pages.js';

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

/**
 * pull_days without the rows through id `through` (a placeholder), run before a prune deletes them:
 * what they added is taken back, reading only them. A recount of the days they were in read every
 * row left in those days: a batch of 10,000 in a day of a million pulls took 0.7 s, and a prune of
 * that day 63 s. (Zero counts are then deleted.)
 */
export const dayTakeBackSql = (through: string): string =>
  `UPDATE pull_days SET count = pull_days.count - g.n
   FROM (SELECT (ts / 86400000) * 86400000 AS day, ecosystem, decision, SUM(COALESCE(count, 1)) AS n FROM pulls WHERE id <= ${through} GROUP BY 1, 2, 3) AS g
   WHERE pull_days.day = g.day AND pull_days.ecosystem = g.ecosystem AND pull_days.decision = g.decision`;

/**
 * The pulls table's indexes beyond time, digest and name (one schema step, the same for both
 * backends). Most rows are allowed pulls, and each index a row goes into is paid for on the warm
 * path's commit (issue 29: seven indexes were a tenth of a warm manifest GET's CPU). The searches
 * by decision and by code look for refusals, so those indexes hold only the rows that are not a
 * plain allow; a search for allowed rows reads the record newest first, where they are most rows.
 * (ecosystem, name, ts) goes: (name, id) answers the same searches in the order they are shown,
 * and the record's own rows (ecosystem `audit`: prune anchors, admin refusals), rare among many,
 * keep an index of their own. A search of one artefact ecosystem alone reads newest first.
 * A partial index is used by SQLite only when the query repeats its condition: see pullSearchSql.
 */
export const REFUSAL_INDEXES = `DROP INDEX pulls_name_ts;
   DROP INDEX pulls_decision_id;
   DROP INDEX pulls_decision_eco_id;
   DROP INDEX pulls_code_id;
   CREATE INDEX pulls_refused_id ON pulls (decision, id) WHERE decision <> 'allow';
   CREATE INDEX pulls_refused_eco_id ON pulls (decision, ecosystem, id) WHERE decision <> 'allow';
   CREATE INDEX pulls_code_id ON pulls (code, id) WHERE code IS NOT NULL;
   CREATE INDEX pulls_audit_id ON pulls (id) WHERE ecosystem = 'audit';`;

/**
 * A search of the record (listPulls), newest first, as SQL for either backend: `param` takes a
 * value and returns its placeholder. A search by a decision other than allow repeats the refusal
 * indexes' condition, which SQLite needs to see before it uses a partial index (PostgreSQL proves it).
 */
export function pullSearchSql(f: PullFilter, param: (v: unknown) => string): string {
  const where: string[] = [];
  const add = (col: string, op: string, v: unknown) => where.push(`${col} ${op} ${param(v)}`);
  // The audit rows' partial index is used only with its condition written out.
  if (f.ecosystem === 'audit') where.push("ecosystem = 'audit'");
  else if (f.ecosystem) add('ecosystem', '=', f.ecosystem);
  if (f.name) add('name', '=', f.name);
  if (f.version) add('version', '=', f.version);
  if (f.sha256) add('sha256', '=', f.sha256);
  if (f.decision) add('decision', '=', f.decision);
  if (f.decision && f.decision !== 'allow') where.push("decision <> 'allow'");
  if (f.code) add('code', '=', f.code);
  if (f.before !== undefined) add('id', '<', f.before);
  if (f.from !== undefined) add('id', '>=', f.from);
  // A page after the first (`before` set) reads back from where the last stopped, by id: the time
  // index would collect and sort the whole window again for every page (`+ts` is no index's column).
  const ts = f.before === undefined ? 'ts' : '+ts';
  if (f.since !== undefined) add(ts, '>=', f.since);
  if (f.until !== undefined) add(ts, '<=', f.until);
  const limit = param(Math.max(1, Math.min(f.limit ?? 1000, MAX_PULL_PAGE)));
  // The oldest first by `+id`, no index's order: read through the filter's own index (the time
  // window's, say) and sorted, never by walking the table up from its oldest row.
  const order = f.oldestFirst ? '+id ASC' : 'id DESC';
  return `SELECT * FROM pulls ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY ${order} LIMIT ${limit}`;
}

/**
 * The last row one prune removes (with its hash, for the anchor), as SQL for either backend
 * (`param` as in pullSearchSql). At most `maxRows` of the oldest rows go at once: a prune of a
 * million rows in one transaction stopped SQLite's event loop (and held PostgreSQL's chain lock)
 * for seconds, so core/chain.ts removes them a batch at a time.
 *
 * Retention: the newest row older than `before` among the oldest `maxRows`, and not after row
 * `through` (`+ts`: read back by id from there, not through the time index, which would sort every
 * old row).
 */
export function retentionEndSql(before: number, maxRows: number, param: (v: unknown) => string, through = Number.MAX_SAFE_INTEGER): string {
  // One bound on id (the oldest `maxRows`, through `through`), where the search starts: SQLite starts
  // from one bound only, and with two it took `through` and read every row down from the head.
  return `SELECT id, hash FROM pulls WHERE +ts < ${param(before)}
    AND id <= COALESCE((SELECT id FROM pulls WHERE id <= ${param(through)} ORDER BY id LIMIT 1 OFFSET ${param(maxRows - 1)}), ${param(through)})
    ORDER BY id DESC LIMIT 1`;
}

/**
 * Size budget: among the oldest `maxRows`, the first row whose running size reaches `excess`
 * bytes, or the last of them when they all add up to less (`reached` says which; the caller
 * removes none when the record holds fewer rows than that and they do not reach it).
 */
export function sizeEndSql(excess: number, maxRows: number, param: (v: unknown) => string): string {
  return `SELECT id, hash, upto >= ${param(excess)} AS reached, n FROM (
      SELECT id, hash, SUM(b) OVER (ORDER BY id) AS upto, ROW_NUMBER() OVER (ORDER BY id) AS n
      FROM (SELECT id, hash, ${ROW_BYTES_SQL} AS b FROM pulls ORDER BY id LIMIT ${param(maxRows)}) oldest
    ) s WHERE upto >= ${param(excess)} OR n = ${param(maxRows)} ORDER BY id LIMIT 1`;
}
