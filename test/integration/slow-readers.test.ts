// timed: its clients are judged by transfers.send_timeout against real time (vitest.config.ts runs it alone).
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HIT_MEMORY, hitMemory } from '../../src/core/hit-body.js';
import { CHUNK_SIZE } from '../../src/core/chunks.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { sleep, Stuck, until } from '../helpers/stuck.js';

const MiB = 1 << 20;
/**
 * Many clients that read slowly or not at all (issue 29: memory bounded under many slow readers).
 * A verified warm hit's chunks come from one budget for the process (core/hit-body.ts HitMemory):
 * a client that stops reading holds the chunk in its socket and gives back what it read ahead, and
 * transfers.send_timeout closes its connection (http/send-watch.ts), with a pull row saying so.
 */
describe('slow and stuck readers: bounded memory, closed after send_timeout, recorded', () => {
  const pub = new FakeIndex();
  let a: TestAirlock;
  // 24 chunks: far more than loopback's socket buffers take from a client that reads nothing.
  const bytes = randomBytes(24 * MiB + 12345);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const cold = randomBytes(24 * MiB);
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
  send_timeout: 3
policy:
  pypi:
    allow:
      - { name: slowlib }
      - { name: coldlib }
      - { name: slowup }
`);
    expect((await rawGet(`${a.url}${path}`)).body.equals(bytes)).toBe(true);
    await a.airlock.cache.idle();
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  it('40 clients that stop reading hold one chunk each, 5 that pause and go on get exact bytes, the stuck ones are closed and recorded', async () => {
    const stuck = Array.from({ length: 40 }, () => new Stuck(a.port, path));
    const pausing = Array.from({ length: 5 }, () => new Stuck(a.port, path));
    // While they all sit: before the budget each transfer held its 4 chunks (160 MiB for these 45).
    let most = 0;
    for (let t = 0; t < 20; t++) {
      await sleep(50);
      most = Math.max(most, hitMemory.held);
    }
    expect(most).toBeLessThanOrEqual(HIT_MEMORY + 45 * (CHUNK_SIZE + 32) + 16 * (CHUNK_SIZE + 32));
    // Once they have sat past the shed time with the budget spent, each holds only the chunk its socket has.
    expect(hitMemory.lent).toBeLessThanOrEqual(45 * (CHUNK_SIZE + 32));
    // The pausing ones go on: what they had read ahead was given back and is read (and checked) again.
    for (const p of pausing) p.resume();
    await Promise.all(pausing.map((p) => p.closed));
    for (const p of pausing) expect(createHash('sha256').update(p.body()).digest('hex')).toBe(sha);
    // The stuck ones are closed by the server once they took nothing for send_timeout (3 s): a row each says so.
    let rows: { reason?: string; decision: string; cache: string }[] = [];
    await until(
      async () =>
        (rows = (await records(a, `name=slowlib&limit=200`)).filter((r: { reason?: string }) => r.reason?.includes('transfers.send_timeout'))).length >= 40,
      9000,
    );
    expect(rows).toHaveLength(40);
    expect(rows[0]).toMatchObject({ decision: 'allow', cache: 'hit' });
    expect(rows[0].reason).toMatch(/^connection closed by Airlock: the client took none of the bytes sent to it for 3 s/);
    expect(hitMemory.lent).toBe(0);
    // What they find when they read again: a cut transfer, never the whole file.
    for (const s of stuck) s.resume();
    await Promise.all(stuck.map((s) => s.closed));
    for (const s of stuck) expect(s.body().length).toBeLessThan(bytes.length);
  }, 30_000);

  it('a client that stops reading a cold fill is closed after send_timeout too, and the fill goes on for the others', async () => {
    const coldPath = '/pypi/files/coldlib/coldlib-1.0-py3-none-any.whl';
    const stuck = new Stuck(a.port, coldPath);
    await sleep(300);
    const other = await rawGet(`${a.url}${coldPath}`);
    expect(other.body.equals(cold)).toBe(true);
    let cut: { reason?: string }[] = [];
    await until(
      async () => (cut = (await records(a, `name=coldlib`)).filter((r: { reason?: string }) => r.reason?.includes('transfers.send_timeout'))).length > 0,
      9000,
    );
    expect(cut).toHaveLength(1);
    stuck.resume();
    await stuck.closed;
    expect(stuck.body().length).toBeLessThan(cold.length);
  }, 30_000);

  it('a client that reads, waiting on a slow upstream, or an idle connection, is never closed by the send timeout', async () => {
    const idle = connect(a.port, '127.0.0.1');
    idle.on('error', () => {});
    let closed = false;
    idle.once('close', () => (closed = true));
    // 5 MiB at 1 MiB/s: longer than send_timeout, with nothing queued for the client while it waits.
    const slow = randomBytes(5 * MiB);
    pub.add('slowup', { filename: 'slowup-1.0-py3-none-any.whl', bytes: slow });
    pub.throttle = MiB;
    try {
      const r = await rawGet(`${a.url}/pypi/files/slowup/slowup-1.0-py3-none-any.whl`);
      expect(r.complete).toBe(true);
      expect(r.body.equals(slow)).toBe(true);
    } finally {
      pub.throttle = 0;
    }
    // The idle connection (no request at all) sat through the same seconds.
    expect(closed).toBe(false);
    idle.destroy();
  }, 20_000);
});
