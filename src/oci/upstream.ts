import { createHash } from 'node:crypto';
import type { BlobCache } from '../core/cache.js';
import { AirlockError } from '../core/errors.js';
import type { UpstreamBody } from '../core/fill.js';
import { Refusal } from '../http/refusal.js';
import { isValidName, looksLikeHost, registryKey, type ImageRef } from '../names/oci.js';
import type { OciStore } from '../storage/meta-store.js';
import { contentLength, header, readBoundedBytes, type GetOptions } from '../upstream/http.js';
import { OciError } from './errors.js';
import { Manifests, type LoadedManifest } from './manifests.js';
import { MANIFEST_ACCEPT, ManifestError, indexEntries, parseManifest } from './reference.js';
import type { RegistryClient } from './registry-client.js';

export type { LoadedManifest } from './manifests.js';

/**
 * A pull from a registry Airlock is not configured for: a refusal on record (not_allowlisted, rule
 * oci.registries), answered 404 NAME_UNKNOWN as before (clients with several mirrors fall back to
 * the next one on a 404).
 */
function unconfigured(repo: string, reason: string): Refusal {
  return new Refusal({
    status: 404,
    code: 'not_allowlisted',
    rule: 'oci.registries',
    reason,
    row: { name: repo.slice(0, 300) },
    answer: new OciError(404, 'NAME_UNKNOWN', reason),
  });
}

/** Where a repository's content comes from: the repository as Airlock names it, and its upstream. */
export interface UpstreamTarget {
  /** Registry key (docker.io, ghcr.io, ...). */
  registry: string;
  /** The name as the upstream registry knows it (library/python). */
  upstreamName: string;
  /** Canonical "registry/name": what policy rules and records use. */
  repo: string;
  client: RegistryClient;
}

export interface OciUpstreamDeps {
  /** Upstream registries by the name clients use for them (docker.io, ghcr.io, ...). */
  registries: Map<string, RegistryClient>;
  defaultRegistry: string;
  cache: BlobCache;
  meta: OciStore;
  maxManifestBytes: number;
}

/** One image manifest of an image: the manifest itself, or one platform of an index. */
export interface PlatformManifest extends LoadedManifest {
  /** os/architecture[/variant] as the index names it (absent for a lone manifest). */
  platform?: string;
}

/**
 * The OCI upstream, one per process, for the server's /v2 routes and for the commands (`pin oci`,
 * `image check`) alike: which upstream a repository comes from, its manifests fetched and verified
 * once (concurrent callers share one request; the bytes are checked against the digest asked for,
 * or against the digest the registry claims for a tag) and kept in the store, and its blobs opened
 * for the verified fill.
 */
export class OciUpstream {
  private readonly manifests: Manifests;
  private readonly flights = new Map<string, Promise<LoadedManifest>>();
  /** Manifest requests sent upstream (tests and diagnostics). */
  manifestFetches = 0;

  constructor(private readonly d: OciUpstreamDeps) {
    this.manifests = new Manifests(d.cache, d.meta, d.maxManifestBytes);
  }

