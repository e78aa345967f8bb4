import { afterAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { rawServer, type RawServer } from '../helpers/raw-server.js';

/**
 * An upstream that keeps connections alive but drops a reused one the moment a second request
 * arrives on it, without answering: the race a pooled connection loses when the server closes it
 * as the client reuses it.
 */
function droppingReuse(): Promise<RawServer> {
  return rawServer((s) => {
    let served = 0;
    s.on('data', () => {
      if (served++ > 0) return s.resetAndDestroy();
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
    });
  });
}

describe('upstream HTTP client (node:http)', () => {
  const closers: (() => void)[] = [];
  afterAll(() => closers.forEach((c) => c()));

  it('sends a GET again, once, on a new connection when the pooled one it reused was reset', async () => {
    const up = await droppingReuse();
    closers.push(up.close);
    const http = new UpstreamHttp({ breakerFailures: 1 });
    closers.push(() => void http.close());
    const url = new URL(`http://127.0.0.1:${up.port}/simple/x/`);
    for (let i = 0; i < 3; i++) {
      const r = await http.get(url, { allowUrl: () => true });
      expect(r.status).toBe(200);
      let body = '';
      for await (const chunk of r.body) body += chunk;
      expect(body).toBe('ok');
    }
    // Every reuse was reset and retried on a new connection; none reached the breaker.
    expect(up.connections()).toBe(3);
    expect(http.failing()).toEqual([]);
  });

  it('cuts a body that stops sending for the body timeout, and keeps the connection usable otherwise', async () => {
    const server = await rawServer((s) =>
      s.on('data', (d) => {
        if (String(d).startsWith('GET /stall')) s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc');
        else s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }),
    );
    closers.push(server.close);
    const port = server.port;
    const http = new UpstreamHttp({ bodyTimeoutMs: 200 });
    closers.push(() => void http.close());
    const ok = await http.get(new URL(`http://127.0.0.1:${port}/ok`), { allowUrl: () => true });
    let body = '';
    for await (const chunk of ok.body) body += chunk;
    expect(body).toBe('ok');
    // The kept-alive connection is not cut by the body timer once its body has ended.
    await new Promise((r) => setTimeout(r, 300));
    const again = await http.get(new URL(`http://127.0.0.1:${port}/ok`), { allowUrl: () => true });
    for await (const _ of again.body);
    expect(server.connections()).toBe(1);
    const t0 = performance.now();
    const stalled = await http.get(new URL(`http://127.0.0.1:${port}/stall`), { allowUrl: () => true });
    await expect(
      (async () => {
        for await (const _ of stalled.body);
      })(),
    ).rejects.toThrow();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(180);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
