/**
 * The per-client refusal rate limit: a token bucket per client (a token's name, or the address of
 * an anonymous client), `perSecond` refusals a second with bursts of `burst`. Refusals past it are
 * answered 429 and only counted (core/records.ts), so one client cannot fill the record's disk.
 * The buckets are an LRU of at most `maxClients`: a client forgotten to make room starts again
 * with a full bucket, which bounds memory however many addresses ask.
 */
export interface RefusalLimits {
  perSecond: number;
  burst: number;
  maxClients: number;
}

export class RefusalLimiter {
  /** Client -> tokens left and when they were counted; Map order is least recently used first. */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly limits: RefusalLimits) {}

  /** Take one refusal from `client`'s bucket: 0 when it may be recorded, else the seconds until it may (Retry-After). */
  take(client: string, now = Date.now()): number {
    const { perSecond, burst, maxClients } = this.limits;
    if (perSecond <= 0) return 0;
    let b = this.buckets.get(client);
    if (b) {
      this.buckets.delete(client);
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
      b.at = now;
    } else {
      b = { tokens: burst, at: now };
      while (this.buckets.size >= maxClients) this.buckets.delete(this.buckets.keys().next().value as string);
    }
    this.buckets.set(client, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / perSecond));
  }

  /** How many clients have a bucket (tests, bounded memory). */
  get size(): number {
    return this.buckets.size;
  }
}
