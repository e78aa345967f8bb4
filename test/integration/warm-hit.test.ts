import { randomBytes } from 'node:crypto';
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HashPool } from '../../src/core/hasher.js';
import { hitMemory } from '../../src/core/hit-body.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { sha256hex } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { blobFile, quarantinedIn, rotBlob } from '../helpers/rot.js';

const MiB = 1 << 20;

/**
 * Verified warm hits (issue 29, core/hit-body.ts): each chunk of a cached blob is hashed on the
 * hash workers beside the send and goes out only once it matched the blob's chunk list; rot in any
 * position cuts a whole GET before its end; buffers are reused.
 */
describe('verified warm hits: hashed beside the send, never complete when rotted', () => {
  const pub = new FakeIndex();
  let a: TestAirlock;
  // Six 1 MiB chunks, the last one short.
  const bytes = randomBytes(5 * MiB + 300_000);
  const hex = sha256hex(bytes);
  const wheel = 'warmlib-1.0-py3-none-any.whl';
  const url = () => `${a.url}/pypi/files/warmlib/${wheel}`;
  // Larger than loopback's socket buffers, so that a client hanging up leaves the transfer unfinished.
  const big = randomBytes(32 * MiB);
  const bigUrl = () => `${a.url}/pypi/files/biglib/biglib-1.0-py3-none-any.whl`;

  beforeAll(async () => {
    await pub.start();
    pub.add('warmlib', { filename: wheel, bytes }).add('biglib', { filename: 'biglib-1.0-py3-none-any.whl', bytes: big });
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
cache:
  scrub_rate: 0
policy:
  pypi:
    allow:
      - { name: warmlib }
      - { name: biglib }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  const data = () => join(a.dir, 'data');
  /** Fill (or refill) the cache and wait for the commit. */
  const cached = async () => {
    const r = await rawGet(url());
    expect(r.body.equals(bytes)).toBe(true);
    for (let i = 0; i < 100 && (await a.airlock.cache.cachedSize(hex)) === undefined; i++) await new Promise((res) => setTimeout(res, 20));
    await a.airlock.cache.idle();
  };

  it('hashes every chunk of a whole hit or a range on the hash workers, and reuses its buffers', async () => {
    await cached();
    const sum = vi.spyOn(HashPool.prototype, 'sum');
    try {
      const whole = await rawGet(url());
      expect(whole.headers['x-airlock-cache']).toBe('hit');
      expect(whole.complete).toBe(true);
      expect(whole.body.equals(bytes)).toBe(true);
      expect(sum).toHaveBeenCalledTimes(6);
      sum.mockClear();
      const part = await rawGet(url(), { range: `bytes=${MiB + 5}-${2 * MiB + 10}` });
      expect(part.status).toBe(206);
      expect(part.body.equals(bytes.subarray(MiB + 5, 2 * MiB + 11))).toBe(true);
      expect(sum).toHaveBeenCalledTimes(2);
    } finally {
      sum.mockRestore();
    }
    // Ten more hits, one after another, make no new buffers: they come back to the pool.
    const made = hitMemory.made;
    for (let i = 0; i < 10; i++) expect((await rawGet(url())).body.equals(bytes)).toBe(true);
    expect(hitMemory.made).toBe(made);
  });

  const rots: { what: string; spoil: () => void }[] = [
    { what: 'the first byte', spoil: () => rotBlob(data(), hex, bytes, 0) },
    { what: 'a middle chunk', spoil: () => rotBlob(data(), hex, bytes, 2 * MiB + 7) },
    { what: 'the last byte', spoil: () => rotBlob(data(), hex, bytes, bytes.length - 1) },
    { what: 'a byte appended', spoil: () => appendFileSync(blobFile(data(), hex), Buffer.from([0])) },
    { what: 'the file cut short', spoil: () => truncateSync(blobFile(data(), hex), bytes.length - 100) },
  ];
  for (const r of rots) {
    it(`a whole GET of a blob rotted at ${r.what} is cut before its end, recorded, quarantined and fetched clean next`, async () => {
      await cached();
      const before = quarantinedIn(data(), hex).length;
      r.spoil();
      const cut = await rawGet(url());
      expect(cut.headers['x-airlock-cache']).toBe('hit');
      expect(cut.complete).toBe(false);
      expect(cut.body.length).toBeLessThan(bytes.length);
      // What did go out is the right bytes: the verified chunks before the rotted one.
      expect(cut.body.equals(bytes.subarray(0, cut.body.length))).toBe(true);
      expect(quarantinedIn(data(), hex).length).toBe(before + 1);
      const recs = await records(a, `sha256=${hex}&decision=deny`);
      expect(recs[0]).toMatchObject({ cache: 'hit', code: 'digest_mismatch' });
      const again = await rawGet(url());
      expect(again.headers['x-airlock-cache']).toBe('miss');
      expect(again.body.equals(bytes)).toBe(true);
    });
  }

  it('a client that hangs up mid-transfer is recorded as such, and the next hit is served whole', async () => {
    expect((await rawGet(bigUrl())).body.equals(big)).toBe(true);
    for (let i = 0; i < 100 && (await a.airlock.cache.cachedSize(sha256hex(big))) === undefined; i++) await new Promise((res) => setTimeout(res, 20));
    await new Promise<void>((resolve, reject) => {
      get(bigUrl(), (res) => {
        expect(res.headers['x-airlock-cache']).toBe('hit');
        res.once('data', () => {
          res.destroy();
          resolve();
        });
      }).on('error', reject);
    });
    let rec: { reason?: string } | undefined;
    for (let i = 0; i < 100 && !rec; i++) {
      rec = (await records(a, `sha256=${sha256hex(big)}&decision=allow`)).find((x: { reason?: string }) =>
        /client closed the connection early/.test(x.reason ?? ''),
      );
      if (!rec) await new Promise((res) => setTimeout(res, 20));
    }
    expect(rec).toBeDefined();
    const next = await rawGet(bigUrl());
    expect(next.complete).toBe(true);
    expect(next.body.equals(big)).toBe(true);
  });
});
