import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LargeReadHttpAgent, READ_MAX, readBytes } from '../../src/upstream/large-reads.js';

/**
 * The upstream agents read every connection into one shared buffer (src/upstream/large-reads.ts).
 * What must hold: each body is exactly what its server sent, whatever the framing, however many
 * transfers share the buffer, and however long their readers keep the chunks they were given
 * (the fill keeps them in its window while later reads arrive), paused readers included; pooled
 * connections are reused; and the reads are larger than Node's default 64 KiB (else the agents
 * would not be doing what they are for).
 */
const BODY = randomBytes(24 << 20);
const DIGEST = createHash('sha256').update(BODY).digest('hex');

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url === '/close') res.writeHead(200, { connection: 'close' });
  else if (req.url === '/chunked') res.writeHead(200, { 'transfer-encoding': 'chunked' });
  else res.writeHead(200, { 'content-length': BODY.length });
  if (req.url === '/close') res.shouldKeepAlive = false;
  let at = 0;
  // Odd piece sizes: reads end anywhere within chunked framing and headers.
  const go = (): void => {
    while (at < BODY.length) {
      const n = 100_003 + (at % 7919);
      const piece = BODY.subarray(at, at + n);
      at += piece.length;
      if (!res.write(piece)) return void res.once('drain', go);
    }
    res.end();
  };
  go();
}

interface Got {
  digest: string;
  biggest: number;
  reused: boolean;
}

/** GET a body, keep every chunk until the end, pause the reader now and then; its digest afterwards. */
function get(url: string, agent: http.Agent): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      const kept: Buffer[] = [];
      let biggest = 0;
      res.on('data', (c: Buffer) => {
        kept.push(c);
        biggest = Math.max(biggest, c.length);
        if (kept.length % 5 === 0) {
          res.pause();
          setTimeout(() => res.resume(), 3);
        }
      });
      res.on('error', reject);
      // Hashed only after other transfers' later reads went through the shared buffer.
      res.on('end', () =>
        setTimeout(() => resolve({ digest: createHash('sha256').update(Buffer.concat(kept)).digest('hex'), biggest, reused: req.reusedSocket }), 20),
      );
    });
    req.on('error', reject);
  });
}

describe('upstream connections read into one shared large buffer', () => {
  let plain: http.Server;
  beforeAll(async () => {
    plain = http.createServer(handler);
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  });
  afterAll(() => {
    plain.closeAllConnections();
    plain.close();
  });

  const paths = ['/', '/chunked', '/close', '/', '/chunked', '/'];

  it('plain HTTP: six concurrent bodies, all framings, exact; connections reused; reads past 64 KiB', async () => {
    const agent = new LargeReadHttpAgent({ keepAlive: true, maxSockets: 8 });
    const base = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    try {
      const first = await Promise.all(paths.map((p) => get(base + p, agent)));
      const second = await Promise.all(paths.map((p) => get(base + p, agent)));
      for (const g of [...first, ...second]) expect(g.digest).toBe(DIGEST);
      expect(second.filter((g) => g.reused).length).toBeGreaterThanOrEqual(1);
      expect(Math.max(...[...first, ...second].map((g) => g.biggest))).toBeGreaterThan(64 << 10);
    } finally {
      agent.destroy();
    }
  });

  it('reads shrink as connections are busy at once: 1 MiB alone, 256 KiB for 16, never under 64 KiB', () => {
    expect([1, 4, 5, 16, 64, 1000].map(readBytes)).toEqual([READ_MAX, READ_MAX, 768 << 10, 256 << 10, 64 << 10, 64 << 10]);
  });
});
