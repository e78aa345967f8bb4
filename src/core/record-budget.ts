import type { Logger } from 'pino';
import type { Metrics } from '../obs/metrics.js';
import type { PullLog } from '../storage/meta-store.js';
import { prunePulls, prunePullsToSize } from './chain.js';
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
      removed = await prunePullsToSize(this.log, Math.floor(this.maxBytes * PRUNE_TO), 'airlock-budget');
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

/** The records.* settings the recorder, retention and the budget take (config/schema.ts). */
export interface RecordSettings {
  retention_days: number;
  max_bytes: number;
  fold_window_seconds: number;
  fold_max_windows: number;
  refusal_limit: { per_second: number; burst: number; clients: number };
}

const DAY = 86_400_000;
/** Time between size checks of the record. */
const CHECK_EVERY_MS = 60_000;

/**
 * The server's record upkeep: the recorder with its refusal guard (rate limit, folding), retention
 * (records.retention_days, daily) and the size budget (records.max_bytes, every minute). `start()`
 * runs both once and starts their timers; `warnings()` is what /-/readyz shows; `stop()` ends them.
 */
export function keepRecord(pulls: PullLog, metrics: Metrics, log: Logger, rc: RecordSettings) {
  const recorder = new Recorder(pulls, metrics, log, {
    foldWindowMs: rc.fold_window_seconds * 1000,
    foldMaxWindows: rc.fold_max_windows,
    limits: { perSecond: rc.refusal_limit.per_second, burst: rc.refusal_limit.burst, maxClients: rc.refusal_limit.clients },
  });
  const budget = new RecordBudget(pulls, recorder, metrics, log, rc.max_bytes);
  const prune = async () => {
    if (rc.retention_days <= 0) return;
    await recorder.flush();
    const n = await prunePulls(pulls, Date.now() - rc.retention_days * DAY, 'airlock-retention');
    if (n > 0) log.info({ removed: n, retentionDays: rc.retention_days }, 'pull records pruned (a chained audit/prune event records it)');
  };
  const check = () => void budget.check().catch((e) => log.error({ err: (e as Error).message }, 'record size check failed'));
  const timers: NodeJS.Timeout[] = [];
  return {
    recorder,
    budget,
    async start(): Promise<void> {
      await prune();
      check();
      timers.push(setInterval(() => void prune().catch((e) => log.error({ err: (e as Error).message }, 'record pruning failed')), DAY));
      timers.push(setInterval(check, CHECK_EVERY_MS));
      timers.forEach((t) => t.unref());
    },
    warnings: (): string[] => [budget.warning()].filter((w): w is string => w !== null),
    stop: () => timers.forEach((t) => clearInterval(t)),
  };
}
