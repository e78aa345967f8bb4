import type { SignatureResult } from './verify.js';

/**
 * Verification results by (subject digest, bundle digest, trust version, rule), so a warm
 * request pays a map lookup (issue 26). Pass the requirement's `cacheKey` (policy/signing.ts: the
 * rule id with what it checks) as the rule, so a reload that edits a rule's signers misses; a new
 * trusted root misses by its version.
 *
 * Bounded in size (least recently used entries go first) and in age: an entry older than
 * `maxAgeMs` (an hour by default) is verified again, so that what changes with time alone (a
 * trusted root or a CA certificate that expires, checked at verification) is seen within it.
 * `stale` still gives an expired entry (until it is evicted): for a caller that would rather keep a
 * verified verdict than refuse because the upstream cannot be asked again (src/oci/signatures.ts).
 */
export const SIGNATURE_CACHE_MAX_AGE_MS = 60 * 60_000;

export class SignatureCache<R extends SignatureResult = SignatureResult> {
  private readonly map = new Map<string, { value: R; at: number }>();

  constructor(
    readonly limit = 10_000,
    readonly maxAgeMs = SIGNATURE_CACHE_MAX_AGE_MS,
    private readonly clock: () => number = Date.now,
  ) {}

  static key(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string): string {
    return `${subjectDigest}\u0000${bundleDigest}\u0000${trustVersion}\u0000${rule}`;
  }

  get(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string): R | undefined {
    const k = SignatureCache.key(subjectDigest, bundleDigest, trustVersion, rule);
    const e = this.map.get(k);
    if (e === undefined || this.clock() - e.at >= this.maxAgeMs) return undefined;
    // Refresh its place: a Map iterates in insertion order, so the first key is the least recently used.
    this.map.delete(k);
    this.map.set(k, e);
    return e.value;
  }

  /** The entry whatever its age (undefined once evicted, or never set). */
  stale(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string): R | undefined {
    return this.map.get(SignatureCache.key(subjectDigest, bundleDigest, trustVersion, rule))?.value;
  }

  set(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string, result: R): void {
    const k = SignatureCache.key(subjectDigest, bundleDigest, trustVersion, rule);
    this.map.delete(k);
    this.map.set(k, { value: result, at: this.clock() });
    while (this.map.size > this.limit) this.map.delete(this.map.keys().next().value as string);
  }

  /** The cached result, or compute it (once) and keep it. */
  through(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string, compute: () => R): R {
    const hit = this.get(subjectDigest, bundleDigest, trustVersion, rule);
    if (hit !== undefined) return hit;
    const r = compute();
    this.set(subjectDigest, bundleDigest, trustVersion, rule, r);
    return r;
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
