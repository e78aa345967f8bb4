import { hash } from 'node:crypto';
import type { ChainReport, PullLog, PullRecord, StoredPullRecord } from '../storage/meta-store.js';
import { eachPull } from '../storage/pull-pages.js';

/**
 * The hash chain of the pull record, above the storage seam: what a row's hash covers, how rows
 * link, how the chain is verified and how retention anchors it. A PullLog backend only stores
 * rows in order and runs `link` for each row atomically with reading its head, so that
 * concurrent writers (replicas) still make one chain.
 */

/** The first row's predecessor. */
export const GENESIS = '0'.repeat(64);

/** The content a row's hash covers, in a fixed order (a canonical form independent of any schema). */
export function rowHash(prev: string, r: PullRecord): string {
  const fields: unknown[] = [
    r.ts,
    r.client,
    r.ecosystem,
    r.name,
    r.version ?? null,
    r.filename ?? null,
    r.sha256 ?? null,
    r.size ?? null,
    r.cache,
    r.decision,
    r.reason ?? null,
    r.rule ?? null,
    r.requestId ?? null,
    r.scan ?? null,
  ];
  // The refusal code joined the record later: covered when present, so older rows still verify.
  if (r.code) fields.push(r.code);
  // A folded row (core/fold.ts): how many events it stands for and the last one's time are covered
  // too (an object, so it cannot be mistaken for a code). Rows of one event have neither.
  if (r.count != null) fields.push({ count: r.count, last: r.lastTs ?? null });
  // What verified the artefact (issue 26) joined later still: covered when present, as an object
  // of its own key (never mistaken for a code or a fold), so rows written before it still verify.
  if (r.signature) fields.push({ signature: r.signature });
  // One-shot over the same bytes as update(prev), update('\n'), update(content): ~0.7 us a row less.
  return hash('sha256', `${prev}\n${JSON.stringify(fields)}`, 'hex');
}

/** How a row joins the chain: its predecessor (the head, or GENESIS for the first row) and its hash. */
export function link(head: string | null, rec: PullRecord): { prevHash: string; hash: string } {
  const prevHash = head ?? GENESIS;
  return { prevHash, hash: rowHash(prevHash, rec) };
}

/** Append rows to the record, chained. */
export function appendPulls(log: PullLog, recs: PullRecord[]): Promise<void> {
  return log.appendPulls(recs, link);
}

/** Walk the chain from the first row and name the first row that breaks it. */
export async function verifyChain(log: PullLog): Promise<ChainReport> {
  // Retention prunes leave an anchor row naming the last removed row's hash: the chain may start there.
  const anchors = new Set<string | null | undefined>();
  const readAnchors = () => eachPull(log, { ecosystem: 'audit', name: 'prune' }, (r) => anchors.add(r.sha256));
  await readAnchors();
  // Whether `r` may begin the record: it follows the start or an anchor (read again: a prune may have committed since).
  const mayStart = async (r: StoredPullRecord) => r.prevHash === GENESIS || anchors.has(r.prevHash) || (await readAnchors(), anchors.has(r.prevHash));
  const out: ChainReport = { rows: 0, unchained: 0, head: null };
  let prev: { id: number; hash: string } | null = null;
  for await (const r of log.scanPulls()) {
    out.rows++;
    if (!r.hash) {
      if (prev === null) {
        out.unchained++;
        continue;
      }
      out.problem = { id: r.id, kind: 'inserted', message: `row ${r.id} has no hash: it was written outside Airlock` };
      return out;
    }
    if (rowHash(r.prevHash ?? '', r) !== r.hash) {
      out.problem = { id: r.id, kind: 'altered', message: `row ${r.id} was altered: its content no longer matches its hash` };
      return out;
    }
    if (prev === null) {
      if (!(await mayStart(r))) {
        out.problem = {
          id: r.id,
          kind: 'deleted',
          message: `rows before ${r.id} were deleted: its predecessor is neither the start of the record nor a retention prune`,
        };
        return out;
      }
    } else if (r.prevHash !== prev.hash && (await prunedBefore(log, r)) && (await mayStart(r))) {
      // The walk reads a page at a time, and a prune (a batch at a time, beside the server) may have
      // committed since the last page: the rows before `r` are gone and `r` follows its anchor, so the
      // record now starts at `r`, as a walk begun now would find.
      out.rows = 1;
      out.unchained = 0;
    } else if (r.prevHash !== prev.hash) {
      const gap = r.id - prev.id - 1;
      out.problem =
        gap > 0
          ? {
              id: r.id,
              kind: 'deleted',
              message: `row${gap > 1 ? `s ${prev.id + 1}-${r.id - 1}` : ` ${prev.id + 1}`} deleted: row ${r.id} does not follow row ${prev.id}`,
            }
          : { id: r.id, kind: 'inserted', message: `row ${r.id} does not follow row ${prev.id}: a row was inserted or replaced between them` };
      return out;
    }
    prev = { id: r.id, hash: r.hash };
    out.head = r.hash;
  }
  return out;
}

