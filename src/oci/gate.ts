import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import type { UpstreamBody } from '../core/fill.js';
import type { LivePolicy } from '../core/live-policy.js';
import type { ImageVerdict, Policy } from '../policy/index.js';
import type { OciStore } from '../storage/meta-store.js';
import { imageLayers, type ImageInventories, type LayerRef } from './inventory.js';

/** How long a verdict is reused for the same policy and advisories (exceptions expire by the clock). */
const VERDICT_TTL_MS = 60_000;
const MEMO_MAX = 10_000;

export interface GateTarget {
  repo: string;
  /** Opens a layer of this repository upstream (for layers the cache does not hold yet). */
  openBlob(digest: string, signal: AbortSignal): Promise<UpstreamBody>;
}

export interface GateResult {
  verdict: ImageVerdict;
  /** JSON for the pull record: the inventory's size and the findings that decided. */
  summary: string;
}

/**
 * The image gate at the manifest: an image manifest of a gated repository is served only once
 * its inventory has been judged against the advisories. The inventory is computed once per
 * manifest (layers fetched into the cache, which the client is about to ask for anyway); the
 * verdict is kept for a minute per policy, so manifest requests of judged images stay cheap.
 */
export class ImageGate {
  private readonly memo = new Map<string, { policy: Policy; at: number; result: GateResult | null }>();

  constructor(
    private readonly inventories: ImageInventories,
    private readonly meta: OciStore,
    private readonly live: LivePolicy,
    private readonly log: Logger,
  ) {}

  /**
   * What `check` would answer from memory now: null when the repository is not gated or the
   * manifest is an index, the kept verdict when it is still good, undefined when `check` would
   * judge (the fast path, fast.ts, then leaves the request to the route).
   */
  known(repo: string, digest: string, isIndex: boolean): GateResult | null | undefined {
    const policy = this.live.policy;
    if (isIndex || !policy.images.gates(repo)) return null;
    const hit = this.memo.get(`${repo}@${digest}`);
    return hit && hit.policy === policy && Date.now() - hit.at < VERDICT_TTL_MS ? hit.result : undefined;
  }

  /** null when the repository is not gated or the manifest is not an image (an index, a signature). */
  async check(t: GateTarget, digest: string, manifest: Buffer, isIndex: boolean): Promise<GateResult | null> {
    const policy = this.live.policy;
    if (isIndex || !policy.images.gates(t.repo)) return null;
    const key = `${t.repo}@${digest}`;
    const now = Date.now();
    const hit = this.memo.get(key);
    if (hit && hit.policy === policy && now - hit.at < VERDICT_TTL_MS) return hit.result;
    const layers = imageLayers(manifest);
    let result: GateResult | null = null;
    if (layers) {
      const started = Date.now();
      let inv;
      try {
        inv = await this.inventories.inventory(digest, layers, (l: LayerRef) => (signal) => t.openBlob(l.digest, signal));
      } catch (e) {
        throw new AirlockError(
          'UPSTREAM_BAD_RESPONSE',
          `${key} cannot be served before its packages are judged, and its layers could not be read: ${(e as Error).message}`,
          { cause: e },
        );
      }
      const ms = Date.now() - started;
      if (ms > 50) this.log.info({ ecosystem: 'oci', name: t.repo, digest, layers: layers.length, packages: inv.packages.length, ms }, 'image inventoried');
      const parents = (await this.meta.getOciParents(t.repo, digest)).map((p) => p.parent);
      const verdict = policy.judgeImage(t.repo, [digest, ...parents], inv, now);
      const summary = JSON.stringify({
        inventory: { os: inv.os?.prettyName ?? inv.os?.id ?? null, ecosystem: inv.os?.ecosystem ?? null, packages: inv.packages.length, layers: inv.layers },
        level: verdict.level,
        findings: verdict.findings.slice(0, 20).map((f) => ({
          id: f.id,
          severity: f.severity.label ?? null,
          package: f.package.name,
          version: f.package.version,
          fixed: f.fixed ?? null,
          refusing: f.refusing,
          excepted: f.excepted ?? null,
        })),
        notes: verdict.notes.slice(0, 5),
      });
      result = { verdict, summary };
    }
    if (this.memo.size >= MEMO_MAX) this.memo.clear();
    this.memo.set(key, { policy, at: now, result });
    return result;
  }
}
