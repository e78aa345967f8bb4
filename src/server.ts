import type { AddressInfo } from 'node:net';
import { createServer as createHttpServer, type RequestListener, type ServerOptions } from 'node:http';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { serve, type ServerType } from '@hono/node-server';
import { buildApp } from './app.js';
import { withFastPath } from './http/fast.js';
import { createConsole } from './console/routes.js';
import { Authenticator } from './auth/tokens.js';
import { changedSettings, loadConfig, type LoadedConfig } from './config/load.js';
import { splitListen } from './config/preflight.js';
import { backgroundScrub } from './core/scrub.js';
import { HashPool } from './core/hasher.js';
import { createLogger, type Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import { Advisories, type Policy } from './policy/index.js';
import type { OsvRecord } from './policy/advisories.js';
import { HF } from './hf/frontend.js';
import { createHfApp } from './hf/routes.js';
import { OCI } from './oci/frontend.js';
import { PYPI } from './pypi/frontend.js';
import { createOciApp } from './oci/routes.js';
import { ImageGate } from './oci/gate.js';
import { keepRecord } from './core/record-budget.js';
import { ImageInventories } from './oci/inventory.js';
import { createPypiApp } from './pypi/routes.js';
import { blobCache, hfHub, ociRegistries, openBlobs, openMeta, pypiIndex, upstreamHttp } from './backends.js';

export interface AirlockOptions {
  log?: Logger;
  /** Collect Node default metrics (off in tests that build many instances). */
  defaultMetrics?: boolean;
}

/**
 * The composition root: stores and clients come from backends.ts, the one place they are chosen.
 * One function on purpose: every piece of the server is built and wired here, in order.
 */
export async function createAirlock(loaded: LoadedConfig, opts: AirlockOptions = {}) {
  const { config } = loaded;
  const log = opts.log ?? createLogger(config.log_level);
  const meta = await openMeta(loaded, { create: true });
  const store = await openBlobs(loaded);
  const metrics = new Metrics(opts.defaultMetrics ?? true);
  const http = upstreamHttp(loaded, 'pypi');
  const hashes = new HashPool(1).warm();
  const cache = blobCache(loaded, { store, meta, hashes, log, metrics }, { serving: true });
  void cache.evict().catch((e) => log.error({ err: (e as Error).message }, 'cache eviction failed'));
  const scrubber = backgroundScrub(cache, config.cache, log);
  if (config.storage.meta === 'postgres' && config.storage.blobs === 'fs') {
    log.warn({}, 'metadata is shared (PostgreSQL) but blobs are in a local directory: run one replica, or share blobs too (storage.blobs: s3)');
  }
  const record = keepRecord(meta, metrics, log, config.records);
  const recorder = record.recorder;
  const readAdvisories = async () => new Advisories((await meta.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord));
  let advisories = await readAdvisories();
  let policy: Policy = loaded.policy.withAdvisories(advisories);
  let lastReload: { at: number; error?: string } | null = null;
  // The policy's version as a reviewed change names it: the SHA-256 of the file it came from.
  const versionOf = (file: string) => ({ file, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') });
  let policyVersion = versionOf(loaded.policyFile);

  const index = pypiIndex(loaded, { http, meta, metrics, log });
  const pypi = createPypiApp({ policy: () => policy, index, cache, http, recorder, log, pageMaxAge: Math.min(config.pypi.index_ttl, 300) });
  const ociHttp = upstreamHttp(loaded, 'oci');
  const registries = ociRegistries(loaded, ociHttp);
  const inventories = new ImageInventories(cache, meta.inventories, log);
  if (config.oci.inventory === 'on-fill') inventories.warm();
  const oci = createOciApp({
    inventories,
    gate: new ImageGate(inventories, meta, () => policy, log),
    authenticator: new Authenticator(meta),
    policy: () => policy,
    registries,
    defaultRegistry: config.oci.default_registry,
    cache,
    meta,
    recorder,
    log,
    maxManifestBytes: config.oci.max_manifest_bytes,
    inventoryOnFill: config.oci.inventory === 'on-fill',
  });
  const hfHttp = upstreamHttp(loaded, 'hf');
  const hub = hfHub(loaded, { http: hfHttp, meta, log });
  const hf = createHfApp({ policy: () => policy, hub, cache, meta, recorder, log, maxFileBytes: config.hf.max_file_bytes });
  const authenticator = new Authenticator(meta);
  // Readiness probes: a primary-key lookup in the metadata store and a stat in the blob store.
  const NOBODY = '0'.repeat(64);
  const probe = async (what: string, p: Promise<unknown>): Promise<string | null> => {
    try {
      await Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('no answer in 2 s')), 2000).unref())]);
      return null;
    } catch (e) {
      return `${what}: ${(e as Error).message}`;
    }
  };
  const unready = async () =>
    (await Promise.all([probe('metadata store', meta.getBlob(NOBODY)), probe('blob store', store.stat(NOBODY))])).filter((x): x is string => x !== null);
  const consoleApp = createConsole({
    meta,
    log,
    policy: () => policy,
    advisories: () => advisories,
    lastReload: () => lastReload,
    upstreams: () => [...http.failing(), ...ociHttp.failing(), ...hfHttp.failing()],
    hits: async () => {
      let hits = 0;
      let served = 0;
      for (const v of (await metrics.pulls.get()).values) {
        if (v.labels.decision !== 'allow') continue;
        served += v.value;
        if (v.labels.cache === 'hit') hits += v.value;
      }
      return { hits, served };
    },
    policyVersion: () => policyVersion,
    policySizes: () => ({ pypi: policy.pypi.size, oci: policy.oci.size, hf: policy.hf.size }),
    recordHealth: () => recorder.health(),
  });
  const { app, fast } = buildApp({
    auth: { authenticator, modes: config.auth },
    log,
    metrics,
    meta,
    recorder,
    unready,
    warnings: record.warnings,
    console: consoleApp,
    frontends: [
      { ...PYPI, app: pypi.app, fast: pypi.fast },
      { ...OCI, app: oci },
      { ...HF, app: hf },
    ],
  });

  await record.start();

  return {
    app,
    fast,
    log,
    meta,
    store,
    cache,
    metrics,
    /** Re-read imported advisories (after `airlock advisories import`); returns how many are active. */
    async reloadAdvisories(): Promise<number> {
      advisories = await readAdvisories();
      policy = policy.withAdvisories(advisories);
      log.info({ advisories: advisories.size }, 'advisories reloaded');
      return advisories.size;
    },
    /** Re-read the policy from disk; a bad file keeps the old policy and says why. */
    reloadPolicy(): boolean {
      try {
        const next = loadConfig(loaded.configFile);
        policy = next.policy.withAdvisories(advisories);
        lastReload = { at: Date.now() };
        policyVersion = versionOf(next.policyFile);
        log.info({ file: loaded.policyFile, pypi: policy.pypi.size, oci: policy.oci.size, hf: policy.hf.size }, 'policy reloaded');
        if (policy.pypi.size + policy.oci.size + policy.hf.size === 0)
          log.warn({ file: loaded.policyFile }, 'the reloaded policy allows nothing: every pull is refused');
        // Only the policy is applied on reload; say so when other settings changed in the file.
        const changed = changedSettings(loaded.config, next.config);
        if (changed.length) log.warn({ changed }, 'configuration changes outside the policy need a restart; they were not applied');
        return true;
      } catch (e) {
        log.error({ err: (e as Error).message }, 'policy reload failed; keeping the previous policy');
        lastReload = { at: Date.now(), error: (e as Error).message };
        return false;
      }
    },
    recorder,
    /** The record's size budget (records.max_bytes): checked every minute; `check()` now. */
    budget: record.budget,
    async close() {
      record.stop();
      scrubber.stop();
      await cache.shutdown();
      await cache.flushUses().catch(() => {});
      await recorder.flush();
      await hashes.close();
      await http.close();
      await ociHttp.close();
      inventories.close();
      await hfHttp.close();
      await meta.close();
    },
  };
}

