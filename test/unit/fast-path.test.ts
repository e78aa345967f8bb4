import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { withFastPath, type FastPath } from '../../src/http/fast.js';

/** withFastPath on a real loopback server: who answers each request, and what the client sees. */
describe('withFastPath', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    server = undefined;
  });

  async function start(fast: FastPath) {
    const routed: string[] = [];
    const router = (req: IncomingMessage, res: ServerResponse) => {
      routed.push(req.url ?? '');
      res.end('router');
    };
    server = createServer(withFastPath(fast, router));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const get = (path: string) => fetch(`${url}${path}`, { signal: AbortSignal.timeout(3000) }).then(async (r) => ({ status: r.status, body: await r.text() }));
    return { routed, get };
  }

  it('lets the router take what is not a candidate, what the fast path declines, and what it throws on before writing', async () => {
    const tried: string[] = [];
    const s = await start({
      candidate: (req) => req.url !== '/other',
      async serve(req, res) {
        tried.push(req.url!);
        if (req.url === '/fast') {
          res.end('fast');
          return true;
        }
        if (req.url === '/throws') throw new Error('boom');
        return false;
      },
    });
    expect(await s.get('/fast')).toEqual({ status: 200, body: 'fast' });
    expect(await s.get('/declined')).toEqual({ status: 200, body: 'router' });
    expect(await s.get('/throws')).toEqual({ status: 200, body: 'router' });
    expect(await s.get('/other')).toEqual({ status: 200, body: 'router' });
    expect(tried).toEqual(['/fast', '/declined', '/throws']);
    expect(s.routed).toEqual(['/declined', '/throws', '/other']);
  });

  it('cuts the connection when the fast path throws after its head went out, instead of leaving the client waiting', async () => {
    const s = await start({
      candidate: () => true,
      async serve(_req, res) {
        res.writeHead(200, { 'content-length': '10' });
        res.flushHeaders();
        throw new Error('after the head');
      },
    });
    const t0 = Date.now();
    const err = await s.get('/x').catch((e: Error) => e);
    // Cut at once (a reset), not left to the client's own 3 s timeout.
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).not.toBe('TimeoutError');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(s.routed).toEqual([]);
  });
});
