import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HIT_MEMORY, hitMemory } from '../../src/core/hit-body.js';
import { CHUNK_SIZE } from '../../src/core/chunks.js';
import { HashPool } from '../../src/core/hasher.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { sleep, Stuck, until } from '../helpers/stuck.js';

const MiB = 1 << 20;
const SLOT = CHUNK_SIZE + 32;

/** Files of this process open under `dir`. */
function openUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const to = readlinkSync(`/proc/self/fd/${fd}`);
      if (to.startsWith(dir)) out.push(to);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

describe('hundreds of stuck clients', () => {
  const pub = new FakeIndex();
  const bytes = randomBytes(24 * MiB + 12345);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const path = '/pypi/files/manylib/manylib-1.0-py3-none-any.whl';
  const config = (timeout: number) => `
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
cache:
  scrub_rate: 0
transfers:
  send_timeout: ${timeout}
policy:
  pypi:
    allow:
      - { name: manylib }
`;
  let a: TestAirlock | undefined;

  beforeAll(async () => {
    await pub.start();
    pub.add('manylib', { filename: 'manylib-1.0-py3-none-any.whl', bytes });
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  it('300 stuck clients: a fresh client still gets the whole file in seconds; all are closed, recorded, buffers back', async () => {
    a = await startAirlock(config(8));
    expect((await rawGet(`${a.url}${path}`)).body.equals(bytes)).toBe(true);
    await a.airlock.cache.idle();
    expect(await until(() => hitMemory.lent === 0, 5000)).toBe(true);
    const stuck: Stuck[] = [];
    for (let i = 0; i < 300; i++) stuck.push(new Stuck(a.port, path));
    // Let them all start and get stuck (each read ahead while it could, then shed).
    let most = 0;
    for (let t = 0; t < 40; t++) {
      await sleep(50);
      most = Math.max(most, hitMemory.lent);
    }
    const t0 = Date.now();
    const fresh = await rawGet(`${a.url}${path}`);
    const took = Date.now() - t0;
    expect(fresh.complete).toBe(true);
    expect(createHash('sha256').update(fresh.body).digest('hex')).toBe(sha);
    expect(took).toBeLessThan(3000);
    expect(most).toBeLessThanOrEqual(HIT_MEMORY + 300 * SLOT + 16 * SLOT);
    // All cut after send_timeout, a row each.
    let cut: unknown[] = [];
    await until(async () => {
      cut = (await records(a!, 'name=manylib&limit=1000')).filter((r: { reason?: string }) => r.reason?.startsWith('connection closed by Airlock'));
      return cut.length >= 300;
    }, 20_000);
    expect(cut).toHaveLength(300);
    expect(await until(() => hitMemory.lent === 0, 3000)).toBe(true);
    expect(openUnder(a.dir).filter((f) => f.includes('blobs'))).toEqual([]);
    for (const s of stuck) s.resume();
    await Promise.all(stuck.map((s) => s.closed));
    await a.stop();
    a = undefined;
  }, 90_000);

  /**
   * Stop while `n` clients are stuck (hash workers answering `slowHash` ms late): how long the stop
   * took, whether every buffer came back and which files stayed open just after it, and the rows a
   * server started again on the same data finds.
   */
  async function stopWhileStuck(
    n: number,
    slowHash: number,
  ): Promise<{ rows: { reason?: string }[]; stuck: Stuck[]; tookMs: number; lentBack: boolean; open: string[] }> {
    a = await startAirlock(config(60));
    const dir = a.dir;
    expect((await rawGet(`${a.url}${path}`)).body.equals(bytes)).toBe(true);
    await a.airlock.cache.idle();
    expect(await until(() => hitMemory.lent === 0, 5000)).toBe(true);
    const stuck: Stuck[] = [];
    for (let i = 0; i < n; i++) stuck.push(new Stuck(a.port, path));
    await sleep(1500);
    expect(hitMemory.lent).toBeGreaterThan(0);
    const sum = HashPool.prototype.sum;
    if (slowHash > 0)
      HashPool.prototype.sum = function (this: HashPool, ...args: Parameters<HashPool['sum']>) {
        return new Promise<void>((r) => setTimeout(r, slowHash)).then(() => sum.apply(this, args));
      };
    const t0 = Date.now();
    try {
      await a.stop();
    } finally {
      HashPool.prototype.sum = sum;
    }
    const tookMs = Date.now() - t0;
    a = undefined;
    const lentBack = await until(() => hitMemory.lent === 0, 3000);
    const open = openUnder(dir);
    for (const s of stuck) s.resume();
    await Promise.all(stuck.map((s) => s.closed));
    a = await startAirlock(config(60), { dataDir: `${dir}/data` });
    const ids = new Set<string>(stuck.map((s) => s.id));
    const rows = (await records(a, 'name=manylib&limit=1000')).filter((r: { requestId?: string }) => ids.has(r.requestId!));
    await a.stop();
    a = undefined;
    return { rows, stuck, tookMs, lentBack, open };
  }

  it('server stop while 20 clients are stuck and the hash workers are busy: each cut transfer still has its row', async () => {
    // Before: stop() closed the store once the connections were closed, not once their transfers
    // had ended; a transfer still reading its next chunk wrote its row to a closed database (lost).
    const { rows, tookMs } = await stopWhileStuck(20, 300);
    expect(tookMs).toBeLessThan(5000);
    expect(rows).toHaveLength(20);
    for (const r of rows) expect(r.reason).toMatch(/^client closed the connection early|^connection closed by Airlock/);
  }, 60_000);

  it('server stop while 100 clients are stuck: returns promptly, no buffer lent, no file open, a row each', async () => {
    const { rows, stuck, tookMs, lentBack, open } = await stopWhileStuck(100, 0);
    expect(tookMs).toBeLessThan(5000);
    expect(lentBack).toBe(true);
    expect(open).toEqual([]);
    for (const s of stuck) expect(s.body().length).toBeLessThan(bytes.length);
    // The record, read by a server started again on the same data.
    expect(rows).toHaveLength(100);
    for (const r of rows) expect(r.reason).toMatch(/client closed the connection early|closed by Airlock/);
  }, 90_000);
});
