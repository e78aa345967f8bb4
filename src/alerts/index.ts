import { onAdvisoriesApplied } from '../advisories/applied.js';
import type { Config } from '../config/schema.js';
import type { NewlyRefused } from '../hf/rescan.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Policy } from '../policy/index.js';
import type { MetaStore } from '../storage/meta-store.js';
import type { Channel } from './channels.js';
import { evaluatePending, takeBaseline } from './evaluate.js';
import { queueModelRefusal } from './model.js';
import { AlertWorker } from './worker.js';

const RETRY_MS = 30_000;

export interface Alerting {
  /** Evaluate the advisories not yet evaluated now, then look at the outbox (tests; also run on every apply). */
  evaluate(): Promise<number>;
  /** Resolves once no evaluation or delivery pass is running (tests). */
  idle(): Promise<void>;
  stop(): Promise<void>;
  /** Queue the alert of a cached model file newly refused after a scanner upgrade (alerts/model.ts). */
  modelFileRefused(n: NewlyRefused): Promise<void>;
}

/**
 * Alerts about newly affected artefacts (issue 28), on every replica when notify.webhooks lists a
 * channel: the baseline once, then an evaluation at start (an import a crash interrupted) and after
 * every advisory import applied in this process (advisories/applied.ts), and the delivery worker.
 * Without channels nothing is evaluated (a later first configuration takes the baseline then).
 * `channels` come from alerts/channels.ts channelsFrom, called before any store is opened (a
 * missing secret stops the start, saying which).
 */
export async function startAlerting(
  config: Config,
  channels: Channel[],
  d: { meta: MetaStore; policy: () => Policy; metrics: Metrics; log: Logger; flush?: () => Promise<void> },
): Promise<Alerting | null> {
  if (!channels.length) return null;
  const baseUrl = config.public_url ?? `http://${config.listen}/`;
  const worker = new AlertWorker(d.meta.alerts, new Map(channels.map((c) => [c.name, c])), config.notify, d.metrics, d.log);
  let stopped = false;
  let chain: Promise<number> = Promise.resolve(0);
  // One evaluation at a time in this process (replicas may overlap: the outbox key makes that harmless).
  const evaluate = () => {
    chain = chain
      .catch(() => 0)
      .then(async () => {
        if (stopped) return 0;
        // This process's pulls not yet written are part of the impact (another replica's are written within its batch interval).
        await d.flush?.();
        const n = await evaluatePending({ meta: d.meta, policy: d.policy, channels: channels.map((c) => c.name), baseUrl, log: d.log, stopped: () => stopped });
        if (n) worker.kick();
        return n;
      });
    return chain;
  };
  // In the background: an import (a scheduled sync, a SIGHUP) never waits for its impact. A failed
  // evaluation (the store unreachable) is tried again a little later; what it did not mark stays due.
  const background = () =>
    void evaluate().catch((e) => {
      d.log.error({ err: (e as Error).message }, 'alert evaluation failed; tried again in 30 s');
      if (!stopped) setTimeout(background, RETRY_MS).unref();
    });
  await takeBaseline(d.meta, d.log);
  onAdvisoriesApplied(async () => {
    if (!stopped) background();
  });
  background();
  worker.start();
  return {
    evaluate,
    async idle() {
      await chain.catch(() => 0);
      await worker.idle();
    },
    async modelFileRefused(n) {
      if (
        await queueModelRefusal(
          d.meta,
          n,
          channels.map((c) => c.name),
          baseUrl,
        )
      )
        worker.kick();
    },
    async stop() {
      stopped = true;
      await chain.catch(() => 0);
      await worker.stop();
    },
  };
}
