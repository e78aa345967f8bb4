import { describe, expect, it } from 'vitest';
import { SingleFlight } from '../../src/core/flight.js';

const deferred = <T>() => {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
};

describe('SingleFlight', () => {
  it('runs the work once for concurrent callers of one key, separately per key, and forgets a flight once it settles', async () => {
    const f = new SingleFlight<string, number>();
    const d = deferred<number>();
    let runs = 0;
    const work = () => (runs++, d.promise);
    const a = f.run('k', work);
    const b = f.run('k', work);
    expect(b).toBe(a);
    expect(f.has('k')).toBe(true);
    expect(f.get('k')).toBe(a);
    expect(f.get('other')).toBeUndefined();
    const other = f.run('other', async () => 7);
    d.resolve(42);
    expect(await Promise.all([a, b, other])).toEqual([42, 42, 7]);
    expect(runs).toBe(1);
    expect(f.has('k')).toBe(false);
    expect(f.size).toBe(0);
    // Settled: the next caller runs the work again (results are not cached).
    expect(await f.run('k', async () => (runs++, 43))).toBe(43);
    expect(runs).toBe(2);
  });

  it('gives every joined caller the rejection, and a failed flight is retried by the next caller', async () => {
    const f = new SingleFlight<string, string>();
    const d = deferred<string>();
    const a = f.run('k', () => d.promise);
    const b = f.run('k', async () => 'never run');
    d.reject(new Error('upstream down'));
    await expect(a).rejects.toThrow('upstream down');
    await expect(b).rejects.toThrow('upstream down');
    expect(f.has('k')).toBe(false);
    expect(await f.run('k', async () => 'second try')).toBe('second try');
  });

  it('turns work that throws before returning a promise into a rejection, remembering nothing', async () => {
    const f = new SingleFlight<string, string>();
    await expect(
      f.run('k', () => {
        throw new Error('bad input');
      }),
    ).rejects.toThrow('bad input');
    expect(f.has('k')).toBe(false);
  });
});