  /**
   * The upstream of a name as clients send it in a /v2/ path: a registry host as its first
   * component (path-prefix mirrors: podman, skopeo), ?ns= (containerd), else the default registry.
   */
  target(name: string, ns?: string): UpstreamTarget {
    let registry: string | undefined;
    let upstreamName = name;
    const slash = name.indexOf('/');
    const first = slash > 0 ? name.slice(0, slash) : '';
    if (first && looksLikeHost(first)) {
      registry = registryKey(first);
      upstreamName = name.slice(slash + 1);
      if (!this.d.registries.has(registry))
        throw unconfigured(`${registry}/${upstreamName}`, `registry ${first} is not configured in Airlock (oci.registries)`);
    }
    if (ns !== undefined) {
      const nsKey = registryKey(ns.toLowerCase());
      if (registry && nsKey !== registry) {
        throw new OciError(400, 'NAME_INVALID', `the path names registry ${registry} but ?ns= names ${ns.slice(0, 100)}; refusing the ambiguous request`);
      }
      if (!this.d.registries.has(nsKey)) {
        throw unconfigured(`${nsKey.slice(0, 100)}/${upstreamName}`, `registry ${ns.slice(0, 100)} (from ?ns=) is not configured in Airlock (oci.registries)`);
      }
      registry = nsKey;
    }
    registry ??= this.d.defaultRegistry;
    if (registry === 'docker.io' && !upstreamName.includes('/')) upstreamName = `library/${upstreamName}`;
    if (!isValidName(upstreamName)) {
      throw new OciError(
        400,
        'NAME_INVALID',
        `${JSON.stringify(upstreamName.slice(0, 100))} is not a valid repository name (lowercase components separated by /)`,
      );
    }
    return { registry, upstreamName, repo: `${registry}/${upstreamName}`, client: this.d.registries.get(registry)! };
  }

  /** The upstream of a parsed image reference (names/oci.ts parseImageRef): its registry must be configured. */
  targetOf(ref: ImageRef): UpstreamTarget {
    const client = this.d.registries.get(ref.registry);
    if (!client) {
      const known = [...this.d.registries.keys()].join(', ') || 'none';
      throw new OciError(404, 'NAME_UNKNOWN', `registry ${ref.registry} is not configured in oci.registries (configured: ${known})`);
    }
    return { registry: ref.registry, upstreamName: ref.name, repo: ref.repository, client };
  }

  /**
   * A manifest by digest: held already, else fetched upstream (one request per repository and
   * digest at a time), verified against the digest (and the size an index declares for it),
   * then kept with its links. `fresh`: ask the registry even when it is held (`pin oci` checks
   * that the registry has what it pins).
   */
  async manifest(t: UpstreamTarget, digest: string, expectedSize?: number, opts: { fresh?: boolean } = {}): Promise<LoadedManifest> {
    const held = opts.fresh ? undefined : await this.manifests.held(t.repo, digest);
    if (held) return { digest, ...held, cache: 'hit' };
    return this.once(`${t.repo}@${digest}`, () => this.fetch(t, digest, { digest, size: expectedSize }));
  }

  /** A manifest held in memory and linked to the repository, or undefined (the fast path, fast.ts: anything else takes the route). */
  warm(repo: string, digest: string): { bytes: Buffer; mediaType: string } | undefined {
    return this.manifests.warm(repo, digest);
  }

  /**
   * What a tag names upstream now (`pin oci`, `image check`): the manifest fetched (concurrent
   * callers share the request), its digest computed over the exact bytes and checked against the
   * Docker-Content-Digest the registry claims, then kept like any other manifest. Never cached by
   * tag: tags move, and what Airlock serves for a tag is what the policy pins.
   */
  resolveTag(t: UpstreamTarget, tag: string): Promise<LoadedManifest> {
    return this.once(`${t.repo}:${tag}`, () => this.fetch(t, tag, {}));
  }

  /** A reference's manifest: by its digest when it has one, else by its tag. */
  resolve(t: UpstreamTarget, ref: Pick<ImageRef, 'tag' | 'digest'>, opts: { fresh?: boolean } = {}): Promise<LoadedManifest> {
    if (ref.digest) return this.manifest(t, ref.digest, undefined, opts);
    if (ref.tag) return this.resolveTag(t, ref.tag);
    throw new AirlockError('BAD_REQUEST', `${t.repo}: name a tag or a digest`);
  }

  /** A manifest already held (memory or cache), or undefined: never asks upstream. */
  held(repo: string, digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
    return this.manifests.held(repo, digest);
  }

  /** The image manifests of a manifest or index: itself, or each platform the index lists (attestations skipped), verified. */
  async platforms(t: UpstreamTarget, top: LoadedManifest): Promise<PlatformManifest[]> {
    if (!this.parse(t, top.digest, top.bytes, top.mediaType).isIndex) return [top];
    const entries = indexEntries(top.bytes).filter((e) => !e.attestation);
    return Promise.all(entries.map(async (e) => ({ ...(await this.manifest(t, e.digest, e.size)), ...(e.platform ? { platform: e.platform } : {}) })));
  }

