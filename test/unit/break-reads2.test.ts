import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { readBytes } from '../../src/upstream/large-reads.js';
import { sleep } from '../helpers/stuck.js';

/**
 * Attacks on the shared read buffer's sizing (large-reads.ts): the size of a connection's next
 * read is chosen after its previous read, so it may have been chosen when fewer connections were
 * busy than when the read finally happens (a reader paused, then companions came), and each
 * UpstreamHttp's agent counts only its own connections while the buffer is the process's.
 */
const BODY = 32 << 20;
const block = Buffer.alloc(1 << 20);
for (let i = 0; i < block.length; i++) block[i] = (i * 131 + (i >> 9)) & 255;

/** A plain-HTTP upstream writing BODY bytes of `block` repeated, as fast as the client takes them. */
function bigServer(): Promise<{ port: number; close: () => void }> {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': String(BODY) });
    let sent = 0;
    const pump = () => {
      while (sent < BODY) {
        const part = block.subarray(0, Math.min(block.length, BODY - sent));
        sent += part.length;
        if (!res.write(part)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  return new Promise((resolve) =>
    srv.listen(0, '127.0.0.1', () =>
      resolve({
        port: (srv.address() as AddressInfo).port,
        close: () => {
          srv.closeAllConnections();
          srv.close();
        },
      }),
    ),
  );
}

/** Upstream connections handed to requests now, over every given client (what the shared buffer serves). */
function busyOf(clients: UpstreamHttp[]): number {
  let n = 0;
  for (const c of clients) {
    const a = (c as unknown as { agents: { http: http.Agent } }).agents.http;
    for (const k in a.sockets) n += a.sockets[k]?.length ?? 0;
  }
  return n;
}

/** Each read of the body's connection from now on, with the connections busy process-wide at that moment. */
function watchReads(body: Readable, clients: UpstreamHttp[]): { len: number; busy: number }[] {
  const reads: { len: number; busy: number }[] = [];
  (body as http.IncomingMessage).socket.on('data', (d: Buffer) => reads.push({ len: d.length, busy: busyOf(clients) }));
  return reads;
}

/** Read the body to its end, checking every byte against the pattern. */
async function drainExact(body: Readable, from = 0): Promise<number> {
  let off = from;
  for await (const c of body as AsyncIterable<Buffer>) {
    for (let i = 0; i < c.length;) {
      const at = off % block.length;
      const n = Math.min(c.length - i, block.length - at);
      if (!c.subarray(i, i + n).equals(block.subarray(at, at + n))) throw new Error(`body differs at ${off}`);
      i += n;
      off += n;
    }
  }
  return off;
}

describe('large upstream reads: sizes against connections busy at the read', () => {
  const closers: (() => void)[] = [];
  afterAll(() => closers.forEach((c) => c()));

  it('a lone paused transfer that gets 30 companions reads no more than the 31 busy allow when it resumes', async () => {
    const srv = await bigServer();
    closers.push(srv.close);
    const up = new UpstreamHttp();
    closers.push(() => void up.close());
    const get = (i: number) => up.get(new URL(`http://127.0.0.1:${srv.port}/f/${i}`), { allowUrl: () => true, transfer: { size: BODY, client: `c${i}` } });
    const first = await get(0);
    // Alone: read a little at full size, then stop reading (a fill at its bound).
    const taken = await new Promise<number>((r) => first.body.once('data', (c: Buffer) => r(c.length)));
    first.body.pause();
    await sleep(300);
    const others = await Promise.all(Array.from({ length: 30 }, (_, i) => get(i + 1)));
    await sleep(300);
    expect(busyOf([up])).toBe(31);
    const reads = watchReads(first.body, [up]);
    const n = drainExact(first.body, taken);
    await sleep(300);
    const over = reads.filter((r) => r.len > readBytes(r.busy));
    expect(over).toEqual([]);
    // Everything still arrives byte for byte, and every connection is given back.
    // Read from the start (a resume() with no reader yet let bytes flow past it: "body differs at 0" in a loaded run).
    const draining = others.map((o) => drainExact(o.body));
    expect(await n).toBe(BODY);
    const ns = await Promise.all(draining);
    expect(ns.every((x) => x === BODY)).toBe(true);
    await sleep(50);
    expect(up.queues().reduce((s, q) => s + q.small + q.large, 0)).toBe(0);
  });

  it('two UpstreamHttp clients of one process share the 4 MiB: 2 x 16 paused bodies read at most 128 KiB each', async () => {
    const srv = await bigServer();
    closers.push(srv.close);
    const a = new UpstreamHttp();
    const b = new UpstreamHttp();
    closers.push(
      () => void a.close(),
      () => void b.close(),
    );
    const get = (c: UpstreamHttp, i: number) =>
      c.get(new URL(`http://127.0.0.1:${srv.port}/f/${i}`), { allowUrl: () => true, transfer: { size: BODY, client: `c${i}` } });
    const all = await Promise.all([...Array.from({ length: 16 }, (_, i) => get(a, i)), ...Array.from({ length: 16 }, (_, i) => get(b, 16 + i))]);
    await sleep(300);
    expect(busyOf([a, b])).toBe(32);
    // One body at a time resumes for a few reads (past the first, whose size was chosen earlier).
    const reads: { len: number; busy: number }[] = [];
    for (const r of [all[0], all[16]]) {
      const seen = watchReads(r.body, [a, b]);
      r.body.resume();
      await sleep(100);
      r.body.pause();
      reads.push(...seen.slice(1));
    }
    expect(reads.length).toBeGreaterThan(2);
    expect(reads.filter((r) => r.len > readBytes(r.busy))).toEqual([]);
    for (const r of all) r.body.destroy();
  });
});
