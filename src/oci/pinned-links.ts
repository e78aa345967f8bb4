import type { Logger } from 'pino';
import type { LivePolicy } from '../core/live-policy.js';
import { OciError } from './errors.js';
import { isIndexType, parseManifest } from './reference.js';
import type { OciUpstream, UpstreamTarget } from './upstream.js';

/** Manifests of a repository's pins fetched at a time. */
const CONCURRENCY = 4;
/** A pinned manifest that could not be fetched is not asked for again before this (an unknown blob asked for in a loop must not hammer the upstream). */
const RETRY_MS = 30_000;
/** The longest a request waits for a pass (the pass itself goes on). */
const WAIT_MS = 15_000;
/** Index levels followed below a pin (an index of indexes is legal, and rare). */
const MAX_DEPTH = 2;
/** Manifests an index may list to be followed (multi-platform indexes list tens): one that lists more fails, as it cannot be followed in bounded time. */
const MAX_CHILDREN = 256;
/** Manifests looked at in one pass over a repository's pins (held or fetched): the rest wait for the next pass. */
const MAX_PER_PASS = 1024;

/**
 * What the approved manifests of a repository reference, known without a client having pulled
 * them through Airlock (issue 30). A blob (or a platform manifest) is approved through the
 * approved manifest that links it, and links were made only when a client pulled that manifest:
 * a client that already knew a blob's digest (a build cache, `crane blob`, a pull resumed through
 * another replica, the conformance suite) was refused. Now, when a digest of an allowed repository
 * is not linked yet, each pinned manifest of the repository (and each manifest its indexes list)
 * is fetched and verified through the server's OciUpstream once — the same flights, store and
 * links as a client's pull — and the digest is judged again. Concurrent requests for a repository
 * share one pass; a manifest linked by this process is not looked at again; the links are in the
 * shared store, so other replicas find them. Linking approves nothing by itself: the blob is
 * still served only through an approved manifest, under the image and signature gates.
 * Bounded (break30): a caller waits at most WAIT_MS; a pass looks at MAX_PER_PASS manifests at
 * most and follows no index listing more than MAX_CHILDREN; a manifest that failed is not asked
 * for again for RETRY_MS, and until then failure() says so (the caller answers an error, not
 * "unknown"). Denied pins are linked too, so that their blobs are refused as denied.
 */
export class PinnedLinks {
  private readonly flights = new Map<string, Promise<number>>();
  /** repo@digest whose manifest (and what its index lists) is linked. */
  private readonly linked = new Set<string>();
  /** repo@digest that could not be fetched, when, and why. */
  private readonly failedAt = new Map<string, { at: number; err: Error }>();
  /** Manifests fetched upstream to be linked on demand (tests and diagnostics). */
  count = 0;

  constructor(private readonly d: { upstream: OciUpstream; live: LivePolicy; log: Logger }) {}

  /**
   * link(), waited for at most `ms`: false when the pass is still under way (a slow upstream, a
   * wide index), which goes on without the caller, who is answered rather than held for it.
   */
  async linkWithin(t: UpstreamTarget, ms = WAIT_MS): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    try {
      return await Promise.race([this.link(t).then(() => true as const), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Link the pinned manifests of the repository not linked yet; resolves with how many this pass fetched upstream (failures are logged). */
  link(t: UpstreamTarget): Promise<number> {
    let f = this.flights.get(t.repo);
    if (!f) {
      f = this.pass(t).finally(() => this.flights.delete(t.repo));
      this.flights.set(t.repo, f);
    }
    return f;
  }

  private async pass(t: UpstreamTarget): Promise<number> {
    const policy = this.d.live.policy;
    const pins = policy.oci.pins().find((p) => p.repo === t.repo)?.digests ?? [];
    // Denied pins are linked too: their blobs are then refused as denied, not as unknown (a 404 under oci.unknown_blob_status: 404).
    const todo = pins.filter((dg) => this.due(`${t.repo}@${dg}`));
    const budget = { left: MAX_PER_PASS };
    let n = 0;
    for (let i = 0; i < todo.length; i += CONCURRENCY) {
      const done = await Promise.all(todo.slice(i, i + CONCURRENCY).map((dg) => this.tree(t, dg, 0, budget)));
      n += done.reduce((a, b) => a + b, 0);
    }
    return n;
  }

  /**
   * The latest failure to fetch a manifest under the repository's pins, within the retry window:
   * until it is retried, Airlock cannot tell whether a digest it did not link is referenced. A
   * manifest the upstream answers 404 for is no such failure: it references nothing to serve.
   */
  failure(repo: string): { digest: string; err: Error } | undefined {
    let last: { digest: string; at: number; err: Error } | undefined;
    for (const [key, f] of this.failedAt) {
      if (!key.startsWith(`${repo}@`) || Date.now() - f.at >= RETRY_MS) continue;
      if (f.err instanceof OciError && f.err.status === 404) continue;
      if (!last || f.at > last.at) last = { digest: key.slice(repo.length + 1), ...f };
    }
    return last;
  }

  private due(key: string): boolean {
    if (this.linked.has(key)) return false;
    const f = this.failedAt.get(key);
    return f === undefined || Date.now() - f.at >= RETRY_MS;
  }

  /** One manifest, held or fetched and verified (which links what it references), then each manifest an index lists. */
  private async tree(t: UpstreamTarget, digest: string, depth: number, budget: { left: number }, size?: number): Promise<number> {
    const key = `${t.repo}@${digest}`;
    if (!this.due(key)) return 0;
    try {
      if (budget.left-- <= 0) throw new Error(`more than ${MAX_PER_PASS} manifests under the pins of ${t.repo}; the rest are looked at in a later pass`);
      const m = await this.d.upstream.manifest(t, digest, size);
      let n = m.cache === 'hit' ? 0 : 1;
      let complete = true;
      if (depth < MAX_DEPTH && isIndexType(m.mediaType)) {
        const children = parseManifest(m.bytes, m.mediaType).children.filter((c) => c.kind === 'manifest');
        if (children.length > MAX_CHILDREN) {
          this.count += n;
          throw new Error(`the index ${key} lists ${children.length} manifests; Airlock follows at most ${MAX_CHILDREN}`);
        }
        for (const c of children) {
          n += await this.tree(t, c.digest, depth + 1, budget, c.size);
          complete &&= this.linked.has(`${t.repo}@${c.digest}`);
        }
      }
      // An index with a platform that failed is walked again (its own manifest is held by then).
      if (complete) {
        if (this.linked.size > 100_000) this.linked.clear();
        this.linked.add(key);
        this.failedAt.delete(key);
      }
      this.count += n;
      return n;
    } catch (e) {
      if (this.failedAt.size > 100_000) this.failedAt.clear();
      this.failedAt.set(key, { at: Date.now(), err: e as Error });
      this.d.log.warn(
        { ecosystem: 'oci', name: t.repo, digest, err: (e as Error).message },
        'an approved manifest could not be fetched to find what it references',
      );
      return 0;
    }
  }
}
