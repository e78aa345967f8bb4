import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { rawGet, records } from '../helpers/http.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The S3 blob store when the store itself misbehaves (a fault-injecting proxy in front of
 * s3rver): failed uploads, wrong bytes, errors and a stall on reads. Clients never get wrong
 * bytes whole, nothing hangs, and the next pull recovers.
 */
describe('S3 store faults', () => {
  const index = new FakeIndex();
  let s3: TestS3;
  let proxy: FaultProxy;
  let a: TestAirlock;
  const files = Array.from({ length: 4 }, (_, i) => ({ filename: `s3f-1.${i}-py3-none-any.whl`, bytes: randomBytes(300_000) }));

  beforeAll(async () => {
    s3 = await startS3();
    proxy = await new FaultProxy(s3.endpoint, new Map(), true).start();
    await index.start();
    for (const f of files) index.add('s3f', f);
    process.env.AIRLOCK_S3F_ID = s3.credentials.accessKeyId;
    process.env.AIRLOCK_S3F_SECRET = s3.credentials.secretAccessKey;
    a = await startAirlock(`storage:
  blobs: s3
  s3: { endpoint: "${proxy.url}", bucket: ${s3.bucket}, path_style: true, access_key_env: AIRLOCK_S3F_ID, secret_key_env: AIRLOCK_S3F_SECRET, timeout: 1 }
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
policy:
  pypi:
    allow: [{ name: s3f }]
`);
  });

  afterAll(async () => {
    await a?.stop();
    await proxy?.stop();
    await s3?.stop();
    await index.stop();
  });

  const url = (i: number) => `${a.url}/pypi/files/s3f/${files[i].filename}`;
  const key = (i: number) => sha(files[i].bytes);
  const pull = async (i: number) => {
    const r = await rawGet(url(i));
    await a.airlock.cache.idle();
    return r;
  };

  it('an upload the store keeps refusing: the client still gets the verified file, nothing is cached, the next pull stores it', async () => {
    for (let k = 0; k < 8; k++) proxy.inject(key(0), '5xx');
    const r = await pull(0);
    expect(r.complete && r.body.equals(files[0].bytes)).toBe(true);
    expect(await a.airlock.meta.getBlob(key(0))).toBeNull();
    proxy.clear();
    expect((await pull(0)).headers['x-airlock-cache']).toBe('miss');
    expect(await a.airlock.meta.getBlob(key(0))).not.toBeNull();
    expect((await pull(0)).headers['x-airlock-cache']).toBe('hit');
  });

  it('wrong bytes from the store are cut before their end, recorded, and fetched again', async () => {
    expect((await pull(1)).complete).toBe(true);
    proxy.inject(key(1), 'flip');
    const r = await pull(1);
    expect(r.complete).toBe(false);
    const [row] = await records(a, 'name=s3f&decision=deny&limit=1');
    expect(row.reason).toMatch(/now hashes to/);
    const again = await pull(1);
    expect(again.headers['x-airlock-cache']).toBe('miss');
    expect(again.complete && again.body.equals(files[1].bytes)).toBe(true);
  });

  it("a store that keeps failing reads answers an error in the client's format; one that stalls is cut after storage.s3.timeout", async () => {
    expect((await pull(2)).complete).toBe(true);
    for (let k = 0; k < 8; k++) proxy.inject(key(2), '5xx');
    const failed = await pull(2);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(failed.complete && failed.body.equals(files[2].bytes)).toBe(false);
    proxy.clear();
    expect((await pull(3)).complete).toBe(true);
    proxy.inject(key(3), 'stall');
    const t0 = Date.now();
    const stalled = await pull(3);
    expect(stalled.complete && stalled.status === 200 && stalled.body.equals(files[3].bytes)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const ok = await pull(3);
    expect(ok.complete && ok.body.equals(files[3].bytes)).toBe(true);
  }, 30_000);
});
