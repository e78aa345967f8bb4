import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hitMemory } from '../../src/core/hit-body.js';
import { CHUNK_SIZE } from '../../src/core/chunks.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { sleep, until } from '../helpers/stuck.js';
import { rawGet, records, rowsOf } from '../helpers/http.js';

const MiB = 1 << 20;
const SLOT = CHUNK_SIZE + 32;

/** A raw client that reads about `rate` bytes a second (0: nothing), pausing its socket in between. */
class Paced {
  readonly socket: Socket;
  private readonly got: Buffer[] = [];
  private n = 0;
  readonly closed: Promise<void>;
  private readonly t0 = Date.now();

  constructor(port: number, path: string, rate: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n\r\n`);
    this.socket.on('error', () => {});
    const allowance = () => ((Date.now() - this.t0) / 1000) * rate;
    this.socket.on('data', (b: Buffer) => {
      this.got.push(b);
      this.n += b.length;
      if (this.n >= allowance()) this.socket.pause();
    });
    this.socket.pause();
    const timer = setInterval(() => this.n < allowance() && this.socket.resume(), 20);
    this.closed = new Promise((r) => this.socket.once('close', () => (clearInterval(timer), r())));
  }

  body(): Buffer {
    const all = Buffer.concat(this.got);
    return all.subarray(all.indexOf('\r\n\r\n') + 4);
  }
}

/**
 * Side paths of issue 29's guarantees (core/hit-body.ts HitMemory, http/send-watch.ts): a client
 * that keeps reading slower than Airlock sends, stuck clients that filled the budget before it
 * was spent, and pipelined requests whose connection goes away.
 */
describe('slow readers: side paths of the chunk budget and the send timeout', () => {
  const pub = new FakeIndex();
  let a: TestAirlock;
  const bytes = randomBytes(24 * MiB + 12345);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const cold = randomBytes(16 * MiB);
  const path = '/pypi/files/slowlib/slowlib-1.0-py3-none-any.whl';

  beforeAll(async () => {
    await pub.start();
    pub.add('slowlib', { filename: 'slowlib-1.0-py3-none-any.whl', bytes });
    pub.add('coldlib', { filename: 'coldlib-1.0-py3-none-any.whl', bytes: cold });
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
cache:
  scrub_rate: 0
transfers:
  send_timeout: 2
policy:
  pypi:
    allow:
      - { name: slowlib }
      - { name: coldlib }
`);
    expect((await rawGet(`${a.url}${path}`)).body.equals(bytes)).toBe(true);
    await a.airlock.cache.idle();
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  it('a client that keeps reading at 2 MiB/s (each MiB within send_timeout) is not closed, warm or cold', async () => {
    // Slower than Airlock sends, so a whole chunk is always queued when the watch looks: the queue's
    // length alone is the same at every look, though the client takes bytes all along.
    // The two at once (each ~10 s at this pace).
    const warm = new Paced(a.port, path, 2 * MiB);
    const coldClient = new Paced(a.port, '/pypi/files/coldlib/coldlib-1.0-py3-none-any.whl', 2 * MiB);
    await Promise.all([warm.closed, coldClient.closed]);
    expect(warm.body().length).toBe(bytes.length);
    expect(createHash('sha256').update(warm.body()).digest('hex')).toBe(sha);
    expect(coldClient.body().equals(cold)).toBe(true);
    const cut = [...(await records(a, 'name=slowlib')), ...(await records(a, 'name=coldlib'))].filter((r: { reason?: string }) =>
      r.reason?.includes('transfers.send_timeout'),
    );
    expect(cut).toEqual([]);
  }, 40_000);

  it('stuck clients that read ahead before the budget was spent give it back once it is', async () => {
    expect(await until(() => hitMemory.lent === 0, 5000)).toBe(true);
    // Four clients that read nothing: each reads ahead while the budget has room, and together they
    // stay just inside it (the last buffer would pass it), so none sheds 200 ms on.
    const stuck = Array.from({ length: 4 }, () => new Paced(a.port, path, 0));
    await sleep(600);
    expect(hitMemory.tight()).toBe(false);
    expect(hitMemory.lent).toBeGreaterThan(20 * SLOT);
    // A fifth client's first buffer spends it: the four have taken nothing for far longer than 200 ms.
    const fifth = new Paced(a.port, path, 0);
    await sleep(800);
    // The four hold only what is in their sockets (one chunk each; two for slack), not their read-ahead;
    // the fifth may read ahead (8 chunks) in the room they gave back. Before: all 32 stayed lent.
    expect(hitMemory.lent).toBeLessThanOrEqual(4 * 2 * SLOT + 8 * SLOT);
    for (const s of [...stuck, fifth]) s.socket.destroy();
    expect(await until(() => hitMemory.lent === 0, 3000)).toBe(true);
  }, 20_000);

  it('pipelined requests on a connection that closes give back their buffers and are recorded', async () => {
    expect(await until(() => hitMemory.lent === 0, 5000)).toBe(true);
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const s = connect(a.port, '127.0.0.1');
    s.on('error', () => {});
    // Three GETs in one write: Node answers them in turn, the second and third wait behind the first.
    s.write(ids.map((id) => `GET ${path} HTTP/1.1\r\nHost: airlock\r\nX-Request-Id: ${id}\r\n\r\n`).join(''));
    s.pause();
    await sleep(800);
    expect(hitMemory.lent).toBeGreaterThan(0);
    s.destroy();
    // The client is gone: no transfer of its connection may go on holding chunk buffers (or its open file).
    expect(await until(() => hitMemory.lent === 0, 3000)).toBe(true);
    for (const id of ids) expect(await until(async () => (await rowsOf(a, id)).length === 1, 3000)).toBe(true);
    // A client that reads its pipelined answers gets each whole, in turn.
    const p = connect(a.port, '127.0.0.1');
    const got: Buffer[] = [];
    p.on('data', (b: Buffer) => got.push(b));
    const ended = new Promise((r) => p.once('close', r));
    const req = `GET ${path} HTTP/1.1\r\nHost: airlock\r\n\r\n`;
    p.write(req + req + `GET ${path} HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n\r\n`);
    await ended;
    let all = Buffer.concat(got);
    for (let n = 0; n < 3; n++) {
      const head = all.indexOf('\r\n\r\n');
      expect(all.subarray(0, head).toString()).toMatch(new RegExp(`^HTTP/1.1 200[^]*content-length: ${bytes.length}`, 'i'));
      expect(all.subarray(head + 4, head + 4 + bytes.length).equals(bytes)).toBe(true);
      all = all.subarray(head + 4 + bytes.length);
    }
    expect(all.length).toBe(0);
  }, 20_000);
});
