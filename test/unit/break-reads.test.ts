/**
 * Attacks on the shared read buffer of plain-HTTP upstream connections (src/upstream/large-reads.ts),
 * through UpstreamHttp: responses written by hand in pieces (headers and framing split anywhere),
 * while other transfers of the same process keep overwriting the shared buffer between the pieces.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { READ_MAX } from '../../src/upstream/large-reads.js';
import { rawServer, type RawServer } from '../helpers/raw-server.js';
import { sleep } from '../helpers/stuck.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const allowUrl = () => true;

/** Write `bytes` in pieces of the given sizes (cycled), a timer apart, so each lands in its own read. */
async function drip(s: Socket, bytes: Buffer, sizes: number[], gapMs = 1): Promise<void> {
  s.setNoDelay(true);
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length];
    if (s.destroyed) return;
    s.write(bytes.subarray(at, at + n));
    at += n;
    await sleep(gapMs);
  }
}

/** Reads a body holding every chunk (never copying), pausing now and then: a slow consumer. */
async function hold(body: Readable, pauseEvery = 0): Promise<Buffer> {
  const parts: Buffer[] = [];
  let i = 0;
  for await (const c of body) {
    parts.push(c as Buffer);
    if (pauseEvery && ++i % pauseEvery === 0) await sleep(2);
  }
  return Buffer.concat(parts);
}

const CHURN = randomBytes(8 << 20);
let churnServer: http.Server;
let churnPort = 0;
let churning = true;
const churnErrors: string[] = [];

/** Keeps `n` big transfers running through `up` (sharing the buffer) until told to stop. */
function churn(up: UpstreamHttp, n: number): Promise<void>[] {
  return Array.from({ length: n }, async () => {
    while (churning) {
      const r = await up.get(new URL(`http://127.0.0.1:${churnPort}/c`), { allowUrl });
      const got = await hold(r.body, 7);
      if (sha(got) !== sha(CHURN)) churnErrors.push('churn body differs');
    }
  });
}

beforeAll(async () => {
  churnServer = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': CHURN.length });
    res.end(CHURN);
  });
  await new Promise<void>((r) => churnServer.listen(0, '127.0.0.1', () => r()));
  churnPort = (churnServer.address() as { port: number }).port;
});

afterAll(async () => {
  churnServer.closeAllConnections();
  await new Promise((r) => churnServer.close(r));
});

describe('headers and framing split across reads while other transfers overwrite the shared buffer', () => {
  const up = new UpstreamHttp({ headersTimeoutMs: 20_000, bodyTimeoutMs: 20_000 });
  let raw: RawServer;
  const long = 'x'.repeat(6000);
  const challenges = ['Bearer realm="http://a.test/token",service="reg",scope="repository:a:pull"', 'Basic realm="b"', 'Bearer realm="c"'];
  const many = Array.from({ length: 60 }, (_, i) => [`x-h-${i}`, `v${i}-${'abcdefghij'.repeat(i % 9)}`] as const);
  const body = randomBytes(300_001);

  /** A chunked body with odd chunk sizes, chunk extensions and trailers. */
  function chunked(b: Buffer): Buffer {
    const out: Buffer[] = [];
    let at = 0;
    for (let i = 0; at < b.length; i++) {
      const n = Math.min(b.length - at, [1, 2, 3, 4093, 17, 65537, 9, 250_000][i % 8]);
      out.push(Buffer.from(`${n.toString(16)};ext=${i};q="a b"\r\n`), b.subarray(at, at + n), Buffer.from('\r\n'));
      at += n;
    }
    out.push(Buffer.from('0;last=1\r\nx-trailer: t1\r\nx-trailer-2: t2\r\n\r\n'));
    return Buffer.concat(out);
  }

  function head(status: string, framing: string): Buffer {
    const lines = [
      `HTTP/1.1 ${status}`,
      ...many.map(([k, v]) => `${k}: ${v}`),
      `x-long: ${long}`,
      ...challenges.map((c) => `www-authenticate: ${c}`),
      framing,
      '',
      '',
    ];
    return Buffer.from(lines.join('\r\n'));
  }

  beforeAll(async () => {
    raw = await rawServer((s) => {
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n')) {
          const req = buf.slice(0, buf.indexOf('\r\n\r\n'));
          buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
          const path = req.split(' ')[1];
          const sizes = [1, 2, 3, 5, 7, 11, 13, 64, 1000, 4099];
          if (path === '/cl') void drip(s, Buffer.concat([head('200 Fine Reason Phrase Here', `content-length: ${body.length}`), body]), sizes);
          else if (path === '/chunked') void drip(s, Buffer.concat([head('200 OK', 'transfer-encoding: chunked'), chunked(body)]), sizes);
          else if (path === '/close') void drip(s, Buffer.concat([head('200 OK', 'connection: close'), body]), sizes).then(() => s.end());
          else if (path === '/redirect') void drip(s, Buffer.concat([head('302 Found', 'location: /cl\r\ncontent-length: 3'), Buffer.from('abc')]), sizes);
          else if (path === '/info')
            void drip(
              s,
              Buffer.concat([
                Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n'),
                head('200 OK', `content-length: ${body.length}`),
                body,
              ]),
              sizes,
            );
        }
      });
    });
  });

  afterAll(async () => {
    churning = false;
    raw.close();
    await up.close();
  });

  it('every response, in any framing, has exactly the headers and body its upstream sent, with 6 big transfers churning', async () => {
    churning = true;
    const churners = churn(up, 6);
    const paths = ['/cl', '/chunked', '/close', '/redirect', '/info'];
    const results = await Promise.all(
      Array.from({ length: 15 }, async (_, i) => {
        const path = paths[i % paths.length];
        const r = await up.get(new URL(`http://127.0.0.1:${raw.port}${path}`), { allowUrl });
        const got = await hold(r.body, i % 3);
        return { path, r, got };
      }),
    );
    churning = false;
    await Promise.all(churners);
    expect(churnErrors).toEqual([]);
    for (const { path, r, got } of results) {
      expect(r.status, path).toBe(200);
      expect(sha(got), path).toBe(sha(body));
      for (const [k, v] of many) expect(r.headers[k], `${path} ${k}`).toBe(v);
      expect(r.headers['x-long']).toBe(long);
      expect(r.headers['www-authenticate']).toEqual(challenges);
      if (path === '/redirect') expect(r.url.pathname).toBe('/cl');
    }
  }, 60_000);
});

