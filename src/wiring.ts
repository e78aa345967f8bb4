import { Authenticator } from './auth/tokens.js';
import type { Config } from './config/schema.js';
import { createConsole, type ConsoleDeps } from './console/routes.js';
import type { BlobCache } from './core/cache.js';
import type { LivePolicy } from './core/live-policy.js';
import type { Recorder } from './core/records.js';
import type { FrontEnd } from './http/frontend.js';
import { HF } from './hf/frontend.js';
import type { Hub } from './hf/hub.js';
import { createHfApp } from './hf/routes.js';
import { BackgroundJudge } from './oci/background.js';
import { OCI } from './oci/frontend.js';
import { ImageGate } from './oci/gate.js';
import type { ImageInventories } from './oci/inventory.js';
import type { RegistryClient } from './oci/registry-client.js';
import { createOciApp } from './oci/routes.js';
import { OciUpstream } from './oci/upstream.js';
import type { Logger } from './obs/logger.js';
import type { Metrics } from './obs/metrics.js';
import { PYPI } from './pypi/frontend.js';
import type { PypiIndex } from './pypi/index.js';
import { integrityBaseOf, provenanceBase, Provenances } from './pypi/provenance.js';
import { createPypiApp } from './pypi/routes.js';
import type { BlobStore } from './storage/blob-store.js';
import type { TrustRoots } from './signing/trust.js';
import type { Continuity } from './signing/continuity.js';
import type { MetaStore } from './storage/meta-store.js';
import type { UpstreamHttp } from './upstream/http.js';

/** What every front-end shares: the policy in force, the verified cache, the metadata store, the record and the log. */
export interface Shared {
  live: LivePolicy;
  cache: BlobCache;
  meta: MetaStore;
  recorder: Recorder;
  log: Logger;
  /** The Sigstore trusted root in use (issue 26): shipped, or the newest imported; re-read on SIGHUP. */
  trust: TrustRoots;
  /** Continuity of signers (issue 26, item 6): one per process, shared by the three front-ends (its cache included; forgotten on SIGHUP). */
  continuity: Continuity;
}

/** Each ecosystem's upstream: the clients backends.ts chose (and the image inventories the OCI gate reads). */
export interface Upstreams {
  pypi: { http: UpstreamHttp; index: PypiIndex };
  oci: {
    registries: Map<string, RegistryClient>;
    inventories: ImageInventories;
    /** Judge pinned images of gated repositories in the background as policy loads see them (oci/background.ts). */
    background?: { metrics: Metrics; signal: AbortSignal; judge?: (j: BackgroundJudge) => void };
  };
  hf: { hub: Hub };
}

/** The three protocol front-ends, in mount order, each with its settings from the configuration. */
export function createFrontends(config: Config, s: Shared, u: Upstreams): FrontEnd[] {
  const { live, cache, meta, recorder, log, continuity } = s;
  const integrity = {
    public: config.pypi.integrity_url ?? integrityBaseOf(config.pypi.upstream),
    internal: config.pypi.internal ? integrityBaseOf(config.pypi.internal) : null,
  };
  const provenance = new Provenances({ http: u.pypi.http, meta, trust: s.trust, log, integrity });
  const pypi = createPypiApp({
    live,
    index: u.pypi.index,
    cache,
    http: u.pypi.http,
    recorder,
    log,
    pageMaxAge: Math.min(config.pypi.index_ttl, 300),
    provenance,
    continuity,
    provenanceBase: provenanceBase(config.public_url, PYPI.prefix),
  });
  const gate = new ImageGate(u.oci.inventories, meta, live, log);
  const ociUpstream = {
    registries: u.oci.registries,
    defaultRegistry: config.oci.default_registry,
    cache,
    meta,
    maxManifestBytes: config.oci.max_manifest_bytes,
  };
  const upstream = new OciUpstream(ociUpstream);
  const oci = createOciApp({
    ...ociUpstream,
    upstream,
    inventories: u.oci.inventories,
    gate,
    authenticator: new Authenticator(meta),
    live,
    recorder,
    log,
    inventoryOnFill: config.oci.inventory === 'on-fill',
    unknownBlobStatus: config.oci.unknown_blob_status,
    trust: s.trust,
    continuity,
  });
  const bg = u.oci.background;
  if (bg) {
    const judge = new BackgroundJudge({
      upstream,
      gate,
      inventories: u.oci.inventories,
      cache,
      live,
      log,
      signal: bg.signal,
      count: (outcome) => bg.metrics.backgroundJudgements.inc({ outcome }),
    });
    bg.judge?.(judge);
    judge.follow();
  }
  const hf = createHfApp({ live, hub: u.hf.hub, cache, meta, recorder, log, maxFileBytes: config.hf.max_file_bytes, trust: s.trust, continuity });
  return [
    { ...PYPI, app: pypi.app, fast: pypi.fast },
    { ...OCI, app: oci.app, fast: oci.fast },
    { ...HF, app: hf },
  ];
}

/** The console, reading the policy in force, the upstreams' breakers and this process's metrics. */
export function consoleFor(s: Shared, d: { metrics: Metrics; http: UpstreamHttp[]; feeds?: ConsoleDeps['feeds'] }): ReturnType<typeof createConsole> {
  const deps: ConsoleDeps = {
    meta: s.meta,
    log: s.log,
    live: s.live,
    upstreams: () => d.http.flatMap((h) => h.failing()),
    hits: async () => {
      let hits = 0;
      let served = 0;
      for (const v of (await d.metrics.pulls.get()).values) {
        if (v.labels.decision !== 'allow') continue;
        served += v.value;
        if (v.labels.cache === 'hit') hits += v.value;
      }
      return { hits, served };
    },
    recordHealth: () => s.recorder.health(),
    trust: s.trust,
    feeds: d.feeds,
  };
  return createConsole(deps);
}

/** Readiness probes: a primary-key lookup in the metadata store and a stat in the blob store, each answered within 2 s. */
export function readiness(meta: MetaStore, store: BlobStore): () => Promise<string[]> {
  const NOBODY = '0'.repeat(64);
  const probe = async (what: string, p: Promise<unknown>): Promise<string | null> => {
    try {
      await Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('no answer in 2 s')), 2000).unref())]);
      return null;
    } catch (e) {
      return `${what}: ${(e as Error).message}`;
    }
  };
  return async () =>
    (await Promise.all([probe('metadata store', meta.getBlob(NOBODY)), probe('blob store', store.stat(NOBODY))])).filter((x): x is string => x !== null);
}
