import { AirlockError } from './errors.js';

/**
 * Cold transfers under way per client (a token name, or an address for anonymous clients). The
 * upstream connections of a host are shared by everyone; without a per-client bound one client
 * opening many cold pulls (or many slow ones) takes them all and every other client waits. A
 * client over its share waits for one of its own transfers to end (so nobody else does), and is
 * answered 429 if none ends within `waitMs`.
 */
export class ClientSlots {
  private readonly held = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(
    /** Concurrent cold transfers per client (0: unlimited). */
    readonly perClient: number,
    readonly waitMs = 30_000,
  ) {}

  /** Take a slot for `client`; resolves to its release (call it once, when the transfer is over). */
  async acquire(client: string, signal?: AbortSignal): Promise<() => void> {
    if (this.perClient <= 0) return () => {};
    const n = this.held.get(client) ?? 0;
    if (n < this.perClient) this.held.set(client, n + 1);
    else {
      // Wait in the client's own queue; a release hands its slot straight to the first waiter.
      const queue = this.waiting.get(client) ?? [];
      this.waiting.set(client, queue);
      let wake!: () => void;
      // A client that hung up while waiting gives up its place (its transfer would go nowhere).
      const handed = await new Promise<boolean>((res) => {
        wake = () => res(true);
        queue.push(wake);
        setTimeout(() => res(false), this.waitMs).unref();
        signal?.addEventListener('abort', () => res(false), { once: true });
      });
      if (!handed) {
        const i = queue.indexOf(wake);
        if (i >= 0) queue.splice(i, 1);
        if (queue.length === 0 && this.waiting.get(client) === queue) this.waiting.delete(client);
        // Handed a slot in the same turn the wait timed out: pass it on.
        if (i < 0) this.release(client);
        if (signal?.aborted) throw new AirlockError('CANCELLED', `client ${client} left while waiting for one of its downloads to end`);
        throw new AirlockError(
          'TOO_MANY_REQUESTS',
          `client ${client} already has ${this.perClient} downloads from upstream under way (transfers.per_client); retry when one has finished`,
        );
      }
    }
    let released = false;
    return () => {
      if (!released) {
        released = true;
        this.release(client);
      }
    };
  }

  private release(client: string): void {
    const queue = this.waiting.get(client);
    const next = queue?.shift();
    if (queue && queue.length === 0) this.waiting.delete(client);
    if (next) return next();
    const n = (this.held.get(client) ?? 1) - 1;
    if (n > 0) this.held.set(client, n);
    else this.held.delete(client);
  }

  /** Slots held now, per client (metrics, tests). */
  inUse(client: string): number {
    return this.held.get(client) ?? 0;
  }
}