describe('the client behaves as before', () => {
  let raw: RawServer;
  const up = new UpstreamHttp({ headersTimeoutMs: 400, bodyTimeoutMs: 400, breakerFailures: 0 });
  const body = randomBytes(50_000);

  beforeAll(async () => {
    raw = await rawServer((s) => {
      s.on('data', (d) => {
        const path = d.toString('latin1').split(' ')[1];
        const headOk = (n: number) => `HTTP/1.1 200 OK\r\ncontent-length: ${n}\r\n\r\n`;
        if (path === '/slow-but-moving') {
          // A byte every 150 ms for 1.5 s: never 400 ms without bytes, the body must not be cut.
          s.write(headOk(10));
          let i = 0;
          const t = setInterval(() => {
            s.write('0123456789'[i++]);
            if (i === 10) clearInterval(t);
          }, 150);
          s.on('close', () => clearInterval(t));
        } else if (path === '/stall') s.write(`${headOk(100)}abc`);
        else if (path === '/no-headers') s.write('HTTP/1.1 200 OK\r\n');
        else if (path === '/more') s.write(Buffer.concat([Buffer.from(headOk(body.length)), body, Buffer.from('EXTRA BYTES NOT HTTP\r\n\r\n')]));
        else if (path === '/short-close') s.end(Buffer.concat([Buffer.from(headOk(body.length)), body.subarray(0, 1000)]));
        else if (path === '/reset') {
          s.write(Buffer.concat([Buffer.from(headOk(body.length)), body.subarray(0, 1000)]));
          setTimeout(() => s.resetAndDestroy(), 20);
        } else if (path === '/garbage') s.end('NOT HTTP AT ALL\r\n\r\n');
      });
    });
  });

  afterAll(async () => {
    raw.close();
    await up.close();
  });

  const get = (p: string) => up.get(new URL(`http://127.0.0.1:${raw.port}${p}`), { allowUrl });

  it('a body that keeps moving is not cut by the body timeout; a stalled one is', async () => {
    const r = await get('/slow-but-moving');
    expect((await hold(r.body)).toString()).toBe('0123456789');
    const s = await get('/stall');
    await expect(hold(s.body)).rejects.toThrow(/no body bytes for 400 ms/);
  });

  it('no headers in time fails the request', async () => {
    await expect(get('/no-headers')).rejects.toThrow(/no response headers within 400 ms/);
  });

  it('more bytes than content-length: the body is exactly content-length bytes', async () => {
    const r = await get('/more');
    expect(sha(await hold(r.body))).toBe(sha(body));
  });

  it('a close or a reset mid-body fails the body', async () => {
    await expect(hold((await get('/short-close')).body)).rejects.toThrow();
    await expect(hold((await get('/reset')).body)).rejects.toThrow();
  });

  it('garbage fails the request, and the error keeps no view of the shared read buffer (rawPacket)', async () => {
    const e = (await get('/garbage').catch((x: unknown) => x)) as Error & { cause?: { rawPacket?: unknown } };
    expect(e.message).toMatch(/unreachable/);
    expect(e.cause).toBeInstanceOf(Error);
    expect(e.cause?.rawPacket).toBeUndefined();
  });

  it('every connection slot is given back', async () => {
    await sleep(50);
    expect(up.queues()).toEqual([]);
  });
});