export type Airlock = Awaited<ReturnType<typeof createAirlock>>;

/** Start listening; resolves once the socket is bound. */
export async function startServer(
  loaded: LoadedConfig,
  opts: AirlockOptions = {},
): Promise<{ airlock: Airlock; server: ServerType; port: number; stop: (graceMs?: number) => Promise<void> }> {
  const airlock = await createAirlock(loaded, opts);
  const { hostname, port } = splitListen(loaded.config.listen);
  const server = await new Promise<ServerType>((resolve, reject) => {
    // The router's listener behind the fast path for warm pages (src/http/fast.ts).
    const createServer = ((opts: ServerOptions, listener: RequestListener) =>
      createHttpServer(opts, withFastPath(airlock.fast, listener))) as typeof createHttpServer;
    const s = serve({ fetch: airlock.app.fetch, hostname, port, createServer }, () => resolve(s));
    s.once('error', reject);
  });
  const bound = (server.address() as AddressInfo).port;
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
      await new Promise<void>((r) => {
        const cut = setTimeout(() => s.closeAllConnections?.(), graceMs);
        server.close(() => (clearTimeout(cut), r()));
        s.closeIdleConnections?.();
        if (graceMs <= 0) s.closeAllConnections?.();
      });
      await airlock.close();
    },
  };
}
