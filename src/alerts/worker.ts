import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Counter, Gauge } from 'prom-client';
import type { NotifyConfig } from '../config/notify-schema.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { AlertRow, AlertStore } from '../storage/alert-store.js';
import type { Channel } from './channels.js';
import type { AlertDocument } from './message.js';

/** Rows claimed per look at the outbox. */
const BATCH = 20;

/** The delivery id a receiver sees on every attempt of one alert (the same on every replica): its outbox key, hashed. */
export function deliveryId(r: Pick<AlertRow, 'advisoryId' | 'modified' | 'artefact' | 'channel'>): string {
  return createHash('sha256').update(`${r.advisoryId}\n${r.modified}\n${r.artefact}\n${r.channel}`).digest('hex').slice(0, 32);
}

/** Next attempt after `attempts` failures (this one included): initial, doubled per failure, capped. */
export function backoffMs(attempts: number, n: Pick<NotifyConfig, 'retry_initial_seconds' | 'retry_max_seconds'>): number {
  return Math.min(n.retry_initial_seconds * 1000 * 2 ** Math.max(0, attempts - 1), n.retry_max_seconds * 1000);
}

/**
 * Sending what the outbox holds (issue 28), on every replica: each look claims due rows for this
 * process (an owner id and a claim expiring after three delivery timeouts, so a dead replica's
 * rows are taken over), sends each to its channel, and records the delivery, or the failure and
 * the next attempt (exponential backoff, capped). Failures are counted (airlock_alerts_failed_total)
 * and the rows waiting are a gauge (airlock_alerts_pending; _failing those that failed before).
 */
export class AlertWorker {
  readonly owner = `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly failed: Counter<'channel'>;
  private readonly delivered: Counter<'channel'>;

  constructor(
    private readonly store: AlertStore,
    private readonly channels: Map<string, Channel>,
    private readonly notify: NotifyConfig,
    metrics: Metrics,
    private readonly log: Logger,
  ) {
    const registers = [metrics.registry];
    this.failed = new Counter({
      name: 'airlock_alerts_failed_total',
      help: 'Alert deliveries that failed (retried with backoff)',
      labelNames: ['channel'],
      registers,
    });
    this.delivered = new Counter({ name: 'airlock_alerts_delivered_total', help: 'Alerts delivered to a channel', labelNames: ['channel'], registers });
    const counts = () => store.alertCounts();
    new Gauge({
      name: 'airlock_alerts_pending',
      help: 'Alerts in the outbox not delivered yet (all replicas)',
      registers,
      async collect() {
        this.set((await counts()).pending);
      },
    });
    new Gauge({
      name: 'airlock_alerts_failing',
      help: 'Alerts not delivered yet whose last attempt failed',
      registers,
      async collect() {
        this.set((await counts()).failing);
      },
    });
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.notify.poll_seconds * 1000);
    this.timer.unref();
    this.kick();
  }

  /** Look at the outbox now (after an evaluation queued alerts). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((e) => this.log.error({ err: (e as Error).message }, 'alert delivery pass failed'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** Resolves when no pass is running (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    const leaseMs = this.notify.timeout_seconds * 3000;
    for (;;) {
      if (this.stopped) return;
      const rows = await this.store.claimAlerts(this.owner, Date.now(), leaseMs, BATCH);
      if (!rows.length) return;
      await Promise.all(rows.map((r) => this.deliver(r)));
    }
  }

  private async deliver(r: AlertRow): Promise<void> {
    const channel = this.channels.get(r.channel);
    try {
      if (!channel) throw new Error(`channel ${r.channel} is no longer configured (notify.webhooks)`);
      await channel.send(JSON.parse(r.payload) as AlertDocument, { id: deliveryId(r), attempt: r.attempts + 1 });
    } catch (e) {
      const error = (e as Error).message.slice(0, 300);
      const nextAt = Date.now() + backoffMs(r.attempts + 1, this.notify);
      this.failed.inc({ channel: r.channel });
      this.log.warn(
        { advisory: r.advisoryId, artefact: r.artefact, channel: r.channel, attempt: r.attempts + 1, err: error, retryAt: new Date(nextAt).toISOString() },
        'alert delivery failed; retried later',
      );
      await this.store.finishAlert(r.id, this.owner, { error, nextAt });
      return;
    }
    this.delivered.inc({ channel: r.channel });
    if (!(await this.store.finishAlert(r.id, this.owner, { deliveredAt: Date.now() })))
      this.log.warn(
        { advisory: r.advisoryId, artefact: r.artefact, channel: r.channel },
        'alert delivered after its claim expired: another replica may send it again',
      );
    else this.log.info({ advisory: r.advisoryId, artefact: r.artefact, channel: r.channel }, 'alert delivered');
  }
}