  /** Open a blob upstream for the verified fill (BlobCache.fetch or ensure): the caller's spec checks its digest. */
  /** `transfer`: the blob's size and client when known (a blob body is large unless known small: src/upstream/host-slots.ts). */
  async openBlob(t: UpstreamTarget, digest: string, signal: AbortSignal, transfer: GetOptions['transfer'] = {}): Promise<UpstreamBody> {
    const res = await t.client.request(t.upstreamName, `blobs/${digest}`, { signal, transfer });
    if (res.status !== 200) {
      res.body.resume();
      if (res.status === 404) throw new AirlockError('NOT_FOUND', `${t.registry} does not have ${t.upstreamName}@${digest}`);
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${t.registry} answered ${res.status} for the blob ${t.upstreamName}@${digest}`);
    }
    return { body: res.body, size: contentLength(res.headers) };
  }

  /** One request per key at a time: later callers join it (and are told so). */
  private once(key: string, run: () => Promise<LoadedManifest>): Promise<LoadedManifest> {
    const flight = this.flights.get(key);
    if (flight) return flight.then((m) => ({ ...m, cache: 'join' }));
    const p = run().finally(() => this.flights.delete(key));
    this.flights.set(key, p);
    return p;
  }

  private parse(t: UpstreamTarget, ref: string, bytes: Buffer, contentType: string | undefined) {
    try {
      return parseManifest(bytes, contentType);
    } catch (e) {
      if (e instanceof ManifestError) throw new OciError(e.code === 'UNSUPPORTED' ? 415 : 502, e.code, `${t.repo}@${ref}: ${e.message}`);
      throw e;
    }
  }

  /** Fetch `manifests/<ref>` and verify it: against `want.digest` when asked by digest, else against the digest the registry claims. */
  private async fetch(t: UpstreamTarget, ref: string, want: { digest?: string; size?: number }): Promise<LoadedManifest> {
    this.manifestFetches++;
    const res = await t.client.request(t.upstreamName, `manifests/${ref}`, { accept: MANIFEST_ACCEPT });
    const sep = want.digest ? '@' : ':';
    if (res.status !== 200) {
      res.body.resume();
      if (res.status === 404) throw new OciError(404, 'MANIFEST_UNKNOWN', `${t.repo}${sep}${ref}: ${t.registry} answered 404 (it does not have it)`);
      if (res.status === 429) {
        const retry = header(res.headers, 'retry-after');
        throw new OciError(
          429,
          'TOOMANYREQUESTS',
          `${t.registry} is rate-limiting Airlock and ${t.repo}${sep}${ref} is not cached yet`,
          retry ? { 'retry-after': retry } : {},
        );
      }
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${t.registry} answered ${res.status} for the manifest ${t.upstreamName}${sep}${ref}`);
    }
    const bytes = await readBoundedBytes(res.body, this.d.maxManifestBytes);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const claimed = want.digest ?? header(res.headers, 'docker-content-digest');
    if ((claimed && claimed !== digest) || (want.size !== undefined && bytes.length !== want.size)) {
      const why =
        claimed && claimed !== digest
          ? `${want.digest ? 'has' : `is claimed to be ${claimed} but has`} ${digest}`
          : `is ${bytes.length} bytes where the index declares ${want.size}`;
      throw new AirlockError('DIGEST_MISMATCH', `${t.registry} sent a manifest for ${t.repo}${sep}${ref} that ${why}; nothing was cached`);
    }
    const { mediaType } = this.parse(t, ref, bytes, header(res.headers, 'content-type'));
    await this.manifests.keep(t.repo, digest, bytes, mediaType);
    return { digest, bytes, mediaType, cache: 'miss' };
  }
}
