import type { SignatureResult } from './verify.js';

/**
 * Verification results by (subject digest, bundle digest, trust version, rule), so a warm
 * request pays a map lookup (issue 26). Bounded: least recently used entries go first. Pass the
 * requirement's `cacheKey` (policy/signing.ts: the rule id with what it checks) as the rule, so a
 * reload that edits a rule's signers misses; a new trusted root misses by its version.
 */
export class SignatureCache<R extends SignatureResult = SignatureResult> {
  private readonly map = new Map<string, R>();

  constructor(readonly limit = 10_000) {}

  static key(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string): string {
    return `${subjectDigest}\u0000${bundleDigest}\u0000${trustVersion}\u0000${rule}`;
  }

  get(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string): R | undefined {
    const k = SignatureCache.key(subjectDigest, bundleDigest, trustVersion, rule);
    const v = this.map.get(k);
    if (v !== undefined) {
      // Refresh its place: a Map iterates in insertion order, so the first key is the least recently used.
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  set(subjectDigest: string, bundleDigest: string, trustVersion: string, rule: string, result: R): void {
    const k = SignatureCache.key(subjectDigest, bundleDigest, trustVersion, rule);
    this.map.delete(k);
    this.map.set(k, result);
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
