import type { AddressInfo, Socket } from 'node:net';
import { createServer as createHttpServer, type RequestListener, type ServerOptions } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';
import { channelsFrom } from './alerts/channels.js';
import { startAlerting } from './alerts/index.js';
import { buildApp } from './app.js';
import { withFastPath } from './http/fast.js';
import { withPeerRoute } from './http/peer.js';
import { SendWatch } from './http/send-watch.js';
import { Authenticator } from './auth/tokens.js';
import type { LoadedConfig } from './config/load.js';
import { splitListen } from './config/preflight.js';
import { HashPool } from './core/hasher.js';
import { LivePolicy, policyVersion } from './core/live-policy.js';
import { keepRecord } from './core/record-budget.js';
import { createLogger, type Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import type { BackgroundJudge } from './oci/background.js';
import { startBackgroundRescan, type NewlyRefused } from './hf/rescan.js';
import { ImageInventories } from './oci/inventory.js';
import { applyAdvisoryChanges, loadTrustRoots, readAdvisories, reloadAdvisories, reloadPolicy, reloadTrust } from './reload.js';
import { startCacheUpkeep, startRetention } from './upkeep.js';
import { consoleFor, createFrontends, readiness } from './wiring.js';
import { advisoryFeeds, blobCache, fleetPeer, type FleetPeer, hfHub, ociRegistries, openBlobs, openMeta, pypiIndex, upstreamHttp } from './backends.js';
import { AdvisoryFeeds } from './advisories/sync.js';
import type { MetaStore } from './storage/meta-store.js';
import { Continuity } from './signing/continuity.js';

export interface AirlockOptions {
  log?: Logger;
  /** Collect Node default metrics (off in tests that build many instances). */
  defaultMetrics?: boolean;
  /** storage.peers, for a server: the fleet's secret and this replica's address (set once it listens). */
  peer?: FleetPeer;
}

/**
 * The composition root, as a list of steps: stores and clients come from backends.ts (the one
 * place they are chosen), the front-ends and the console are wired in wiring.ts, the cache's
 * upkeep and record retention in upkeep.ts, policy and advisory reloads in reload.ts.
 */
export async function createAirlock(loaded: LoadedConfig, opts: AirlockOptions = {}) {
  const { config } = loaded;
  const log = opts.log ?? createLogger(config.log_level);
  const channels = channelsFrom(config.notify);
  const meta = await openMeta(loaded, { create: true, serving: log });
  const store = await openBlobs(loaded);
  const metrics = new Metrics(opts.defaultMetrics ?? true);
  const http = { pypi: upstreamHttp(loaded, 'pypi'), oci: upstreamHttp(loaded, 'oci'), hf: upstreamHttp(loaded, 'hf') };
  metrics.watchUpstreams([http.pypi, http.oci, http.hf]);
  const hashes = new HashPool(1).warm();
  const cache = blobCache(loaded, { store, meta, hashes, log, metrics }, { serving: true, peer: opts.peer });
  const scrubber = startCacheUpkeep(cache, config, log);
  const record = keepRecord(meta, metrics, log, config.records);
  const recorder = record.recorder;
  // What the hooks were last told of (advisories/applied.ts): the feeds' first look applies and tells anything newer.
  const told = await meta.advisoriesTold();
  const live = new LivePolicy(loaded.policy, await readAdvisories(meta), policyVersion(loaded.policyFile));
  const feedSetup = advisoryFeeds(loaded);
  metrics.watchUpstreams([feedSetup.http]);
  const a = config.advisories;
  const feeds = new AdvisoryFeeds({
    ...feedSetup,
    meta,
    intervalMs: a.interval * 1000,
    pollMs: a.poll * 1000,
    maxAgeMs: a.max_age * 1000,
    apply: (signal, ids) => applyAdvisoryChanges(meta, live, log, ids, signal),
    log,
    counted: (source, outcome) => metrics.advisorySyncs.inc({ source, outcome }),
  });
  metrics.watchAdvisoryFeeds(() => feeds.feeds());
  const trust = await loadTrustRoots(meta, log);
  metrics.watchTrustRoot(trust);
  const shared = { live, cache, meta, recorder, log, trust, continuity: new Continuity(meta) };

  const inventories = new ImageInventories(cache, meta.inventories, log);
  if (config.oci.inventory === 'on-fill') inventories.warm();
  if (live.policy.images.gatesAny()) inventories.warm('urgent'); // a first gated manifest should not wait for its reader to boot
  // Pinned images of gated repositories are judged in the background as each policy load sees them.
  const stopping = new AbortController();
  let backgroundJudge: BackgroundJudge | undefined;
  const frontends = createFrontends(config, shared, {
    pypi: { http: http.pypi, index: pypiIndex(loaded, { http: http.pypi, meta, metrics, log }) },
    oci: { registries: ociRegistries(loaded, http.oci), inventories, background: { metrics, signal: stopping.signal, judge: (j) => (backgroundJudge = j) } },
    hf: { hub: hfHub(loaded, { http: http.hf, meta, log }) },
  });
  const { app, fast } = buildApp({
    auth: { authenticator: new Authenticator(meta), modes: config.auth },
    log,
    metrics,
    meta,
    recorder,
    unready: readiness(meta, store),
    warnings: () => [...record.warnings(), cache.diskWarning(), ...feeds.warnings()].filter((w): w is string => w !== null),
    console: consoleFor(shared, { metrics, http: [http.pypi, http.oci, http.hf, feedSetup.http], feeds: () => feeds.feeds() }),
    frontends,
    trustedProxies: config.trusted_proxies,
  });
  const retention = startRetention(config.records, { recorder, meta, log });
  record.start();
  // Alerts about newly affected artefacts (issue 28): evaluated after each advisory import applied, sent through the outbox.
  const alerting = await startAlerting(config, channels, { meta, policy: () => live.policy, metrics, log, flush: () => recorder.flush() });
  // After a scanner upgrade, cached model files are judged again in the background (hf/rescan.ts); newly refused ones alert.
  const rescans = modelRescans(config, { meta, cache, live, metrics, log });
  if (alerting) rescans.subscribe((n) => alerting.modelFileRefused(n));
  feeds.start(told);

  return {
    app,
    fast,
    log,
    meta,
    store,
    cache,
    metrics,
    recorder,
    /** The record's size budget (records.max_bytes): checked every minute; `check()` now. */
    budget: record.budget,
    /** Re-read imported advisories (SIGHUP; a change in the store is also noticed every advisories.poll seconds); returns how many are active. */
    reloadAdvisories: () => sighupAdvisories(feeds, meta, live, log),
    /** The advisory feeds (advisories.sources): freshness, a sync now (tests). */
    feeds,
    /** Re-read the trusted root (after `airlock trust import`) and the recorded signers (`airlock trust accept`); returns the root's version, or null when none is usable. */
    reloadTrust: (): Promise<string | null> => (shared.continuity.forget(), reloadTrust(trust, log)),
    /** Re-read the policy from disk; a bad file keeps the old policy and says why. */
    reloadPolicy: (): boolean => reloadPolicy(loaded, live, log),
    /** Resolves once the background image judge has nothing queued or running (tests). */
    backgroundJudged: (): Promise<void> => backgroundJudge?.idle() ?? Promise.resolve(),
    /** Be told of each cached model file that the background rescan newly refuses (alerts). */
    onModelFileRefused: (h: (n: NewlyRefused) => void | Promise<void>): void => rescans.subscribe(h),
    /** Resolves with the number of newly refused files once the background rescan after a scanner upgrade is over (tests). */
    rescanned: (): Promise<number> => rescans.done,
    /** Alerting (notify.webhooks), or null when no channel is configured. */
    alerting,
    /** Upstream hosts failing now (the breaker; the console's overview). */
    failingUpstreams: () => [...http.pypi.failing(), ...http.oci.failing(), ...http.hf.failing()],
    async close() {
      stopping.abort();
      rescans.stop();
      await rescans.done;
      await feeds.stop();
      await alerting?.stop();
      await retention.stop();
      await record.stop();
      scrubber.stop();
      await cache.shutdown();
      // Transfers cut by the stop write their rows as they end (their connections are closed by now).
      await recorder.transfersEnded(5000);
      // A judgement under way ends with its cancelled fills; wait a little so it does not outlive the stores.
      await Promise.race([backgroundJudge?.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
      await cache.flushUses().catch(() => {});
      await recorder.flush();
      await hashes.close();
      inventories.close();
      await Promise.all([http.pypi, http.oci, http.hf, feedSetup.http].map((h) => h.close()));
      await meta.close();
    },
  };
}

/**
 * The background rescan after a scanner upgrade (hf/rescan.ts) with its metric; each newly refused
 * file is told to every subscriber, and those reported before a subscriber came are replayed to it
 * (the rescan starts with the server).
 */
function modelRescans(
  config: LoadedConfig['config'],
  d: { meta: Awaited<ReturnType<typeof openMeta>>; cache: ReturnType<typeof blobCache>; live: LivePolicy; metrics: Metrics; log: Logger },
) {
  const hooks: ((n: NewlyRefused) => void | Promise<void>)[] = [];
  const soFar: NewlyRefused[] = [];
  const tell = (h: (n: NewlyRefused) => void | Promise<void>, n: NewlyRefused) =>
    Promise.resolve(h(n)).catch((e) => d.log.error({ err: (e as Error).message }, 'a newly refused model file could not be reported'));
  const run = startBackgroundRescan({
    meta: d.meta,
    read: (sha256) => d.cache.fileBytes(sha256),
    policy: () => d.live.policy.hf,
    log: d.log,
    perMinute: config.hf.rescan_per_minute,
    onProgress: (r) => d.metrics.backgroundRescans.inc({ outcome: r.status }),
    onRefused: async (n) => {
      d.metrics.backgroundRescans.inc({ outcome: 'refused' });
      if (soFar.length < 1000) soFar.push(n);
      for (const h of hooks) await tell(h, n);
    },
  });
  return {
    ...run,
    subscribe(h: (n: NewlyRefused) => void | Promise<void>): void {
      hooks.push(h);
      for (const n of soFar) void tell(h, n);
    },
  };
}

export type Airlock = Awaited<ReturnType<typeof createAirlock>>;

/** Where other replicas reach this one (storage.peers.advertise, else the listen address when it names a host). */
function advertise(peer: FleetPeer | undefined, log: Logger, hostname: string, port: number): void {
  if (!peer || peer.addr) return;
  if (['0.0.0.0', '::', ''].includes(hostname)) {
    log.warn("storage.peers: listening on every interface with no storage.peers.advertise: other replicas wait for this one's commits");
    return;
  }
  peer.addr = `http://${hostname.includes(':') ? `[${hostname}]` : hostname}:${port}`;
}

/** Start listening; resolves once the socket is bound. */
export async function startServer(
  loaded: LoadedConfig,
  opts: AirlockOptions = {},
): Promise<{ airlock: Airlock; server: ServerType; port: number; stop: (graceMs?: number) => Promise<void> }> {
  const peer = fleetPeer(loaded, true);
  const airlock = await createAirlock(loaded, { ...opts, peer });
  const { hostname, port } = splitListen(loaded.config.listen);
  const server = await new Promise<ServerType>((resolve, reject) => {
    // The router's listener behind the fast path for warm pages (src/http/fast.ts).
    // Before both, the fleet's internal route (http/peer.ts), when replicas stream to each other.
    const createServer = ((opts: ServerOptions, listener: RequestListener) =>
      createHttpServer(opts, withPeerRoute(peer, airlock.cache, airlock.log, withFastPath(airlock.fast, listener)))) as typeof createHttpServer;
    const s = serve({ fetch: airlock.app.fetch, hostname, port, createServer }, () => resolve(s));
    s.once('error', reject);
  });
  // transfers.send_timeout: a client that stops reading does not keep its buffers and open file for ever.
  const sendWatch = new SendWatch(loaded.config.transfers.send_timeout * 1000, (socket, queued) =>
    airlock.log.warn({ client: socket.remoteAddress, queued }, 'a client took none of the bytes sent to it for transfers.send_timeout: connection closed'),
  );
  server.on('connection', (socket: Socket) => sendWatch.watch(socket));
  const bound = (server.address() as AddressInfo).port;
  advertise(peer, airlock.log, hostname, bound);
  airlock.log.info({ listen: `${hostname}:${bound}`, dataDir: loaded.dataDir, config: loaded.configFile }, 'airlock listening');
  return {
    airlock,
    server,
    port: bound,
    /**
     * Stop accepting, let transfers under way finish for up to `graceMs` (idle keep-alive
     * connections close at once), then cut what is left: a cut client sees an incomplete
     * transfer, never a clean end. Fills are then cancelled (their leases released, their spool
     * files removed) and the record flushed.
     */
    stop: async (graceMs = 0) => {
      const s = server as unknown as { closeAllConnections?: () => void; closeIdleConnections?: () => void };
      // server.close() closes only the keep-alive connections idle at that moment: one busy then
      // would go on taking requests through the grace. No new request is handled from now on (its
      // connection is dropped, as a refused one would be), and connections are closed as they go idle.
      server.removeAllListeners('request');
      server.on('request', (req: { socket: { destroy(): void } }) => req.socket.destroy());
      const idle = setInterval(() => s.closeIdleConnections?.(), 100);
      await new Promise<void>((r) => {
        const cut = setTimeout(() => s.closeAllConnections?.(), graceMs);
        server.close(() => (clearTimeout(cut), clearInterval(idle), r()));
        s.closeIdleConnections?.();
        if (graceMs <= 0) s.closeAllConnections?.();
      });
      sendWatch.stop();
      await airlock.close();
    },
  };
}

/**
 * A SIGHUP's re-read of the advisories: what changed in the store, told as a feed's notice; when
 * nothing did, every record re-read all the same. The feeds' stop (a shutdown, before the store
 * closes) ends that read at its next page. Returns how many are active.
 */
async function sighupAdvisories(feeds: AdvisoryFeeds, meta: MetaStore, live: LivePolicy, log: Logger): Promise<number> {
  if ((await feeds.notice()).length) return live.advisories.size;
  return reloadAdvisories(meta, live, log, feeds.signal).catch((e) => {
    if (feeds.signal.aborted) return live.advisories.size;
    throw e;
  });
}
