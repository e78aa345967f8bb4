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
    if (t) t[3]++;
    else m.set(k, [day, r.ecosystem, r.decision, 1]);
  }
  return [...m.values()];
}
