import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { OsvFeed, type FeedSource } from './advisories/feed.js';
import { sourceName } from './config/advisories-schema.js';
import type { LoadedConfig } from './config/load.js';
import { BlobCache, type Offload } from './core/cache.js';
import { DiskReserve, freeBytesAt } from './core/disk-reserve.js';
import { HashPool } from './core/hasher.js';
import { ClientSlots } from './core/slots.js';
import { Hub } from './hf/hub.js';
import { createLogger, type Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import { registryFromConfig, type RegistryClient } from './oci/registry-client.js';
import { OciUpstream } from './oci/upstream.js';
import { PypiIndex } from './pypi/index.js';
import type { BlobStore } from './storage/blob-store.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import type { MetaStore } from './storage/meta-store.js';
import { SqliteMetaStore } from './storage/sqlite-meta-store.js';
import { AirlockError } from './core/errors.js';
import { UpstreamHttp } from './upstream/http.js';

/**
 * Part of the composition root (with server.ts): the one place the configured backends and
 * upstream clients are built, for the server and for every command. Metadata: SQLite in the data
 * directory (default) or PostgreSQL; blobs: a directory beside it (default) or an S3-compatible
 * store (storage.*).
 */

/**
 * The metadata store: SQLite in the data directory (created first when asked), or PostgreSQL
 * (storage.meta: postgres; its connection string in the environment variable the configuration
 * names), its schema brought up to date. Close it when done. `serving`: the server's own store, whose SQLite WAL
 * checkpoints run on a thread of their own (storage/sqlite-checkpointer.ts); the log hears if they
 * come back to the main thread.
 */
export async function openMeta(loaded: LoadedConfig, opts: { create?: boolean; serving?: Logger } = {}): Promise<MetaStore> {
  const s = loaded.config.storage;
  if (s.meta === 'postgres') {
    const url = process.env[s.postgres_url_env];
    if (!url)
      throw new AirlockError(
        'BAD_REQUEST',
        `storage.meta is postgres but ${s.postgres_url_env} is not set (the connection string, e.g. postgres://airlock@db:5432/airlock)`,
      );
    // Loaded only when configured, as the S3 client is: pg costs ~16 MB of RSS in a process on the embedded defaults.
    const { PgMetaStore } = await import('./storage/pg-meta-store.js');
    try {
      return await PgMetaStore.open(url, { schema: s.postgres_schema, max: s.postgres_pool });
    } catch (e) {
      throw new AirlockError('UPSTREAM_UNAVAILABLE', `PostgreSQL (${s.postgres_url_env}): ${(e as Error).message}`, { cause: e });
    }
  }
  if (opts.create) mkdirSync(loaded.dataDir, { recursive: true });
  const file = join(loaded.dataDir, 'airlock.db');
  let meta: SqliteMetaStore;
  try {
    meta = new SqliteMetaStore(file);
  } catch (e) {
    // A data_dir that does not exist (a command run where no server ran) or is not a directory: one line, not a stack trace.
    if ((e as { code?: string }).code !== 'SQLITE_CANTOPEN' && !/directory does not exist/.test((e as Error).message)) throw e;
    throw new AirlockError('BAD_REQUEST', `cannot open the metadata store ${file}: ${(e as Error).message} (is data_dir right?)`, { cause: e });
  }
  const log = opts.serving;
  if (log) meta.checkpointInBackground((why) => log.warn({ why }, 'SQLite WAL checkpoints are taken by the committing thread again'));
  return meta;
}

/** The embedded SQLite store in the data directory, whatever storage.meta says (the source of `airlock migrate --from sqlite`). */
export function openEmbeddedMeta(loaded: LoadedConfig): MetaStore {
  return new SqliteMetaStore(join(loaded.dataDir, 'airlock.db'));
}

/** The blob store. `cleanSpool: false` for commands that run beside a live server. */
export async function openBlobs(loaded: LoadedConfig, opts: { cleanSpool?: boolean } = {}): Promise<BlobStore> {
  const st = loaded.config.storage;
  const q = loaded.config.cache;
  const quarantine = { maxBytes: q.quarantine_max_bytes, maxAgeMs: q.quarantine_max_days * 86_400_000 };
  if (st.blobs === 's3') {
    const c = st.s3;
    if (!c) throw new AirlockError('BAD_REQUEST', 'storage.blobs is s3 but storage.s3 (bucket, endpoint...) is not set');
    const id = process.env[c.access_key_env];
    const secret = process.env[c.secret_key_env];
    // Loaded only when configured: the AWS SDK is large and warns about Node versions at import.
    const { S3BlobStore } = await import('./storage/s3-blob-store.js');
    return S3BlobStore.create(
      {
        endpoint: c.endpoint,
        region: c.region,
        bucket: c.bucket,
        prefix: c.prefix,
        forcePathStyle: c.path_style,
        credentials: id && secret ? { accessKeyId: id, secretAccessKey: secret } : undefined,
        // Fills are spooled and verified on local disk, then uploaded.
        spoolDir: join(loaded.dataDir, 'spool'),
        idleTimeoutMs: c.timeout * 1000,
        quarantine,
      },
      opts,
    );
  }
  return FsBlobStore.create(loaded.dataDir, { ...opts, quarantine });
}

/**
 * The advisory feeds (advisories.sources, issue 28): their own upstream client (the same class as
 * every ecosystem's: breaker, per-host connections, bounded reads), the OSV export reader over it,
 * and the sources with their names. Fleet syncs are leased under `owner`.
 */
export function advisoryFeeds(loaded: LoadedConfig): { http: UpstreamHttp; feed: OsvFeed; sources: FeedSource[]; owner: string } {
  const a = loaded.config.advisories;
  const t = loaded.config.transfers;
  const http = new UpstreamHttp({ headersTimeoutMs: Math.min(a.timeout, 60) * 1000, connectionsPerHost: t.host_connections, largePerHost: t.host_large });
  const feed = new OsvFeed(http, { maxBytes: a.max_bytes, timeoutMs: a.timeout * 1000, maxIncremental: a.max_incremental });
  const sources = a.sources.map((s) => ({ name: sourceName(s), url: s.url, ecosystem: s.ecosystem, incremental: s.incremental }));
  return { http, feed, sources, owner: `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}` };
}

/** One upstream HTTP client per ecosystem, with that ecosystem's timeout and the hosts' connections shared as transfers.* says. */
export function upstreamHttp(loaded: LoadedConfig, ecosystem: 'pypi' | 'oci' | 'hf'): UpstreamHttp {
  const t = loaded.config.transfers;
  return new UpstreamHttp({
    headersTimeoutMs: loaded.config[ecosystem].timeout * 1000,
    connectionsPerHost: t.host_connections,
    largePerHost: t.host_large,
    smallBytes: t.small_bytes,
    queueWaitMs: t.host_queue_wait * 1000,
  });
}

export function pypiIndex(loaded: LoadedConfig, d: { http: UpstreamHttp; meta: MetaStore; metrics: Metrics; log: Logger; ttlSeconds?: number }): PypiIndex {
  const c = loaded.config.pypi;
  return new PypiIndex({
    http: d.http,
    meta: d.meta,
    metrics: d.metrics,
    log: d.log,
    publicUrl: c.upstream,
    internalUrl: c.internal,
    fileHosts: c.file_hosts,
    ttlSeconds: d.ttlSeconds ?? c.index_ttl,
    maxPageBytes: c.max_page_bytes,
  });
}

export function hfHub(loaded: LoadedConfig, d: { http: UpstreamHttp; meta: MetaStore; log: Logger }): Hub {
  const c = loaded.config.hf;
  return new Hub({
    http: d.http,
    meta: d.meta,
    log: d.log,
    upstream: c.upstream,
    fileHosts: c.file_hosts,
    token: c.token_env ? process.env[c.token_env] : undefined,
    maxMetadataBytes: c.max_metadata_bytes,
  });
}

/** Every configured OCI registry's client, by its key. */
export function ociRegistries(loaded: LoadedConfig, http: UpstreamHttp): Map<string, RegistryClient> {
  return new Map(Object.entries(loaded.config.oci.registries).map(([key, r]) => [key, registryFromConfig(key, r, http)]));
}

/**
 * offload.* (warm bodies handed to nginx or to presigned object-store URLs): how the cache hands
 * over a stored blob, or undefined when Airlock sends bodies itself. Refuses a mode the blob
 * store cannot do.
 */
export function offloadFor(loaded: LoadedConfig, store: BlobStore): ((sha256: string) => Promise<Offload>) | undefined {
  const off = loaded.config.offload;
  if (off.mode === 'nginx' && loaded.config.storage.blobs !== 'fs')
    throw new AirlockError('BAD_REQUEST', 'offload.mode nginx needs the filesystem blob store (storage.blobs: fs); with s3 use presigned');
  if (off.mode === 'presigned' && !store.presign) throw new AirlockError('BAD_REQUEST', 'offload.mode presigned needs an object store (storage.blobs: s3)');
  if (off.mode === 'nginx') return async (sha256) => ({ header: ['x-accel-redirect', `${off.nginx_location}${sha256.slice(0, 2)}/${sha256}`] });
  if (off.mode === 'presigned') return async (sha256) => ({ redirect: await store.presign!(sha256, off.presign_seconds) });
  return undefined;
}

/**
 * The verified blob cache as configured, for the server and for every command that fills it
 * (`pin`, `image check`): the transfer budget and per-client slots (transfers.*), the size limit
 * and hit verification (cache.*), one fill per blob across replicas on PostgreSQL (a lease per
 * fill), corruption and eviction said in the log and counted. `serving`: the server, which also
 * hands warm bodies over (offload.*); a command never serves a body.
 */
export function blobCache(
  loaded: LoadedConfig,
  d: { store: BlobStore; meta: MetaStore; hashes: HashPool; log: Logger; metrics: Metrics },
  opts: { serving?: boolean; peer?: FleetPeer } = {},
): BlobCache {
  const { config } = loaded;
  const { log, metrics } = d;
  const t = config.transfers;
  return new BlobCache(d.store, d.meta, d.hashes, {
    onCommitError: (sha256, e) =>
      log.error({ digest: sha256, err: (e as Error).message }, 'verified blob could not be committed to the store; it will be fetched again next time'),
    onCorrupt: (sha256, got, quarantined) => {
      metrics.corruptBlobs.inc();
      log.error(
        { digest: sha256, got, quarantined },
        'a stored blob no longer matches its digest (disk corruption or tampering): quarantined, it will be fetched again',
      );
    },
    onCut: (why) => metrics.slowUpstreams.inc({ reason: why }),
    budget: {
      minRate: t.min_rate,
      windowMs: t.rate_window * 1000,
      deadlineMs: t.deadline * 1000,
      abandonMs: t.abandon_after * 1000,
      finishBytes: t.finish_bytes,
    },
    slots: new ClientSlots(t.per_client, t.queue_wait * 1000),
    // Replicas on one PostgreSQL: one upstream fill per blob across all of them (a lease per fill).
    fleet:
      config.storage.meta === 'postgres'
        ? {
            leases: d.meta,
            owner: `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`,
            staleMs: config.storage.lease_stale * 1000,
            peer: opts.peer ?? fleetPeer(loaded),
          }
        : undefined,
    maxBytes: config.cache.max_bytes,
    verifyHits: config.cache.verify_hits,
    maxFileShare: config.cache.max_file_share,
    log,
    offload: opts.serving ? offloadFor(loaded, d.store) : undefined,
    // nginx sends the store's file unverified: it is handed no Range, and a whole file only once hashed.
    offloadRecheckMs: config.offload.mode === 'nginx' ? config.offload.recheck_after * 1000 : undefined,
    onStored: (bytes) => metrics.cacheBytes.set(bytes),
    onEvict: (count, bytes, stored, why) => {
      metrics.evictions.inc(count);
      const limit = why === 'max_bytes' ? { maxBytes: config.cache.max_bytes } : { minFreeBytes: config.cache.min_free_bytes };
      log.info({ evicted: count, bytes, stored, ...limit }, `least recently used blobs evicted (cache.${why})`);
    },
    disk: diskReserve(loaded, metrics),
    onDiskRefused: (sha256, short) => {
      metrics.diskRefusals.inc();
      log.warn(
        { digest: sha256, short, minFreeBytes: config.cache.min_free_bytes },
        'a new fill was refused: the disk is at cache.min_free_bytes and nothing more can be evicted (warm hits are still served)',
      );
    },
  });
}

/** storage.peers: the fleet's shared secret, and where this replica answers other replicas (set once it listens). */
export type FleetPeer = { secret: Buffer; addr?: string };

/**
 * Replicas stream fills under way to each other (storage.peers, core/peer-stream.ts) when a
 * secret is configured (checked when the configuration was loaded). A command streams others'
 * fills but serves none: it has no address.
 */
export function fleetPeer(loaded: LoadedConfig, serving = false): FleetPeer | undefined {
  const p = loaded.config.storage.peers;
  const secret = p.secret_env !== undefined ? process.env[p.secret_env] : undefined;
  if (loaded.config.storage.meta !== 'postgres' || !secret) return undefined;
  return { secret: Buffer.from(secret), addr: serving ? p.advertise : undefined };
}

/**
 * The free-space reserve of the blob store's disk (cache.min_free_bytes): the filesystem store
 * only (an object store's space is not Airlock's to measure), off at 0.
 */
function diskReserve(loaded: LoadedConfig, metrics: Metrics): DiskReserve | undefined {
  const min = loaded.config.cache.min_free_bytes;
  if (loaded.config.storage.blobs !== 'fs' || min <= 0) return undefined;
  return new DiskReserve(min, freeBytesAt(loaded.dataDir), (free) => metrics.diskFree.set(free));
}

/** What a command gets to work with the OCI upstreams through the mirror's own stores. */
export interface OciSession {
  upstream: OciUpstream;
  cache: BlobCache;
  meta: MetaStore;
  log: Logger;
}

/**
 * For a command (`pin oci`, `image check`), beside a running server or not: the configured
 * stores, the blob cache built as the server builds it, and the OCI upstream service; all closed
 * when `use` is done (fills under way cancelled on failure, the cache brought under its limit).
 * Warnings and errors go to stderr as JSON lines, as the server would log them.
 */
export async function withOciUpstream<T>(loaded: LoadedConfig, use: (s: OciSession) => Promise<T>): Promise<T> {
  const log = createLogger('warn', process.stderr);
  const http = upstreamHttp(loaded, 'oci');
  const meta = await openMeta(loaded, { create: true });
  const hashes = new HashPool(1);
  let cache: BlobCache | undefined;
  try {
    const store = await openBlobs(loaded, { cleanSpool: false });
    cache = blobCache(loaded, { store, meta, hashes, log, metrics: new Metrics(false) });
    const upstream = new OciUpstream({
      registries: ociRegistries(loaded, http),
      defaultRegistry: loaded.config.oci.default_registry,
      cache,
      meta,
      maxManifestBytes: loaded.config.oci.max_manifest_bytes,
    });
    return await use({ upstream, cache, meta, log });
  } finally {
    if (cache) {
      await cache.shutdown();
      await cache.evict().catch((e) => log.error({ err: (e as Error).message }, 'cache eviction failed'));
    }
    await hashes.close();
    await http.close();
    await meta.close();
  }
}
