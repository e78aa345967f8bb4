import type { Logger } from 'pino';
import type { Metrics } from '../obs/metrics.js';
import type { MetaStore, PullRecord } from '../storage/meta-store.js';

/**
 * Writes one pull record per artefact served or refused, with its metric and log line.
 * A failing record write is logged loudly but never breaks the response already under way.
 */
export class Recorder {
  constructor(
    private readonly meta: MetaStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  record(rec: PullRecord & { code?: string }): void {
    const { code, ...row } = rec;
    this.metrics.pulls.inc({ ecosystem: row.ecosystem, cache: row.cache, decision: row.decision });
    if (row.decision !== 'allow') this.metrics.refusals.inc({ ecosystem: row.ecosystem, code: code ?? row.decision });
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
    this.meta.recordPull(row).catch((e) => this.log.error({ err: e, record: line }, 'failed to write pull record'));
  }
}
