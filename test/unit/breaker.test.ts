import { afterAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { rawServer } from '../helpers/raw-server.js';

/** An upstream that accepts connections and never answers (a black hole), until told to answer. */
async function blackHole(): Promise<{ port: number; answer: () => void; close: () => void }> {
  let answering = false;
  const server = await rawServer((s) =>
    s.on('data', () => {
      if (answering) s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    }),
  );
  return { port: server.port, answer: () => (answering = true), close: server.close };
}

describe('upstream circuit breaker', () => {
  const closers: (() => void)[] = [];
  afterAll(() => closers.forEach((c) => c()));

  it('stops asking a black-holed host after 3 timeouts, then tries it again after the cooldown', async () => {
    const hole = await blackHole();
    closers.push(hole.close);
    const http = new UpstreamHttp({ headersTimeoutMs: 150, breakerCooldownMs: 400 });
    closers.push(() => void http.close());
    const url = new URL(`http://127.0.0.1:${hole.port}/simple/x/`);
    const get = async () => {
      const t0 = performance.now();
      const err = await http.get(url, { allowUrl: () => true }).then(
        (r) => {
          r.body.resume();
          return null;
        },
        (e: Error) => e,
      );
      return { ms: performance.now() - t0, err };
    };
    for (let i = 0; i < 3; i++) {
      const r = await get();
      expect(r.err?.message).toMatch(/unreachable/);
      expect(r.ms).toBeGreaterThanOrEqual(140);
    }
    // Open: refused at once, saying why, without waiting for the timeout.
    const fast = await get();
    expect(fast.err?.message).toMatch(/is not being asked: it failed 3 times in a row/);
    expect(fast.ms).toBeLessThan(50);
    // After the cooldown one request tries again; the host answers now, and the breaker closes.
    hole.answer();
    await new Promise((r) => setTimeout(r, 450));
    expect((await get()).err).toBeNull();
    expect((await get()).err).toBeNull();
  });

  it('does not count requests the caller cancelled', async () => {
    const hole = await blackHole();
    closers.push(hole.close);
    const http = new UpstreamHttp({ headersTimeoutMs: 5000, breakerFailures: 1 });
    closers.push(() => void http.close());
    const ac = new AbortController();
    const p = http.get(new URL(`http://127.0.0.1:${hole.port}/`), { allowUrl: () => true, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toThrow(/unreachable/);
    hole.answer();
    const r = await http.get(new URL(`http://127.0.0.1:${hole.port}/`), { allowUrl: () => true });
    r.body.resume();
    expect(r.status).toBe(200);
  });
});
