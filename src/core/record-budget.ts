import type { Logger } from 'pino';
import type { Metrics } from '../obs/metrics.js';
import type { PullLog } from '../storage/meta-store.js';
import { prunePullsToSize } from './chain.js';
import { Recorder } from './records.js';

/** Past the budget the record is pruned to this share of it, so that one check does not prune again at the next. */
const PRUNE_TO = 0.9;
/** From this share of the budget on, readiness warns. */
const WARN_AT = 0.8;

/**
 * The record's size budget (records.max_bytes): measures the record (airlock_record_bytes and
 * airlock_record_rows), and past the budget prunes the oldest rows to 90% of it, leaving a chained
 * audit/prune anchor (core/chain.ts), with a warning in the log. `warning()` is what /-/readyz
 * shows while the record is near or past its budget.
 */
export class RecordBudget {
  private last: { rows: number; bytes: number } | null = null;
  /** Ends a prune under way after its current batch (the server closing). */
  readonly stopping = new AbortController();

  constructor(
    private readonly log: PullLog,
    private readonly recorder: Pick<Recorder, 'flush'>,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly maxBytes: number,
  ) {}

  /** Measure, and prune when over budget; returns how many rows were pruned. */
  async check(): Promise<number> {
    let size = await this.log.pullSize();
    let removed = 0;
    if (this.maxBytes > 0 && size.bytes > this.maxBytes) {
      await this.recorder.flush();
      removed = await prunePullsToSize(this.log, Math.floor(this.maxBytes * PRUNE_TO), 'airlock-budget', undefined, this.stopping.signal);
      this.metrics.recordBudgetPrunes.inc(removed);
      this.logger.warn(
        { removed, bytes: size.bytes, maxBytes: this.maxBytes },
        'the pull record is over records.max_bytes: its oldest rows were pruned (a chained audit/prune event records it)',
      );
      size = await this.log.pullSize();
    }
    this.last = size;
    this.metrics.recordBytes.set(size.bytes);
    this.metrics.recordRows.set(size.rows);
    return removed;
  }

  /** A readiness warning while the record is at 80% of its budget or more; null otherwise. */
  warning(): string | null {
    if (!this.last || this.maxBytes <= 0 || this.last.bytes < this.maxBytes * WARN_AT) return null;
    const pct = Math.round((this.last.bytes / this.maxBytes) * 100);
    return `the pull record is at ${pct}% of records.max_bytes (${this.last.bytes} of ${this.maxBytes} bytes, estimated): its oldest rows are pruned past it`;
  }
}

/** The records.* settings the recorder and the budget take (config/schema.ts). */
export interface RecordSettings {
  max_bytes: number;
  fold_window_seconds: number;
  fold_max_windows: number;
  refusal_limit: { per_second: number; burst: number; clients: number };
}

/** Time between size checks of the record. */
const CHECK_EVERY_MS = 60_000;

/**
 * The server's recorder with its refusal guard (rate limit, folding) and the record's size budget
 * (records.max_bytes). `start()` checks the size now (in the background) and every minute;
 * `warnings()` is what /-/readyz shows; `stop()` ends the checks. (Retention is upkeep.ts.)
 */
export function keepRecord(pulls: PullLog, metrics: Metrics, log: Logger, rc: RecordSettings) {
  const recorder = new Recorder(pulls, metrics, log, {
    foldWindowMs: rc.fold_window_seconds * 1000,
    foldMaxWindows: rc.fold_max_windows,
    limits: { perSecond: rc.refusal_limit.per_second, burst: rc.refusal_limit.burst, maxClients: rc.refusal_limit.clients },
  });
  const budget = new RecordBudget(pulls, recorder, metrics, log, rc.max_bytes);
  let running: Promise<unknown> = Promise.resolve();
  const check = () => {
    if (budget.stopping.signal.aborted) return;
    running = running.then(() => budget.check().catch((e) => log.error({ err: (e as Error).message }, 'record size check failed')));
  };
  let timer: NodeJS.Timeout | undefined;
  return {
    recorder,
    budget,
    start(): void {
      check();
      timer = setInterval(check, CHECK_EVERY_MS);
      timer.unref();
    },
    warnings: (): string[] => [budget.warning()].filter((w): w is string => w !== null),
    /** Stop the checks; resolves once a prune under way has ended its current batch. */
    stop: async (): Promise<void> => {
      clearInterval(timer);
      budget.stopping.abort();
      await running;
    },
  };
}
