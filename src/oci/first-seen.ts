import type { OciStore } from '../storage/meta-store.js';

const MEMO_MAX = 100_000;

/**
 * When Airlock first saw each manifest digest (issue 27, oci.min_age), recorded in the metadata
 * store on the first request that names it (by tag or by digest; the first writer wins, also
 * between replicas). A recorded time never changes, so each process keeps the ones it has asked
 * for: a manifest request costs a store round trip only the first time.
 */
export class FirstSeen {
  private readonly memo = new Map<string, number>();

  constructor(private readonly meta: OciStore) {}

  /** The digest's first sight when this process has it at hand (the fast path, fast.ts); undefined when it must be asked. */
  known(digest: string): number | undefined {
    return this.memo.get(digest);
  }

  /** The digest's first sight, recording `now` when it has none. */
  async of(digest: string, now: number): Promise<number> {
    const known = this.memo.get(digest);
    if (known !== undefined) return known;
    const t = await this.meta.recordOciFirstSeen(digest, now);
    if (this.memo.size >= MEMO_MAX) this.memo.clear();
    this.memo.set(digest, t);
    return t;
  }
}
