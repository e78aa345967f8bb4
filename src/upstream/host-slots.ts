import { AirlockError } from '../core/errors.js';

/**
 * What a request to an upstream host carries. 'large': a blob body (a wheel, a layer, a model
 * file) not known to be small; it may hold its connection for minutes. 'small': everything else
 * (an index page, a manifest, a token, metadata, a file of known small size).
 */
export type TransferClass = 'small' | 'large';

interface Waiter {
  cls: TransferClass;
  client: string;
  grant: () => void;
}

/** Connections of one host: in use and waiting, by class (metrics, the console, tests). */
export interface HostSlotStats {
  small: number;
  large: number;
  waitingSmall: number;
  waitingLarge: number;
}

/**
 * The connections of one upstream host, shared out. At most `connections` requests are under way
 * at once (the agent's sockets for the host: a request never waits inside the agent, where its
 * wait would look like the host failing), of which at most `largeMax` are large bodies: the rest
 * are kept for small requests, so a page or a manifest never queues behind 70 slow downloads.
 *
 * A free connection goes to a waiting small request first (they are short), then to a large one,
 * fairly between clients: to the waiting client holding the fewest large connections of this
 * host, the one served longest ago first (round-robin). A tenant with 70 downloads queued
 * takes no more than its share while others wait.
 */
export class HostSlots {
  private small = 0;
  private large = 0;
  private readonly smallWaiting: Waiter[] = [];
  /** Waiting large requests per client; the Map's order is the round-robin order. */
  private readonly largeWaiting = new Map<string, Waiter[]>();
  private waitingLarge = 0;
  /** Large connections in use per client. */
  private readonly largeHeld = new Map<string, number>();
  /** When each client (holding or waiting) was last given a large connection: the round-robin. */
  private readonly lastServed = new Map<string, number>();
  private served = 0;

  constructor(
    readonly host: string,
    readonly connections: number,
    readonly largeMax: number,
  ) {}

  /**
   * Take a connection of this host; resolves to its release (idempotent; call it when the
   * response body is over, or the request failed). Fails with UPSTREAM_UNAVAILABLE (503) after
   * `waitMs` (0: no limit) or when `signal` aborts: a host that is busy has not failed.
   */
  acquire(cls: TransferClass, client: string, opts: { signal?: AbortSignal; waitMs?: number } = {}): Promise<() => void> {
    const { signal, waitMs = 0 } = opts;
    if (signal?.aborted) return Promise.reject(this.cancelled());
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        if (this.remove(w)) reject(this.cancelled());
      };
      const w: Waiter = {
        cls,
        client,
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser(cls, client));
        },
      };
      if (cls === 'small') this.smallWaiting.push(w);
      else {
        const q = this.largeWaiting.get(client) ?? [];
        q.push(w);
        this.largeWaiting.set(client, q);
        this.waitingLarge++;
      }
      this.pump();
      if (!this.waiting(w)) return;
      signal?.addEventListener('abort', onAbort, { once: true });
      if (waitMs > 0) {
        timer = setTimeout(() => {
          if (!this.remove(w)) return;
          signal?.removeEventListener('abort', onAbort);
          reject(
            new AirlockError(
              'UPSTREAM_UNAVAILABLE',
              `upstream ${this.host} is busy: waited ${waitMs / 1000} s for one of its connections (${this.large} large downloads under way, ${this.waitingLarge + this.smallWaiting.length} waiting; transfers.host_queue_wait)`,
              { status: 503 },
            ),
          );
        }, waitMs);
        timer.unref();
      }
    });
  }

  stats(): HostSlotStats {
    return { small: this.small, large: this.large, waitingSmall: this.smallWaiting.length, waitingLarge: this.waitingLarge };
  }

  /** Nothing in use or waiting: the host's entry may be dropped. */
  idle(): boolean {
    return this.small + this.large + this.smallWaiting.length + this.waitingLarge === 0;
  }

  private cancelled(): AirlockError {
    return new AirlockError('UPSTREAM_UNAVAILABLE', `cancelled while waiting for a connection to upstream ${this.host}`);
  }

  private releaser(cls: TransferClass, client: string): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (cls === 'small') this.small--;
      else {
        this.large--;
        const n = (this.largeHeld.get(client) ?? 1) - 1;
        if (n > 0) this.largeHeld.set(client, n);
        else {
          this.largeHeld.delete(client);
          if (!this.largeWaiting.has(client)) this.lastServed.delete(client);
        }
      }
      this.pump();
    };
  }

  /**
   * A small connection whose response turned out to carry a large body (a file of undeclared
   * size): counted as one of `client`'s large connections from now on, when a large one is free
   * and no other large request is waiting for it; returns its new release (the small one must
   * then not be called). null: the caller gives the connection up and asks again as large.
   */
  promote(client: string): (() => void) | null {
    if (this.large >= this.largeMax || this.waitingLarge > 0) return null;
    this.small--;
    this.large++;
    this.largeHeld.set(client, (this.largeHeld.get(client) ?? 0) + 1);
    this.lastServed.set(client, ++this.served);
    return this.releaser('large', client);
  }

  /** Hand free connections out: small requests first, then large ones, fairly between clients. */
  private pump(): void {
    while (this.small + this.large < this.connections) {
      const s = this.smallWaiting.shift();
      if (s) {
        this.small++;
        s.grant();
        continue;
      }
      if (this.large >= this.largeMax || this.waitingLarge === 0) return;
      const client = this.nextClient();
      const q = this.largeWaiting.get(client)!;
      const w = q.shift()!;
      this.waitingLarge--;
      if (q.length === 0) this.largeWaiting.delete(client);
      // To the back of the round: the next grant goes to another client holding as few.
      this.lastServed.set(client, ++this.served);
      this.large++;
      this.largeHeld.set(client, (this.largeHeld.get(client) ?? 0) + 1);
      w.grant();
    }
  }

  /** The waiting client holding the fewest large connections; on a tie, the one served longest ago. */
  private nextClient(): string {
    let best = '';
    let fewest = Infinity;
    let last = Infinity;
    for (const client of this.largeWaiting.keys()) {
      const held = this.largeHeld.get(client) ?? 0;
      const at = this.lastServed.get(client) ?? 0;
      if (held < fewest || (held === fewest && at < last)) {
        best = client;
        fewest = held;
        last = at;
      }
    }
    return best;
  }

  private waiting(w: Waiter): boolean {
    return w.cls === 'small' ? this.smallWaiting.includes(w) : (this.largeWaiting.get(w.client)?.includes(w) ?? false);
  }

  /** Take a waiter out of its queue; false if it was not waiting (already granted). */
  private remove(w: Waiter): boolean {
    if (w.cls === 'small') {
      const i = this.smallWaiting.indexOf(w);
      if (i < 0) return false;
      this.smallWaiting.splice(i, 1);
      return true;
    }
    const q = this.largeWaiting.get(w.client);
    const i = q?.indexOf(w) ?? -1;
    if (!q || i < 0) return false;
    q.splice(i, 1);
    this.waitingLarge--;
    if (q.length === 0) {
      this.largeWaiting.delete(w.client);
      if (!this.largeHeld.has(w.client)) this.lastServed.delete(w.client);
    }
    // A large request leaving may let nothing new in; a small one never blocks others. No pump needed.
    return true;
  }
}
