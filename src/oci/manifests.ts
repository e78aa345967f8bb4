import { createHash } from 'node:crypto';
import { AirlockError } from '../core/errors.js';
import type { BlobCache, CacheOutcome } from '../core/cache.js';
import type { OciStore } from '../storage/meta-store.js';
import { header, readBoundedBytes } from '../upstream/http.js';
import { OciError } from './errors.js';
import { MANIFEST_ACCEPT, ManifestError, parseManifest } from './reference.js';
import type { RegistryClient } from './registry-client.js';

/** Where a manifest comes from: the repository as Airlock names it, and its upstream. */
export interface ManifestTarget {
  registry: string;
  upstreamName: string;
  repo: string;
  client: RegistryClient;
}

export interface LoadedManifest {
  bytes: Buffer;
  mediaType: string;
  cache: CacheOutcome;
}

/**
 * Manifests are small, immutable by digest and asked for on every pull (HEAD by tag, then GET):
 * the most recent ones stay in memory, bounded by total bytes. Reading each from the blob store
 * measured ~900 req/s in the benchmark's small-request row.
 */
const MANIFEST_MEMO_BYTES = 32 * 1024 * 1024;
class ManifestMemo {
  private readonly map = new Map<string, { bytes: Buffer; mediaType: string }>();
  private bytes = 0;
  constructor(private readonly max: number) {}
  get(digest: string): { bytes: Buffer; mediaType: string } | undefined {
    const v = this.map.get(digest);
    if (v) {
      this.map.delete(digest);
      this.map.set(digest, v);
    }
    return v;
  }
  set(digest: string, v: { bytes: Buffer; mediaType: string }): void {
    if (this.map.has(digest) || v.bytes.length > this.max / 4) return;
    this.map.set(digest, v);
    this.bytes += v.bytes.length;
    for (const [k, old] of this.map) {
      if (this.bytes <= this.max) break;
      this.map.delete(k);
      this.bytes -= old.bytes.length;
    }
  }
}

/**
 * Pinned manifests: from memory, from the cache, else fetched upstream by digest (one fetch per
 * repository and digest at a time), verified in memory, then stored with their links, so that
 * the blobs and child manifests they reference are approved through them.
 */
export class Manifests {
  private readonly flights = new Map<string, Promise<LoadedManifest>>();
  private readonly linked = new Set<string>();
  private readonly hot = new ManifestMemo(MANIFEST_MEMO_BYTES);

  constructor(
    private readonly cache: BlobCache,
    private readonly meta: OciStore,
    private readonly maxBytes: number,
  ) {}

  private async linkOnce(t: ManifestTarget, digest: string, bytes: Buffer, mediaType: string): Promise<void> {
    const key = `${t.repo}@${digest}`;
    if (this.linked.has(key)) return;
    const parsed = parseManifest(bytes, mediaType);
    await this.meta.putOciManifest(t.repo, { digest, mediaType: parsed.mediaType, size: bytes.length }, parsed.children);
    if (this.linked.size > 100_000) this.linked.clear();
    this.linked.add(key);
  }

  async load(t: ManifestTarget, digest: string, expectedSize: number | undefined): Promise<LoadedManifest> {
    const hex = digest.slice('sha256:'.length);
    const memo = this.hot.get(digest);
    if (memo) {
      await this.linkOnce(t, digest, memo.bytes, memo.mediaType);
      return { ...memo, cache: 'hit' };
    }
    const rec = await this.meta.getOciManifest(digest);
    if (rec) {
      const bytes = await this.cache.readSmall(hex, this.maxBytes);
      if (bytes) {
        await this.linkOnce(t, digest, bytes, rec.mediaType);
        this.hot.set(digest, { bytes, mediaType: rec.mediaType });
        return { bytes, mediaType: rec.mediaType, cache: 'hit' };
      }
    }
    const key = `${t.repo}@${digest}`;
    const flight = this.flights.get(key);
    if (flight) return { ...(await flight), cache: 'join' };
    const p = this.fetch(t, digest, hex, expectedSize).finally(() => this.flights.delete(key));
    this.flights.set(key, p);
    return p;
  }

  private async fetch(t: ManifestTarget, digest: string, hex: string, expectedSize: number | undefined): Promise<LoadedManifest> {
    const res = await t.client.request(t.upstreamName, `manifests/${digest}`, { accept: MANIFEST_ACCEPT });
    if (res.status !== 200) {
      res.body.resume();
      if (res.status === 404) throw new OciError(404, 'MANIFEST_UNKNOWN', `${t.repo}@${digest} is pinned, but ${t.registry} does not have it`);
      if (res.status === 429) {
        const retry = header(res.headers, 'retry-after');
        throw new OciError(
          429,
          'TOOMANYREQUESTS',
          `${t.registry} is rate-limiting Airlock and ${digest} is not cached yet`,
          retry ? { 'retry-after': retry } : {},
        );
      }
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${t.registry} answered ${res.status} for the manifest ${t.upstreamName}@${digest}`);
    }
    const bytes = await readBoundedBytes(res.body, this.maxBytes);
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== hex || (expectedSize !== undefined && bytes.length !== expectedSize)) {
      const why = got !== hex ? `has sha256:${got}` : `is ${bytes.length} bytes where the index declares ${expectedSize}`;
      throw new AirlockError('DIGEST_MISMATCH', `${t.registry} sent a manifest for ${t.repo}@${digest} that ${why}; nothing was cached`);
    }
    let mediaType: string;
    try {
      mediaType = parseManifest(bytes, header(res.headers, 'content-type')).mediaType;
    } catch (e) {
      if (e instanceof ManifestError) throw new OciError(e.code === 'UNSUPPORTED' ? 415 : 502, e.code, `${t.repo}@${digest}: ${e.message}`);
      throw e;
    }
    await this.cache.putSmall(bytes);
    await this.linkOnce(t, digest, bytes, mediaType);
    this.hot.set(digest, { bytes, mediaType });
    return { bytes, mediaType, cache: 'miss' };
  }
}