/** Whether no row is left before `r` (a prune removed them). */
async function prunedBefore(log: PullLog, r: StoredPullRecord): Promise<boolean> {
  return (await log.listPulls({ before: r.id, limit: 1 })).length === 0;
}

/** The chained 'audit/prune' row left where records were removed: it carries the last removed row's hash. */
function pruneAnchor(client: string, last: { hash: string | null }, reason: string): PullRecord {
  return { ts: Date.now(), client, ecosystem: 'audit', name: 'prune', sha256: last.hash, cache: 'none', decision: 'allow', reason };
}

/**
 * Rows a prune removes per transaction. On SQLite a transaction runs on the event loop: one for
 * 900,000 rows stopped every client for 5.7 s (bench/prune-gap.mjs), and on PostgreSQL it holds the
 * chain lock, so no replica records a pull meanwhile. A batch of 10,000 is ~50 ms here; between two,
 * the pruner waits as long as the last took, so it takes at most half the thread and the WAL
 * checkpoints keep up. Each batch leaves its own anchor, so the record verifies after every commit,
 * whatever stops the prune midway.
 */
export const PRUNE_BATCH = 10_000;

/**
 * Run a prune a batch at a time while `more` says so of the last (by default: while a batch is
 * full), other work getting its turn between batches; `signal` ends it between two batches.
 */
async function inBatches(
  batch: (maxRows: number) => Promise<number>,
  maxRows: number,
  more = (n: number) => n === maxRows,
  signal?: AbortSignal,
): Promise<number> {
  let total = 0;
  while (!signal?.aborted) {
    const t0 = performance.now();
    const n = await batch(maxRows);
    total += n;
    if (!more(n)) return total;
    await new Promise((r) => setTimeout(r, Math.max(1, performance.now() - t0)));
  }
  return total;
}

/**
 * Delete records older than `before` (ms), leaving a chained 'audit/prune' row per batch that
 * anchors what was removed. A batch ends at the newest old row among the oldest `maxRows`, so one
 * stamped later than its neighbours (a replica's clock ahead) at its end leaves it short while older
 * rows follow: batches go on while one removes any row, up to the head when the prune began (never
 * its own anchors, nor rows written meanwhile).
 */
export async function prunePulls(log: PullLog, before: number, client: string, maxRows = PRUNE_BATCH, signal?: AbortSignal): Promise<number> {
  const [head] = await log.listPulls({ limit: 1 });
  if (!head) return 0;
  const anchor = (last: { id: number; hash: string | null }, removed: number) =>
    pruneAnchor(
      client,
      last,
      `retention: ${removed} records before ${new Date(before).toISOString()} (through row ${last.id}) removed; this row anchors the chain at the last removed row's hash`,
    );
  return inBatches(
    (n) => log.prunePulls(before, anchor, link, n, head.id),
    maxRows,
    (n) => n > 0,
    signal,
  );
}

/**
 * Delete the oldest records until the record's estimated size is within `maxBytes`, leaving a
 * chained 'audit/prune' row per batch that anchors what was removed (as retention does).
 */
export function prunePullsToSize(log: PullLog, maxBytes: number, client: string, maxRows = PRUNE_BATCH, signal?: AbortSignal): Promise<number> {
  const anchor = (last: { id: number; hash: string | null }, removed: number) =>
    pruneAnchor(
      client,
      last,
      `size budget: the oldest ${removed} records (through row ${last.id}) removed to keep the record within records.max_bytes (${maxBytes} bytes); this row anchors the chain at the last removed row's hash`,
    );
  return inBatches((n) => log.prunePullsToSize(maxBytes, anchor, link, n), maxRows, undefined, signal);
}
