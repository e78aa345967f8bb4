import type { Logger } from 'pino';
import type { Metrics } from '../obs/metrics.js';
import type { PullLog, PullRecord } from '../storage/meta-store.js';
import { appendPulls } from './chain.js';
import { AirlockError } from './errors.js';
import { Folder } from './fold.js';
import type { RecordCode } from './record-codes.js';
import { RefusalLimiter, type RefusalLimits } from './refusal-limit.js';

/** A row as the recorder takes it: its code is one of the record's own vocabulary (stored as text). */
export type RecordRow = Omit<PullRecord, 'code'> & { code?: RecordCode | null };

/** How refusals are kept from filling the record (records.* in the config); off when not given. */
export interface RefusalGuard {
  /** Seconds identical refusals are folded into one row (0: a row each). */
  foldWindowMs: number;
  /** Fold windows open at most (bounded memory): the oldest closes first. */
  foldMaxWindows: number;
  /** The per-client refusal rate limit (perSecond 0: none). */
  limits: RefusalLimits;
}

const NO_GUARD: RefusalGuard = { foldWindowMs: 0, foldMaxWindows: 1, limits: { perSecond: 0, burst: 0, maxClients: 1 } };

/** Rows written per transaction at most; a burst larger than this is split. */
const BATCH_MAX = 512;

/**
 * Writes one pull record per artefact served or refused, with its metric and log line.
 * A failing record write is logged loudly but never breaks the response already under way.
 *
 * Rows are queued and written in one transaction on the next turn of the event loop, or, while a
 * batch is being written, with the next batch once it is (group commit): one SQLite transaction
 * per row was 35% of the CPU profile of warm OCI manifest GETs (~2.9k req/s; see
 * docs/performance.md). `record()` resolves when the row's batch is committed;
 * front-ends wait for it before a response's last bytes, so a served artefact is on record
 * (WAL: it survives a process crash) before its client has the whole of it.
 */
export class Recorder {
  private queue: PullRecord[] = [];
  /** Each queued row's waiter, told whether its batch was written (an Error when it was not). */
  private waiters: ((failure: Error | null) => void)[] = [];
  private scheduled = false;
  /** The batch being written, if any. */
  private writing: Promise<void> | null = null;
  /** The last failed write, until a later one succeeds (the health endpoint turns red on it). */
  private failing: { at: number; message: string } | null = null;
  private readonly folder: Folder;
  private readonly limiter: RefusalLimiter;
  /** Digests with a digest_mismatch row already written by this process (bounded; oldest forgotten first). */
  private readonly mismatched = new Set<string>();
  /** Transfers under way whose row may still come (a cut one's is written when it ends): shutdown waits for them. */
  private transfers = 0;
  private transfersDone: (() => void)[] = [];

  constructor(
    private readonly pulls: PullLog,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    guard: RefusalGuard = NO_GUARD,
  ) {
    this.folder = new Folder(guard.foldWindowMs, guard.foldMaxWindows, (row) => {
      this.log.info(
        { ecosystem: row.ecosystem, name: row.name, version: row.version, code: row.code, client: row.client, count: row.count, from: row.ts, to: row.lastTs },
        'repeated refusals folded into one record',
      );
      this.push(row);
    });
    this.limiter = new RefusalLimiter(guard.limits);
  }

  /**
   * The refusal rate limit: take one refusal from `client`'s allowance (a token name, or the
   * address of an anonymous client). 0 when the refusal may be recorded; else the seconds to wait
   * (the caller answers 429 with Retry-After and records it with `rateLimited`).
   */
  limitRefusal(client: string): number {
    return this.limiter.take(client);
  }

  /**
   * Whether this is the first digest_mismatch of `sha256` this process records: that row is
   * evidence (a tampered upstream, rotted disk) and is written whatever its client's refusal rate
   * limit says; repeats go through the limit like any refusal.
   */
  firstMismatch(sha256: string | null | undefined): boolean {
    if (!sha256 || this.mismatched.has(sha256)) return false;
    if (this.mismatched.size >= 10_000) this.mismatched.delete(this.mismatched.values().next().value as string);
    this.mismatched.add(sha256);
    return true;
  }

  /** Count a refusal past its client's rate limit: one `rate_limited` row per client, folded (not a row each). */
  rateLimited(row: Omit<RecordRow, 'code'>): void {
    this.metrics.refusalsRateLimited.inc({ ecosystem: row.ecosystem });
    void this.record({ ...row, code: 'rate_limited' });
  }

