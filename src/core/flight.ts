/**
 * Single flight: concurrent callers asking for the same key share one run of the work. A flight
 * leaves the map once it settles, so a failed one is not remembered: the next caller starts
 * afresh. Results are not cached here (callers keep what they need).
 */
export class SingleFlight<K, V> {
  private readonly flights = new Map<K, Promise<V>>();

  /** The flight under way for `key`, joined; or a new one running `fn` (started at once). */
  run(key: K, fn: () => Promise<V>): Promise<V> {
    const flying = this.flights.get(key);
    if (flying) return flying;
    let started: Promise<V>;
    try {
      started = fn();
    } catch (e) {
      return Promise.reject(e);
    }
    const p: Promise<V> = started.finally(() => {
      if (this.flights.get(key) === p) this.flights.delete(key);
    });
    this.flights.set(key, p);
    return p;
  }

  /** The flight under way for `key`, if any (to wait for it without starting one). */
  get(key: K): Promise<V> | undefined {
    return this.flights.get(key);
  }

  has(key: K): boolean {
    return this.flights.has(key);
  }

  /** How many flights are under way. */
  get size(): number {
    return this.flights.size;
  }
}
