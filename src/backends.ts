import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedConfig } from './config/load.js';
import { Hub } from './hf/hub.js';
import type { Logger } from './obs/logger.js';
import type { Metrics } from './obs/metrics.js';
import { registryFromConfig, type RegistryClient } from './oci/registry-client.js';
import { PypiIndex } from './pypi/index.js';
import type { BlobStore } from './storage/blob-store.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import type { MetaStore } from './storage/meta-store.js';
import { SqliteMetaStore } from './storage/sqlite-meta-store.js';
import { PgMetaStore } from './storage/pg-meta-store.js';
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
 * names), its schema brought up to date. Close it when done.
 */
export async function openMeta(loaded: LoadedConfig, opts: { create?: boolean } = {}): Promise<MetaStore> {
  const s = loaded.config.storage;
  if (s.meta === 'postgres') {
    const url = process.env[s.postgres_url_env];
    if (!url)
      throw new AirlockError(
        'BAD_REQUEST',
        `storage.meta is postgres but ${s.postgres_url_env} is not set (the connection string, e.g. postgres://airlock@db:5432/airlock)`,
      );
    try {
      return await PgMetaStore.open(url, { schema: s.postgres_schema, max: s.postgres_pool });
    } catch (e) {
      throw new AirlockError('UPSTREAM_UNAVAILABLE', `PostgreSQL (${s.postgres_url_env}): ${(e as Error).message}`, { cause: e });
    }
  }
  if (opts.create) mkdirSync(loaded.dataDir, { recursive: true });
  return new SqliteMetaStore(join(loaded.dataDir, 'airlock.db'));
}

/** The embedded SQLite store in the data directory, whatever storage.meta says (the source of `airlock migrate --from sqlite`). */
export function openEmbeddedMeta(loaded: LoadedConfig): MetaStore {
  return new SqliteMetaStore(join(loaded.dataDir, 'airlock.db'));
}

/** The blob store. `cleanSpool: false` for commands that run beside a live server. */
export async function openBlobs(loaded: LoadedConfig, opts: { cleanSpool?: boolean } = {}): Promise<BlobStore> {
  const st = loaded.config.storage;
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
      },
      opts,
    );
  }
  return FsBlobStore.create(loaded.dataDir, opts);
}

/** One upstream HTTP client per ecosystem, with that ecosystem's timeout. */
export function upstreamHttp(loaded: LoadedConfig, ecosystem: 'pypi' | 'oci' | 'hf'): UpstreamHttp {
  return new UpstreamHttp({ headersTimeoutMs: loaded.config[ecosystem].timeout * 1000 });
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