describe('keep-alive reuse and the stale-socket retry', () => {
  it('a pooled connection the upstream closed is retried once on a new one; bodies stay exact', async () => {
    const body = randomBytes(200_000);
    let n = 0;
    const raw = await rawServer((s) => {
      let served = 0;
      s.on('data', () => {
        served++;
        n++;
        // Every connection answers two requests; the third on it is met with a reset (a stale pooled socket).
        if (served === 3) return void s.resetAndDestroy();
        s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
      });
    });
    const up = new UpstreamHttp({ connectionsPerHost: 2 });
    try {
      for (let i = 0; i < 8; i++) {
        const r = await up.get(new URL(`http://127.0.0.1:${raw.port}/x`), { allowUrl });
        expect(sha(await hold(r.body, i % 2 ? 3 : 0))).toBe(sha(body));
      }
      expect(n).toBeGreaterThan(8);
      expect(raw.connections()).toBeLessThan(8);
    } finally {
      raw.close();
      await up.close();
    }
  });
});

describe('memory: a paused body is not handed back in reads larger than the fills budget them', () => {
  /**
   * A fill pauses its upstream body once its queue reaches its share of the fills' memory
   * (src/core/spool.ts: 8 MiB for all running fills together, 128 KiB each at least, so 50
   * concurrent cold pulls fit the memory budget). While it is paused the upstream keeps sending
   * into the kernel's buffer (MiBs on loopback), and the first read after resume takes as much of
   * it as the read allows: that one chunk goes into the fill's queue and window past its bound.
   * With Node's default reads that was 64 KiB; with a fixed 1 MiB read, 1 MiB per fill (50
   * concurrent cold 8 MiB pulls through `airlock serve`: peak RSS 161-202 MB against 158-179 with
   * default reads). So reads shrink as connections are busy at once (upstream/large-reads.ts).
   */
  const pausedBodies = async (count: number): Promise<number[]> => {
    const body = Buffer.alloc(32 << 20, 7);
    const srv = http.createServer((_q, r) => {
      r.writeHead(200, { 'content-length': body.length });
      r.end(body);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const up = new UpstreamHttp();
    try {
      const url = new URL(`http://127.0.0.1:${(srv.address() as { port: number }).port}/`);
      const responses = await Promise.all(Array.from({ length: count }, () => up.get(url, { allowUrl, transfer: { size: body.length } })));
      return await Promise.all(
        responses.map(async (res) => {
          let [largest, got, n] = [0, 0, 0];
          for await (const c of res.body) {
            got += (c as Buffer).length;
            largest = Math.max(largest, (c as Buffer).length);
            if (++n % 8 === 0) await sleep(20);
          }
          expect(got).toBe(body.length);
          return largest;
        }),
      );
    } finally {
      srv.closeAllConnections();
      srv.close();
      await up.close();
    }
  };

  it('16 bodies whose readers keep pausing, at once (16 fills): no chunk of any is over 256 KiB', async () => {
    const largest = await pausedBodies(16);
    expect(Math.max(...largest)).toBeLessThanOrEqual(256 << 10);
  });

  it('a lone body whose reader keeps pausing: no chunk over the 1 MiB read', async () => {
    const [largest] = await pausedBodies(1);
    expect(largest).toBeLessThanOrEqual(READ_MAX);
  });
});

describe('HTTPS upstreams keep Node default reading', () => {
  it('the https agent is a plain https.Agent', () => {
    const up = new UpstreamHttp();
    const agents = (up as unknown as { agents: { http: http.Agent; https: https.Agent } }).agents;
    expect(Object.getPrototypeOf(agents.https)).toBe(https.Agent.prototype);
    expect(agents.https.createConnection).toBe(https.Agent.prototype.createConnection);
  });
});
