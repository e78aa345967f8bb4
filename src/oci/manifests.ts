import type { BlobCache, CacheOutcome } from '../core/cache.js';
import type { OciStore } from '../storage/meta-store.js';
import { parseManifest } from './reference.js';

export interface LoadedManifest {
  digest: string;
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
 * The manifests Airlock holds: in memory, else in the cache. Each is stored with its links (the
 * blobs and child manifests it references, approved through it) the first time a repository
 * uses it. Fetching from upstream is upstream.ts's; this is only the store.
 */
export class Manifests {
  private readonly linked = new Set<string>();
  private readonly hot = new ManifestMemo(MANIFEST_MEMO_BYTES);

  constructor(
    private readonly cache: BlobCache,
    private readonly meta: OciStore,
    private readonly maxBytes: number,
  ) {}

  private async linkOnce(repo: string, digest: string, bytes: Buffer, mediaType: string): Promise<void> {
    const key = `${repo}@${digest}`;
    if (this.linked.has(key)) return;
    const parsed = parseManifest(bytes, mediaType);
    await this.meta.putOciManifest(repo, { digest, mediaType: parsed.mediaType, size: bytes.length }, parsed.children);
    if (this.linked.size > 100_000) this.linked.clear();
    this.linked.add(key);
  }

  /** A manifest already held (from memory, else the cache, checked as it is read), linked to `repo`; undefined when it must be fetched. */
  async held(repo: string, digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
    const memo = this.hot.get(digest);
    if (memo) {
      await this.linkOnce(repo, digest, memo.bytes, memo.mediaType);
      return memo;
    }
    const rec = await this.meta.getOciManifest(digest);
    if (!rec) return undefined;
    const bytes = await this.cache.readSmall(digest.slice('sha256:'.length), this.maxBytes);
    if (!bytes) return undefined;
    await this.linkOnce(repo, digest, bytes, rec.mediaType);
    this.hot.set(digest, { bytes, mediaType: rec.mediaType });
    return { bytes, mediaType: rec.mediaType };
  }

  /** A manifest in memory and already linked to `repo`: what `held` would answer without a store round trip (the fast path, fast.ts). */
  warm(repo: string, digest: string): { bytes: Buffer; mediaType: string } | undefined {
    return this.linked.has(`${repo}@${digest}`) ? this.hot.get(digest) : undefined;
  }

  /** Keep a manifest verified in memory: in the cache, with its links, and in memory. */
  async keep(repo: string, digest: string, bytes: Buffer, mediaType: string): Promise<void> {
    await this.cache.putSmall(bytes);
    await this.linkOnce(repo, digest, bytes, mediaType);
    this.hot.set(digest, { bytes, mediaType });
  }
}
