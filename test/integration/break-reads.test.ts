/**
 * Attacks on the shared read buffer of plain-HTTP upstream connections (src/upstream/large-reads.ts)
 * through the real server: many concurrent cold pulls of distinct files, in both framings, with
 * slow and paused clients and clients that hang up, then the same files warm; and a shutdown with
 * fills in flight.
 */
import { createHash, randomBytes } from 'node:crypto';
import { get } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { sleep } from '../helpers/stuck.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A client that stops reading now and then (its socket fills, Airlock's fill is held behind it). */
function slowGet(url: string, pauseMs: number): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        parts.push(c);
        if (++n % 4 === 0) {
          res.pause();
          setTimeout(() => res.resume(), pauseMs);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

describe('50 concurrent cold pulls of distinct files through the real server', () => {
  const files = Array.from({ length: 50 }, (_, i) => ({
    filename: `many${i}-1.0-py3-none-any.whl`,
    bytes: randomBytes((1 << 20) + i * 37_321 + 1),
  }));
  const both = [new FakeIndex(), new FakeIndex()];
  const airlocks: TestAirlock[] = [];

  beforeAll(async () => {
    both[1].noLength = true;
    for (const idx of both) {
      await idx.start();
      for (const f of files) idx.add(f.filename.split('-')[0], f);
    }
  });
  afterAll(async () => {
    for (const a of airlocks) await a.stop();
    for (const idx of both) await idx.stop();
  });

  for (const [name, i] of [
    ['content-length', 0],
    ['chunked', 1],
  ] as const) {
    it(`${name}: every client gets exactly the file, cold and warm; hang-ups cost nobody else`, async () => {
      const idx = both[i];
      const a = await startAirlock(`
pypi:
  upstream: ${idx.simpleUrl}
  file_hosts: ["127.0.0.1:${idx.port}"]
cache:
  scrub_rate: 0
policy:
  pypi:
    allow: [${files.map((f) => `{ name: ${f.filename.split('-')[0]} }`).join(', ')}]
`);
      airlocks.push(a);
      const url = (f: (typeof files)[number]) => `${a.url}/pypi/files/${f.filename.split('-')[0]}/${f.filename}`;
      // Every file twice at once: one client reading fast or slow, and on every fifth file a second one hanging up mid-fill.
      const cold = await Promise.all(
        files.map(async (f, k) => {
          const hang = k % 5 === 0 ? rawGet(url(f), {}, { hangUpAfterMs: 30 }) : undefined;
          const r = k % 3 === 0 ? await slowGet(url(f), 20) : await rawGet(url(f));
          await hang;
          return { k, status: r.status, ok: sha(r.body) === sha(f.bytes), len: r.body.length };
        }),
      );
      expect(cold.filter((c) => c.status !== 200 || !c.ok)).toEqual([]);
      const warm = await Promise.all(files.map(async (f) => sha((await rawGet(url(f))).body) === sha(f.bytes)));
      expect(warm.every(Boolean)).toBe(true);
      // Each file came from upstream once per index (the hang-ups joined the same fill or got nothing).
      for (const f of files) expect(idx.count(`/files/${f.filename}`), f.filename).toBe(1);
      const rows = await records(a, 'limit=1000');
      expect(rows.filter((r) => r.decision === 'allow' && r.cache === 'miss').length).toBeGreaterThanOrEqual(50);
    }, 120_000);
  }
});

describe('shutdown with fills in flight', () => {
  const idx = new FakeIndex();
  const bytes = randomBytes(8 << 20);
  beforeAll(async () => {
    idx.throttle = 2 << 20;
    await idx.start();
    for (let i = 0; i < 5; i++) idx.add(`slow${i}`, { filename: `slow${i}-1.0-py3-none-any.whl`, bytes });
  });
  afterAll(() => idx.stop());

  it('stop returns, clients see cut (never complete wrong) bodies, and nothing is left connected upstream', async () => {
    const a = await startAirlock(`
pypi:
  upstream: ${idx.simpleUrl}
  file_hosts: ["127.0.0.1:${idx.port}"]
policy:
  pypi:
    allow: [${[0, 1, 2, 3, 4].map((i) => `{ name: slow${i} }`).join(', ')}]
`);
    const pulls = [0, 1, 2, 3, 4].map((i) => rawGet(`${a.url}/pypi/files/slow${i}/slow${i}-1.0-py3-none-any.whl`).catch(() => undefined));
    await sleep(800);
    const t = Date.now();
    await a.stop();
    expect(Date.now() - t).toBeLessThan(15_000);
    for (const r of await Promise.all(pulls)) if (r?.complete) expect(sha(r.body)).toBe(sha(bytes));
  }, 60_000);
});
