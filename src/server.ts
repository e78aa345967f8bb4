import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import type { Dispatcher } from 'undici';
import { buildApp } from './app.js';
import { Authenticator } from './auth/tokens.js';
import { loadConfig, type LoadedConfig } from './config/load.js';
import { BlobCache } from './core/fill.js';
import { HashPool } from './core/hasher.js';
import { Recorder } from './core/records.js';
import { createLogger, type Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import { Advisories, type Policy } from './policy/index.js';
import type { OsvRecord } from './policy/advisories.js';
import { Hub } from './hf/hub.js';
import { createHfApp } from './hf/routes.js';
import { registryFromConfig, type RegistryClient } from './oci/registry-client.js';
import { createOciApp } from './oci/routes.js';
import { PypiIndex } from './pypi/index.js';
import { createPypiApp } from './pypi/routes.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import { SqliteMetaStore } from './storage/sqlite-meta-store.js';
import { UpstreamHttp } from './upstream/http.js';

export interface AirlockOptions {
  log?: Logger;
  dispatcher?: Dispatcher;
  /** Collect Node default metrics (off in tests that build many instances). */
  defaultMetrics?: boolean;
}

/** The composition root: the only place concrete stores and clients are chosen. */
export async function createAirlock(loaded: LoadedConfig, opts: AirlockOptions = {}) {
  const { config } = loaded;
  const log = opts.log ?? createLogger(config.log_level);
  mkdirSync(loaded.dataDir, { recursive: true });
  const meta = new SqliteMetaStore(join(loaded.dataDir, 'airlock.db'));
  const store = await FsBlobStore.create(loaded.dataDir);
  const metrics = new Metrics(opts.defaultMetrics ?? true);
  const http = new UpstreamHttp({ dispatcher: opts.dispatcher, headersTimeoutMs: config.pypi.timeout * 1000 });
  const hashes = new HashPool(1).warm();
  const cache = new BlobCache(store, meta, hashes, (sha256, e) => log.error({ digest: sha256, err: (e as Error).message }, 'verified blob could not be committed to the store; it will be fetched again next time'));
  const recorder = new Recorder(meta, metrics, log);
  const readAdvisories = async () => new Advisories((await meta.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord));
  let advisories = await readAdvisories();
  let policy: Policy = loaded.policy.withAdvisories(advisories);

  const index = new PypiIndex({
    http,
    meta,
    metrics,
    log,
    publicUrl: config.pypi.upstream,
    internalUrl: config.pypi.internal,
    fileHosts: config.pypi.file_hosts,
    ttlSeconds: config.pypi.index_ttl,
    maxPageBytes: config.pypi.max_page_bytes,
  });
  const pypi = createPypiApp({ policy: () => policy, index, cache, http, recorder, log, pageMaxAge: Math.min(config.pypi.index_ttl, 300) });
  const ociHttp = new UpstreamHttp({ dispatcher: opts.dispatcher, headersTimeoutMs: config.oci.timeout * 1000 });
  const registries = new Map<string, RegistryClient>();
  for (const [key, r] of Object.entries(config.oci.registries)) registries.set(key, registryFromConfig(key, r, ociHttp));
  const oci = createOciApp({
    authenticator: new Authenticator(meta),
    policy: () => policy,
    registries,
    defaultRegistry: config.oci.default_registry,
    cache,
    meta,
    recorder,
    log,
    maxManifestBytes: config.oci.max_manifest_bytes,
  });
  const hfHttp = new UpstreamHttp({ dispatcher: opts.dispatcher, headersTimeoutMs: config.hf.timeout * 1000 });
  const hub = new Hub({
    http: hfHttp,
    meta,
    log,
    upstream: config.hf.upstream,
    fileHosts: config.hf.file_hosts,
    token: config.hf.token_env ? process.env[config.hf.token_env] : undefined,
    maxMetadataBytes: config.hf.max_metadata_bytes,
  });
  const hf = createHfApp({ policy: () => policy, hub, cache, meta, recorder, log, maxFileBytes: config.hf.max_file_bytes });
  const authenticator = new Authenticator(meta);
  const app = buildApp({ auth: { authenticator, modes: config.auth }, log, metrics, meta, frontends: { '/pypi': pypi, '/v2': oci, '/hf': hf } });

  const DAY = 86_400_000;
  const prune = async () => {
    if (config.records.retention_days <= 0) return;
    await recorder.flush();
    const n = await meta.prunePulls(Date.now() - config.records.retention_days * DAY, 'airlock-retention');
    if (n > 0) log.info({ removed: n, retentionDays: config.records.retention_days }, 'pull records pruned (a chained audit/prune event records it)');
  };
  await prune();
  const pruneTimer = setInterval(() => void prune().catch((e) => log.error({ err: (e as Error).message }, 'record pruning failed')), DAY);
  pruneTimer.unref();

  return {
    app,
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
        policy = loadConfig(loaded.configFile).policy.withAdvisories(advisories);
        log.info({ file: loaded.policyFile, pypi: policy.pypi.size, oci: policy.oci.size, hf: policy.hf.size }, 'policy reloaded');
        return true;
      } catch (e) {
        log.error({ err: (e as Error).message }, 'policy reload failed; keeping the previous policy');
        return false;
      }
    },
    recorder,
    async close() {
      clearInterval(pruneTimer);
      await recorder.flush();
      await hashes.close();
      await http.close();
      await ociHttp.close();
      await hfHttp.close();
      await meta.close();
    },
  };
}

export type Airlock = Awaited<ReturnType<typeof createAirlock>>;

function splitListen(listen: string): { hostname: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { hostname: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

/** Start listening; resolves once the socket is bound. */
export async function startServer(loaded: LoadedConfig, opts: AirlockOptions = {}): Promise<{ airlock: Airlock; server: ServerType; port: number; stop: () => Promise<void> }> {
  const airlock = await createAirlock(loaded, opts);
  const { hostname, port } = splitListen(loaded.config.listen);
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: airlock.app.fetch, hostname, port }, () => resolve(s));
    s.once('error', reject);
  });
  const bound = (server.address() as AddressInfo).port;
  airlock.log.info({ listen: `${hostname}:${bound}`, dataDir: loaded.dataDir, config: loaded.configFile }, 'airlock listening');
  return {
    airlock,
    server,
    port: bound,
    stop: async () => {
      await new Promise<void>((r) => {
        server.close(() => r());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await airlock.close();
    },
  };
}
