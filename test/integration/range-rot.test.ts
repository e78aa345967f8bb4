import { randomBytes } from 'node:crypto';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha256hex } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FakeRegistry, digestOf, makeImage } from '../helpers/fake-registry.js';
import { rawGet, records } from '../helpers/http.js';
import { safetensors } from '../helpers/model-files.js';
import { blobFile, quarantinedIn, rangeSlice, ROT_CASES, rotBlob } from '../helpers/rot.js';

const MiB = 1 << 20;

/**
 * Disk rot under Range requests (issue 25): a cached blob with one bit flipped is never served as
 * a complete body to a range that covers the flipped byte, on each front-end; the transfer is cut,
 * recorded as a digest mismatch, the blob quarantined and fetched clean on the next request.
 */
describe('rotted cache bytes under Range requests', () => {
  const pub = new FakeIndex();
  const hub = new FakeHub();
  const reg = new FakeRegistry();
  let a: TestAirlock;
  // 3.5 MiB + a bit: four 1 MiB chunks, the last one short.
  const wheelBytes = randomBytes(3 * MiB + 700_000);
  const weights = safetensors({ w: { dtype: 'U8', shape: [3 * MiB + 600_000], data_offsets: [0, 3 * MiB + 600_000] } }, randomBytes(3 * MiB + 600_000));
  const layer = randomBytes(3 * MiB + 500_000);
  const img = makeImage([layer]);
  const oldStyle = randomBytes(2 * MiB + 5);
  const truncated = randomBytes(MiB + 3);
  const wheel = 'rotlib-1.0-py3-none-any.whl';

  beforeAll(async () => {
    await pub.start();
    await hub.start();
    await reg.start();
    pub
      .add('rotlib', { filename: wheel, bytes: wheelBytes })
      .add('oldlib', { filename: 'oldlib-1.0-py3-none-any.whl', bytes: oldStyle })
      .add('shortlib', { filename: 'shortlib-1.0-py3-none-any.whl', bytes: truncated });
    const c = hub.commit('model', 'acme/rot', [{ path: 'model.safetensors', bytes: weights, lfs: true }]);
    reg.push('team/rot', img, 'v1');
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
${hfUpstream(hub)}oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
cache:
  scrub_rate: 0
policy:
  pypi:
    allow:
      - { name: rotlib }
      - { name: oldlib }
      - { name: shortlib }
  hf:
    allow:
      - repo: acme/rot
        refs: { main: "${c}" }
        files: ["*.safetensors"]
  oci:
    allow:
      - repository: reg.test/team/rot
        digests: ["${img.digest}"]
`);
    const m = await fetch(`${a.url}/v2/reg.test/team/rot/manifests/${img.digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    expect(m.status).toBe(200);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
    await hub.stop();
    await reg.stop();
  });

  const data = () => join(a.dir, 'data');
  const blobPath = (hex: string) => blobFile(data(), hex);
  const quarantined = (hex: string) => quarantinedIn(data(), hex);
  const rot = (hex: string, bytes: Buffer, at: number) => rotBlob(data(), hex, bytes, at);
  const slice = rangeSlice;
  const cases = ROT_CASES;

  const frontEnds = [
    { name: 'PyPI', bytes: wheelBytes, url: () => `${a.url}/pypi/files/rotlib/${wheel}` },
    { name: 'Hugging Face', bytes: weights, url: () => `${a.url}/hf/acme/rot/resolve/main/model.safetensors` },
    { name: 'OCI', bytes: layer, url: () => `${a.url}/v2/reg.test/team/rot/blobs/${digestOf(layer)}` },
  ];

  for (const fe of frontEnds) {
    it(`${fe.name}: a range over a rotted chunk is cut, never complete; the blob is quarantined and fetched clean next`, async () => {
      const hex = sha256hex(fe.bytes);
      const first = await rawGet(fe.url());
      expect(first.status).toBe(200);
      expect(first.body.equals(fe.bytes)).toBe(true);
      await a.airlock.cache.idle();
      for (const c of cases) {
        expect(await a.airlock.cache.cachedSize(hex), c.what).toBe(fe.bytes.length);
        const before = quarantined(hex).length;
        rot(hex, fe.bytes, c.at(fe.bytes.length));
        const cut = await rawGet(fe.url(), { range: c.range });
        const want = slice(fe.bytes, c.range);
        // Either headers went out and the body was cut before its end, or nothing of it did.
        expect(cut.headers['x-airlock-cache'], c.what).toBe('hit');
        expect(cut.complete, c.what).toBe(false);
        expect(cut.body.length, c.what).toBeLessThan(want.length);
        // What did go out is the right bytes (verified chunks before the rotted one).
        expect(cut.body.equals(want.subarray(0, cut.body.length)), c.what).toBe(true);
        expect(quarantined(hex).length, c.what).toBe(before + 1);
        const recs = await records(a, `sha256=${hex}&decision=deny`);
        expect(recs[0], c.what).toMatchObject({ cache: 'hit', code: 'digest_mismatch' });
        expect(recs[0].reason).toMatch(/cached copy of sha256:[0-9a-f]{64} has a chunk at byte \d+ that hashes to/);
        const again = await rawGet(fe.url(), { range: c.range });
        expect(again.status, c.what).toBe(206);
        expect(again.headers['x-airlock-cache'], c.what).toBe('miss');
        expect(again.complete, c.what).toBe(true);
        expect(again.body.equals(want), c.what).toBe(true);
        // Let the refill commit; then the blob is a hit again for the next case.
        for (let i = 0; i < 100 && (await a.airlock.cache.cachedSize(hex)) === undefined; i++) await new Promise((r) => setTimeout(r, 20));
        await a.airlock.cache.idle();
      }
      // A range clear of the rot is served whole from verified chunks; the blob stays cached.
      rot(hex, fe.bytes, fe.bytes.length - 1);
      const clear = await rawGet(fe.url(), { range: 'bytes=5-1000' });
      expect(clear.status).toBe(206);
      expect(clear.complete).toBe(true);
      expect(clear.body.equals(fe.bytes.subarray(5, 1001))).toBe(true);
      expect(await a.airlock.cache.cachedSize(hex)).toBe(fe.bytes.length);
      writeFileSync(blobPath(hex), fe.bytes);
    });
  }

  it('a blob cached before chunk lists is verified whole before any range of it is served: rotted, it is refetched, never served', async () => {
    const url = `${a.url}/pypi/files/oldlib/oldlib-1.0-py3-none-any.whl`;
    const hex = sha256hex(oldStyle);
    expect((await rawGet(url)).status).toBe(200);
    await a.airlock.cache.idle();
    const db = new Database(join(a.dir, 'data', 'airlock.db'));
    const lists = () => (db.prepare('SELECT COUNT(*) AS n FROM blob_chunks WHERE sha256 = ?').get(hex) as { n: number }).n;
    try {
      expect(lists()).toBe(1);
      // The old state: no chunk list. Sound bytes: the range is served (after a whole check), and the list is written.
      db.prepare('DELETE FROM blob_chunks WHERE sha256 = ?').run(hex);
      const ok = await rawGet(url, { range: 'bytes=100-199' });
      expect(ok.headers['x-airlock-cache']).toBe('hit');
      expect(ok.body.equals(oldStyle.subarray(100, 200))).toBe(true);
      expect(lists()).toBe(1);
      // The old state again (a fresh process: no list in memory either), now rotted.
      db.prepare('DELETE FROM blob_chunks WHERE sha256 = ?').run(hex);
      (a.airlock.cache as unknown as { hits: { drop(h: string): void } }).hits.drop(hex);
      rot(hex, oldStyle, 2 * MiB + 1);
      const before = quarantined(hex).length;
      // Rot far from the range asked: still found (the whole blob is checked first) and never served.
      const res = await rawGet(url, { range: 'bytes=0-99' });
      expect(res.status).toBe(206);
      expect(res.headers['x-airlock-cache']).toBe('miss');
      expect(res.complete).toBe(true);
      expect(res.body.equals(oldStyle.subarray(0, 100))).toBe(true);
      expect(quarantined(hex).length).toBe(before + 1);
      // A whole read of a blob with no list writes it.
      await a.airlock.cache.idle();
      db.prepare('DELETE FROM blob_chunks WHERE sha256 = ?').run(hex);
      expect((await rawGet(url)).body.equals(oldStyle)).toBe(true);
      for (let i = 0; i < 50 && lists() === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(lists()).toBe(1);
    } finally {
      db.close();
    }
  });

  it('HEAD on a cached blob cut short answers its true size and forgets the short copy (quarantined, refetched on the next GET)', async () => {
    const url = `${a.url}/pypi/files/shortlib/shortlib-1.0-py3-none-any.whl`;
    const hex = sha256hex(truncated);
    expect((await rawGet(url)).status).toBe(200);
    await a.airlock.cache.idle();
    truncateSync(blobPath(hex), 1000);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(truncated.length));
    expect(quarantined(hex)).toHaveLength(1);
    expect(await a.airlock.cache.cachedSize(hex)).toBeUndefined();
    const get = await rawGet(url);
    expect(get.headers['x-airlock-cache']).toBe('miss');
    expect(get.complete).toBe(true);
    expect(get.body.equals(truncated)).toBe(true);
  });
});
