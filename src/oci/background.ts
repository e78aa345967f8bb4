import type { Logger } from 'pino';
import type { BlobCache } from '../core/cache.js';
import type { LivePolicy } from '../core/live-policy.js';
import type { Policy } from '../policy/index.js';
import type { ImageGate } from './gate.js';
import type { ImageInventories } from './inventory.js';
import { isIndexType, parseManifest } from './reference.js';
import type { OciUpstream, UpstreamTarget } from './upstream.js';

/** queued: seen by a policy load; then one of done (judged now), known (judged before), failed, dropped (unpinned, ungated or shut down first). */
export type JudgementOutcome = 'queued' | 'done' | 'known' | 'failed' | 'dropped';

/** The client named in upstream transfer budgets for the background's layer downloads. */
const CLIENT = 'airlock:background-judge';

export interface BackgroundJudgeDeps {
  /** The server's own OCI upstream, image gate and inventories: a client's pull joins the same flights. */
  upstream: OciUpstream;
  gate: ImageGate;
  inventories: ImageInventories;
  cache: BlobCache;
  live: LivePolicy;
  log: Logger;
  /** Counted per image (the metric airlock_image_background_judgements_total). */
  count?: (outcome: JudgementOutcome) => void;
  /** Images judged at a time. */
  concurrency?: number;
  /** Once aborted (server shutdown), nothing more is started. */
  signal?: AbortSignal;
}

/**
 * Images pinned by editing the policy by hand (not with `airlock pin`, which judges at pin time)
 * are judged in the background as soon as a policy load sees them, so no client waits on the
 * first pull of a gated image for its layers to be fetched and inventoried. For each pinned digest
 * of a repository the image gate applies to and not judged yet by this process: the manifest
 * (each platform of an index) is fetched and verified, the gate judges it (its layers filled
 * through the verified cache, the inventory stored, the verdict kept), and the image's other
 * blobs (config, layers whose facts were already known) are filled too, so the pull is warm.
 *
 * It goes through the server's own OciUpstream, ImageGate and ImageInventories: a client pulling
 * meanwhile joins the same manifest, inventory and fill flights instead of starting its own. A
 * failure is logged and counted; the first pull judges the image as before, and the next policy
 * load tries again. Each replica of a fleet does this for itself; inventories and blobs are in
 * the shared stores, so a replica finds an image another one judged already ('known').
 */
export class BackgroundJudge {
  /** repo@digest judged (or found judged) by this process. */
  private readonly known = new Set<string>();
  private readonly queued = new Set<string>();
  private readonly queue: string[] = [];
  private running = 0;
  private readonly idlers: (() => void)[] = [];

  constructor(private readonly d: BackgroundJudgeDeps) {}

  /** Follow the policy in force: judge what it pins now, and what each reload adds. */
  follow(): this {
    this.d.live.onPolicy((p) => this.scan(p));
    this.scan(this.d.live.policy);
    return this;
  }

  /** Queue the pinned digests of gated repositories that this process has not judged; returns how many were queued. */
  scan(policy: Policy): number {
    let n = 0;
    for (const { repo, digests } of policy.oci.pins()) {
      if (!policy.images.gates(repo)) continue;
      for (const digest of digests) {
        const key = `${repo}@${digest}`;
        if (this.known.has(key) || this.queued.has(key)) continue;
        this.queued.add(key);
        this.queue.push(key);
        this.d.count?.('queued');
        n++;
      }
    }
    this.pump();
    return n;
  }

  /** Resolves once nothing is queued or running (tests, shutdown). */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idlers.push(r));
  }

  private pump(): void {
    const max = this.d.concurrency ?? 1;
    while (this.running < max && this.queue.length && !this.d.signal?.aborted) {
      const key = this.queue.shift()!;
      this.running++;
      void this.judge(key).finally(() => {
        this.running--;
        this.queued.delete(key);
        this.pump();
      });
    }
    if (this.d.signal?.aborted) {
      for (const k of this.queue.splice(0)) {
        this.queued.delete(k);
        this.d.count?.('dropped');
      }
    }
    if (this.running === 0 && this.queue.length === 0) for (const r of this.idlers.splice(0)) r();
  }

  private async judge(key: string): Promise<void> {
    const at = key.indexOf('@');
    const repo = key.slice(0, at);
    const digest = key.slice(at + 1);
    const policy = this.d.live.policy;
    // A later reload may have dropped the pin, or the gate for the repository.
    if (!policy.images.gates(repo) || !policy.oci.decideDigest(repo, digest).allow) return void this.d.count?.('dropped');
    const { upstream, log } = this.d;
    const started = Date.now();
    try {
      const slash = repo.indexOf('/');
      const t = upstream.targetOf({ registry: repo.slice(0, slash), name: repo.slice(slash + 1), repository: repo });
      const platforms = await upstream.platforms(t, await upstream.manifest(t, digest));
      let judged = 0;
      const verdicts: { digest: string; platform?: string; allow: boolean; level: string }[] = [];
      for (const p of platforms) {
        if (isIndexType(p.mediaType)) continue;
        const fresh = !(await this.d.inventories.stored(p.digest));
        const r = await this.d.gate.check({ repo, openBlob: (dg, signal) => upstream.openBlob(t, dg, signal, { client: CLIENT }) }, p.digest, p.bytes, false);
        // Only an image judged now is warmed: one judged before may have been evicted since, and stays so.
        if (fresh) {
          judged++;
          await this.warm(t, p.bytes, p.mediaType);
        }
        if (r) verdicts.push({ digest: p.digest, ...(p.platform ? { platform: p.platform } : {}), allow: r.verdict.decision.allow, level: r.verdict.level });
      }
      this.known.add(key);
      const outcome = judged ? 'done' : 'known';
      this.d.count?.(outcome);
      const fields = { ecosystem: 'oci', name: repo, digest, platforms: verdicts, ms: Date.now() - started };
      if (judged) log.info(fields, 'image judged in the background');
      else log.debug(fields, 'image already judged');
    } catch (e) {
      this.d.count?.('failed');
      log.warn(
        { ecosystem: 'oci', name: repo, digest, err: (e as Error).message, ms: Date.now() - started },
        'image could not be judged in the background; its first pull judges it',
      );
    }
  }

  /** Fill the image's blobs the gate did not need (its config; layers whose facts were known from another image). */
  private async warm(t: UpstreamTarget, bytes: Buffer, mediaType: string): Promise<void> {
    for (const c of parseManifest(bytes, mediaType).children) {
      if (this.d.signal?.aborted) return;
      const hex = c.digest.slice('sha256:'.length);
      const filled = await this.d.cache.ensure({
        sha256: hex,
        size: c.size,
        open: (signal) => this.d.upstream.openBlob(t, c.digest, signal, { size: c.size, client: CLIENT }),
      });
      await filled.stored;
    }
  }
}
