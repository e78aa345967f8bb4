import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
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
import { UpstreamHttp } from './upstream/http.js';

/**
 * Part of the composition root (with server.ts): the one place the configured backends and
 * upstream clients are built, for the server and for every command. Today the metadata store is
 * SQLite in the data directory and blobs live in a directory beside it.
 */

/** The metadata store (creating the data directory first when asked). Close it when done. */
export function openMeta(loaded: LoadedConfig, opts: { create?: boolean } = {}): MetaStore {
  if (opts.create) mkdirSync(loaded.dataDir, { recursive: true });
  return new SqliteMetaStore(join(loaded.dataDir, 'airlock.db'));
}

/** The blob store. `cleanSpool: false` for commands that run beside a live server. */
export function openBlobs(loaded: LoadedConfig, opts: { cleanSpool?: boolean } = {}): Promise<BlobStore> {
  return FsBlobStore.create(loaded.dataDir, opts);
}

/** One upstream HTTP client per ecosystem, with that ecosystem's timeout. */
export function upstreamHttp(loaded: LoadedConfig, ecosystem: 'pypi' | 'oci' | 'hf', dispatcher?: Dispatcher): UpstreamHttp {
  return new UpstreamHttp({ dispatcher, headersTimeoutMs: loaded.config[ecosystem].timeout * 1000 });
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
