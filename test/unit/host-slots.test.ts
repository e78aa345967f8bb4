import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { HostSlots } from '../../src/upstream/host-slots.js';
import { UpstreamHttp } from '../../src/upstream/http.js';

const tick = () => new Promise((r) => setImmediate(r));

/** Queue `n` large requests for `client`, noting each grant (client name) in `order`; returns their releases as they come. */
function queue(slots: HostSlots, client: string, n: number, order: string[], releases: Map<string, (() => void)[]>): void {
  for (let i = 0; i < n; i++)
    void slots.acquire('large', client).then((release) => {
      order.push(client);
      releases.set(client, [...(releases.get(client) ?? []), release]);
    });
}

describe('HostSlots: one upstream host shared out', () => {
  it('hands large connections round-robin across clients: one client with many queued does not take the next ones while others wait', async () => {
    const slots = new HostSlots('files.example', 4, 1);
    const order: string[] = [];
    const releases = new Map<string, (() => void)[]>();
    queue(slots, 'a', 5, order, releases);
    await tick();
    queue(slots, 'b', 2, order, releases);
    queue(slots, 'c', 1, order, releases);
    await tick();
    expect(order).toEqual(['a']);
    expect(slots.stats()).toEqual({ small: 0, large: 1, waitingSmall: 0, waitingLarge: 7 });
    // Each release hands the one large connection to the client served longest ago.
    for (let i = 0; i < 7; i++) {
      const last = order[order.length - 1];
      releases.get(last)!.shift()!();
      await tick();
    }
    expect(order).toEqual(['a', 'b', 'c', 'a', 'b', 'a', 'a', 'a']);
  });

  it('gives a newcomer the next large connection before a client that already holds many', async () => {
    const slots = new HostSlots('files.example', 8, 3);
    const order: string[] = [];
    const releases = new Map<string, (() => void)[]>();
    queue(slots, 'tenant', 10, order, releases);
    await tick();
    expect(order).toEqual(['tenant', 'tenant', 'tenant']);
    queue(slots, 'other', 1, order, releases);
    await tick();
    releases.get('tenant')!.shift()!();
    await tick();
    expect(order.slice(3)).toEqual(['other']);
    expect(slots.stats().waitingLarge).toBe(7);
  });

  it('never queues a small request behind large bodies, and serves waiting small requests first', async () => {
    const slots = new HostSlots('files.example', 3, 2);
    const order: string[] = [];
    const releases = new Map<string, (() => void)[]>();
    queue(slots, 'a', 20, order, releases);
    await tick();
    expect(slots.stats()).toEqual({ small: 0, large: 2, waitingSmall: 0, waitingLarge: 18 });
    // The third connection is kept for small requests: taken at once.
    const s1 = await slots.acquire('small', 'x');
    expect(slots.stats().small).toBe(1);
    // All three in use now: the next small one waits, and gets the first connection freed, before the large queue.
    let s2: (() => void) | undefined;
    void slots.acquire('small', 'y').then((r) => (s2 = r));
    await tick();
    expect(s2).toBeUndefined();
    releases.get('a')!.shift()!();
    await tick();
    expect(s2).toBeTypeOf('function');
    expect(slots.stats()).toEqual({ small: 2, large: 1, waitingSmall: 0, waitingLarge: 18 });
    // A small request leaving lets a large one in (below its limit).
    s1();
    await tick();
    expect(slots.stats()).toEqual({ small: 1, large: 2, waitingSmall: 0, waitingLarge: 17 });
    // A release is counted once however often it is called.
    s2!();
    s2!();
    await tick();
    expect(slots.stats()).toEqual({ small: 0, large: 2, waitingSmall: 0, waitingLarge: 17 });
  });

  it('gives up a wait after waitMs (503, busy) or when the caller aborts, leaving nothing queued', async () => {
    const slots = new HostSlots('files.example', 2, 1);
    const held = await slots.acquire('large', 'a');
    const t0 = Date.now();
    await expect(slots.acquire('large', 'b', { waitMs: 100 })).rejects.toMatchObject({
      code: 'UPSTREAM_UNAVAILABLE',
      status: 503,
      message: expect.stringMatching(/upstream files\.example is busy: waited 0\.1 s for one of its connections/),
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    const ac = new AbortController();
    const p = slots.acquire('large', 'c', { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toThrow(/cancelled while waiting for a connection to upstream files\.example/);
    expect(slots.stats()).toEqual({ small: 0, large: 1, waitingSmall: 0, waitingLarge: 0 });
    held();
    expect(slots.idle()).toBe(true);
  });
});

describe('UpstreamHttp: waiting for a connection is not the host failing', () => {
  let server: Server;
  const held: ServerResponse[] = [];
  let base = '';
  afterAll(() => {
    for (const r of held) r.destroy();
    server.closeAllConnections();
    server.close();
  });

  it('answers a small request beside full large connections; a large one that waits fails busy, not counted; the headers timeout starts with the socket', async () => {
    server = createServer((req, res) => {
      if (req.url === '/large') {
        // Headers and some bytes, then the body hangs (a slow download under way).
        // (Over smallBytes: a body of undeclared size is large only once its length says so.)
        res.writeHead(200, { 'content-length': '2000000' });
        res.write(Buffer.alloc(1000));
        held.push(res);
      } else if (req.url === '/quick') res.end(Buffer.alloc(2_000_000));
      else res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // One failure would open the breaker; the headers timeout is shorter than the waits below.
    const http = new UpstreamHttp({ connectionsPerHost: 2, largePerHost: 1, queueWaitMs: 400, headersTimeoutMs: 200, breakerFailures: 1 });
    const opts = (client: string) => ({ allowUrl: () => true, transfer: { client } });
    const first = await http.get(new URL(`${base}/large`), opts('a'));
    expect(first.status).toBe(200);
    // A small request (a page) is answered on the connection kept for it (queued, it would wait for ever, then fail busy).
    const page = await http.get(new URL(`${base}/page`), { allowUrl: () => true });
    const chunks: Buffer[] = [];
    for await (const c of page.body) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('ok');
    // A blob of known small size is a small request too.
    const smallFile = await http.get(new URL(`${base}/page`), { allowUrl: () => true, transfer: { client: 'b', size: 10 } });
    smallFile.body.resume();
    await new Promise((r) => smallFile.body.once('close', r));
    expect(http.queues()).toEqual([{ host: new URL(base).host, small: 0, large: 1, waitingSmall: 0, waitingLarge: 0 }]);
    // The second large body waits past the queue limit: 503, the host is not counted as failing.
    await expect(http.get(new URL(`${base}/large`), opts('b'))).rejects.toMatchObject({ status: 503, message: expect.stringMatching(/is busy/) });
    expect(http.failing()).toEqual([]);
    // One that waits 300 ms (longer than the 200 ms headers timeout) for the first body to end is answered.
    const waits: number[] = [];
    http.onQueueWait((_host, cls, s) => cls === 'large' && waits.push(s));
    const third = http.get(new URL(`${base}/quick`), opts('c'));
    setTimeout(() => first.body.destroy(), 300);
    const r = await third;
    expect(r.status).toBe(200);
    r.body.resume();
    expect(waits[0]).toBeGreaterThan(0.25);
    expect(http.failing()).toEqual([]);
    await http.close();
  });
});

describe('a small connection whose body turns out large (undeclared size)', () => {
  it('is promoted to a large one only when a large one is free and nobody waits for it', async () => {
    const s = new HostSlots('h', 4, 2);
    await s.acquire('small', 'a');
    const big = s.promote('a');
    expect(big).not.toBeNull();
    expect(s.stats()).toMatchObject({ small: 0, large: 1 });
    await s.acquire('small', 'b');
    await s.acquire('large', 'c');
    // Both large connections in use: the caller asks again as large (the fair queue).
    expect(s.promote('b')).toBeNull();
    expect(s.stats()).toMatchObject({ small: 1, large: 2 });
    big!();
    const waiting = s.acquire('large', 'd');
    await waiting;
    expect(s.stats()).toMatchObject({ small: 1, large: 2 });
  });
});
