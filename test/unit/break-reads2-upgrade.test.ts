import net from 'node:net';
import { expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/upstream/http.js';

it('an upstream answering a GET with 101 Switching Protocols fails the request and gives its host slot back (no hang)', async () => {
  const s = net.createServer((c) => c.once('data', () => c.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\nabc')));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const up = new UpstreamHttp({ headersTimeoutMs: 500 });
  try {
    const url = new URL(`http://127.0.0.1:${(s.address() as net.AddressInfo).port}/x`);
    const got = up.get(url, { allowUrl: () => true }).then(
      () => 'answered',
      (e: Error) => e.message,
    );
    const out = await Promise.race([got, new Promise((r) => setTimeout(() => r('hung'), 2000))]);
    expect(out).toMatch(/unavailable|unreachable/i);
    expect(up.queues()).toEqual([]);
  } finally {
    s.close();
    await up.close();
  }
});