  /**
   * A transfer whose row is written only when it ends (http/serve-blob.ts: cut by its client, by
   * transfers.send_timeout or by a server stop); call the returned function once its row is queued,
   * or it needs none. A server stop closes the connections, then waits for these (`transfersEnded`)
   * before the last flush: a transfer ends some turns after its connection closed (its next chunk
   * read and hashed first), and its row queued after the store closed was lost.
   */
  transferStarted(): () => void {
    this.transfers++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.transfers === 0) for (const w of this.transfersDone.splice(0)) w();
    };
  }

  /** Resolves once no transfer is under way (their rows queued), or after `ms` at most. */
  async transfersEnded(ms: number): Promise<void> {
    if (this.transfers === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((r) => this.transfersDone.push(r)), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** Resolves once every queued row is written (shutdown, tests, CLI); open fold windows are closed and written first. */
  async flush(): Promise<void> {
    this.folder.closeAll();
    while (this.queue.length > 0 || this.writing) {
      this.drain();
      await this.writing;
    }
  }

  /**
   * Write the queued rows as one batch, unless one is being written: then they wait for it, and
   * everything queued by then goes in the next (group commit: one transaction for the rows of
   * every request that arrived during the last one, however long a commit takes).
   */
  private drain(): void {
    this.scheduled = false;
    if (this.writing || this.queue.length === 0) return;
    const batch = this.queue.splice(0, BATCH_MAX);
    const waiters = this.waiters.splice(0, batch.length);
    this.writing = appendPulls(this.pulls, batch)
      .then(
        () => {
          if (this.failing) this.log.warn({ since: new Date(this.failing.at).toISOString() }, 'pull records are being written again');
          this.failing = null;
          return null;
        },
        (e: Error) => {
          this.failing = { at: Date.now(), message: e.message };
          this.metrics.recordFailures.inc(batch.length);
          this.log.error(
            { err: e.message, rows: batch.length, first: batch[0] },
            'failed to write pull records: artefacts are withheld until the record can be written',
          );
          return e;
        },
      )
      .then((failure) => {
        this.writing = null;
        // Every waiter of the batch learns whether its rows were written (a failed batch fails them all).
        for (const w of waiters) w(failure);
        this.drain();
      });
  }

  /** Null while records are written; the last failure while they are not. */
  health(): { at: number; message: string } | null {
    return this.failing;
  }

  /** Count artefact body bytes sent to a client (airlock_bytes_sent_total). */
  bytesSent(ecosystem: PullRecord['ecosystem'], cache: string, bytes: number): void {
    if (bytes > 0) this.metrics.bytes.inc({ ecosystem, cache }, bytes);
  }

  /**
   * Queue the row of an artefact about to be served; resolves once its batch is committed and
   * rejects (RECORD_FAILED) when it could not be written, so the caller withholds what is left of
   * the artefact: nothing is served that is not on record (a full disk fails closed).
   */
  recordServed(rec: RecordRow): Promise<void> {
    return this.enqueue(rec).then((failure) => {
      if (failure)
        throw new AirlockError('RECORD_FAILED', `the pull record could not be written (${failure.message}); nothing is served off the record`, {
          cause: failure,
        });
    });
  }

  /** Queue a row (a refusal, a cut transfer); resolves once its batch is over, written or not (a failure is logged). */
  record(rec: RecordRow): Promise<void> {
    return this.enqueue(rec).then(() => undefined);
  }

  private enqueue(row: RecordRow): Promise<Error | null> {
    // The refusal code is part of the row (stores write it, the chain covers it when present).
    const code = row.code;
    this.metrics.pulls.inc({ ecosystem: row.ecosystem, cache: row.cache, decision: row.decision });
    if (row.decision !== 'allow') this.metrics.refusals.inc({ ecosystem: row.ecosystem, code: code ?? row.decision });
    // A repeat of a refusal recorded in its fold window is counted there, not written (nor logged) again.
    if (!this.folder.offer(row)) {
      this.metrics.refusalsFolded.inc({ ecosystem: row.ecosystem });
      return Promise.resolve(null);
    }
    // The line only when it will be written (the server logs at warn by default: no pull lines).
    if (row.decision === 'allow' ? !this.log.isLevelEnabled('info') : !this.log.isLevelEnabled('warn')) return this.push(row);
    const line = {
      reqId: row.requestId,
      ecosystem: row.ecosystem,
      name: row.name,
      version: row.version,
      filename: row.filename,
      digest: row.sha256,
      bytes: row.size,
      cache: row.cache,
      decision: row.decision,
      rule: row.rule,
      reason: row.reason,
      client: row.client,
    };
    if (row.decision === 'allow') this.log.info(line, 'pull');
    else this.log.warn(line, 'refused');
    return this.push(row);
  }

  /** Queue a row for the next batch; resolves with its batch's failure, or null once written. */
  private push(row: RecordRow): Promise<Error | null> {
    this.queue.push(row);
    const committed = new Promise<Error | null>((r) => this.waiters.push(r));
    if (!this.scheduled && !this.writing) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
    return committed;
  }
}
