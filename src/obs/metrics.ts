import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics (prom-client). Label values are bounded: ecosystems, cache states, refusal codes. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'airlock_http_requests_total',
    help: 'HTTP requests answered, by front-end and status class',
    labelNames: ['ecosystem', 'status'] as const,
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'airlock_bytes_sent_total',
    help: 'Artefact bytes sent to clients',
    labelNames: ['ecosystem', 'cache'] as const,
    registers: [this.registry],
  });
  readonly pulls = new Counter({
    name: 'airlock_pulls_total',
    help: 'Artefacts served or refused',
    labelNames: ['ecosystem', 'cache', 'decision'] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'airlock_refusals_total',
    help: 'Refusals by reason code',
    labelNames: ['ecosystem', 'code'] as const,
    registers: [this.registry],
  });
  readonly upstreamLatency = new Histogram({
    name: 'airlock_upstream_request_seconds',
    help: 'Time to upstream response headers',
    labelNames: ['ecosystem', 'kind', 'outcome'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly stalePages = new Counter({
    name: 'airlock_stale_pages_served_total',
    help: 'Index pages served from cache because the upstream failed',
    labelNames: ['ecosystem'] as const,
    registers: [this.registry],
  });

  readonly recordFailures = new Counter({
    name: 'airlock_record_write_failures_total',
    help: 'Pull records that could not be written (their artefacts were withheld)',
    registers: [this.registry],
  });
  readonly corruptBlobs = new Counter({
    name: 'airlock_corrupt_blobs_total',
    help: 'Stored blobs found not to match their digest (forgotten and fetched again)',
    registers: [this.registry],
  });
  readonly evictions = new Counter({
    name: 'airlock_cache_evictions_total',
    help: 'Blobs evicted from the cache to stay under cache.max_bytes or keep cache.min_free_bytes free',
    registers: [this.registry],
  });
  readonly diskFree = new Gauge({
    name: 'airlock_disk_free_bytes',
    help: "Free bytes on the blob store's filesystem (measured when a fill starts or a blob is stored; cache.min_free_bytes is kept)",
    registers: [this.registry],
  });
  readonly diskRefusals = new Counter({
    name: 'airlock_fills_refused_disk_total',
    help: 'New fills refused because the disk was at cache.min_free_bytes and nothing more could be evicted',
    registers: [this.registry],
  });
  readonly cacheBytes = new Gauge({
    name: 'airlock_cache_bytes',
    help: 'Bytes of verified blobs in the cache',
    registers: [this.registry],
  });
  readonly slowUpstreams = new Counter({
    name: 'airlock_upstream_cut_total',
    help: 'Upstream downloads cut or cancelled by their budget, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly refusalsRateLimited = new Counter({
    name: 'airlock_refusals_rate_limited_total',
    help: "Refusals past their client's refusal rate limit (answered 429, folded into one row per client and window)",
    labelNames: ['ecosystem'] as const,
    registers: [this.registry],
  });
  readonly refusalsFolded = new Counter({
    name: 'airlock_refusals_folded_total',
    help: 'Refusals folded into a repeat row instead of a row each (identical to one recorded in the fold window)',
    labelNames: ['ecosystem'] as const,
    registers: [this.registry],
  });
  readonly recordBytes = new Gauge({
    name: 'airlock_record_bytes',
    help: 'Estimated size of the pull record (bytes); pruned oldest first past records.max_bytes',
    registers: [this.registry],
  });
  readonly recordRows = new Gauge({
    name: 'airlock_record_rows',
    help: 'Rows in the pull record',
    registers: [this.registry],
  });
  /** The Sigstore trusted root's age (issue 26): since its import, or its newest key for the shipped one; -1 with no usable root. */
  readonly trustRootAge: Gauge = new Gauge({
    name: 'airlock_trust_root_age_seconds',
    help: 'Age of the Sigstore trusted root in use: since its import, or since its newest key for the shipped root (-1: no usable root)',
    registers: [this.registry],
    collect: (): void => this.trustRootAge.set(this.trustRoot?.ageSeconds() ?? -1),
  });
  private trustRoot: { ageSeconds(): number | null } | undefined;
  /** Report this root's age in airlock_trust_root_age_seconds. */
  watchTrustRoot(roots: { ageSeconds(): number | null }): void {
    this.trustRoot = roots;
  }
  /** Advisory feeds (issue 28): each source's data age, since its newest good sync on any replica; -1 before the first. */
  readonly advisoriesAge: Gauge = new Gauge({
    name: 'airlock_advisories_age_seconds',
    help: "Seconds since each advisory source's newest good sync on any replica (advisories.sources; -1: never synced)",
    labelNames: ['source'] as const,
    registers: [this.registry],
    collect: (): void => {
      this.advisoriesAge.reset();
      for (const f of this.advisoryFeeds?.() ?? []) this.advisoriesAge.set({ source: f.source }, f.ageSeconds ?? -1);
    },
  });
  readonly advisorySyncs = new Counter({
    name: 'airlock_advisory_syncs_total',
    help: 'Advisory feed syncs run by this replica, by source and outcome (changed, unchanged, failed)',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  });
  private advisoryFeeds: (() => { source: string; ageSeconds: number | null }[]) | undefined;
  /** Report these sources' ages in airlock_advisories_age_seconds. */
  watchAdvisoryFeeds(ages: () => { source: string; ageSeconds: number | null }[]): void {
    this.advisoryFeeds = ages;
  }
  readonly recordBudgetPrunes = new Counter({
    name: 'airlock_record_budget_pruned_total',
    help: 'Pull records pruned (oldest first) to keep the record within records.max_bytes',
    registers: [this.registry],
  });
  readonly backgroundJudgements = new Counter({
    name: 'airlock_image_background_judgements_total',
    help: 'Pinned images of gated repositories judged in the background after a policy load, by outcome (queued; then done, known: judged before, failed, or dropped: unpinned or ungated before its turn)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamQueueWait = new Histogram({
    name: 'airlock_upstream_queue_seconds',
    help: 'Time upstream requests waited for a connection of their host (transfers.host_connections, host_large), by host and class (small, large)',
    labelNames: ['host', 'class'] as const,
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120],
    registers: [this.registry],
  });
  private readonly upstreamClients: UpstreamQueues[] = [];
  readonly upstreamQueued = new Gauge({
    name: 'airlock_upstream_queued',
    help: 'Upstream requests waiting now for a connection of their host, by host and class (small, large)',
    labelNames: ['host', 'class'] as const,
    registers: [this.registry],
    collect: () => this.collectQueues('queued'),
  });
  readonly upstreamConnections = new Gauge({
    name: 'airlock_upstream_connections',
    help: 'Upstream connections in use now, by host and class (small, large)',
    labelNames: ['host', 'class'] as const,
    registers: [this.registry],
    collect: () => this.collectQueues('connections'),
  });

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'airlock_' });
  }

  /** Follow upstream clients' host queues: each request's wait, and queue lengths when scraped. */
  watchUpstreams(clients: UpstreamQueues[]): void {
    for (const c of clients) {
      this.upstreamClients.push(c);
      c.onQueueWait((host, cls, seconds) => this.upstreamQueueWait.observe({ host, class: cls }, seconds));
    }
  }

  /** Each host's queue (or connections) now, summed over the ecosystems' clients; an idle host is not shown. */
  private collectQueues(which: 'queued' | 'connections'): void {
    const g = which === 'queued' ? this.upstreamQueued : this.upstreamConnections;
    g.reset();
    for (const c of this.upstreamClients) {
      for (const q of c.queues()) {
        g.inc({ host: q.host, class: 'small' }, which === 'queued' ? q.waitingSmall : q.small);
        g.inc({ host: q.host, class: 'large' }, which === 'queued' ? q.waitingLarge : q.large);
      }
    }
  }
}

/** What metrics need of an upstream client (src/upstream/http.ts UpstreamHttp). */
export interface UpstreamQueues {
  queues(): { host: string; small: number; large: number; waitingSmall: number; waitingLarge: number }[];
  onQueueWait(listener: (host: string, cls: 'small' | 'large', seconds: number) => void): void;
}
