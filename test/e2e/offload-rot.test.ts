import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha256hex } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FakeRegistry, digestOf, makeImage } from '../helpers/fake-registry.js';
import { startNginx } from '../helpers/fleet.js';
import { rawGet, records } from '../helpers/http.js';
import { safetensors } from '../helpers/model-files.js';
import { blobFile, quarantinedIn, rangeSlice, ROT_CASES, rotBlob } from '../helpers/rot.js';

const MiB = 1 << 20;

/**
 * Disk rot through the nginx offload (issue 25): nginx sends what it reads and checks nothing, so
 * a Range (or If-Range) request is never handed to it (Airlock serves it from verified chunks),
 * and a whole body is handed over only once its file is known to hash to its digest. A rotted
 * blob is never served complete with the wrong bytes; it is quarantined and fetched clean.
 */
describe('rotted cache bytes through the nginx offload', () => {
  const pub = new FakeIndex();
  const hub = new FakeHub();
  const reg = new FakeRegistry();
  let a: TestAirlock;
  let lb: { url: string; stop(): Promise<void> };
  let data: string;
  const wheelBytes = randomBytes(3 * MiB + 700_000);
  const weights = safetensors({ w: { dtype: 'U8', shape: [3 * MiB + 600_000], data_offsets: [0, 3 * MiB + 600_000] } }, randomBytes(3 * MiB + 600_000));
  const layer = randomBytes(3 * MiB + 500_000);
  const img = makeImage([layer]);
  const wheel = 'offrot-1.0-py3-none-any.whl';

  beforeAll(async () => {
    await pub.start();
    await hub.start();
    await reg.start();
    pub.add('offrot', { filename: wheel, bytes: wheelBytes });
    const c = hub.commit('model', 'acme/offrot', [{ path: 'model.safetensors', bytes: weights, lfs: true }]);
    reg.push('team/offrot', img, 'v1');
    data = join(mkdtempSync(join(tmpdir(), 'airlock-offload-rot-')), 'data');
    a = await startAirlock(
      `
offload:
  mode: nginx
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
    allow: [{ name: offrot }]
  hf:
    allow:
      - repo: acme/offrot
        refs: { main: "${c}" }
        files: ["*.safetensors"]
  oci:
    allow:
      - repository: reg.test/team/offrot
        digests: ["${img.digest}"]
`,
      { dataDir: data },
    );
    // The internal location exactly as deploy/nginx-offload.conf writes it, pointed at this data_dir.
    const conf = readFileSync(join(process.cwd(), 'deploy', 'nginx-offload.conf'), 'utf8');
    const internal = /  location \/_airlock_blobs\/ \{[\s\S]*?\n  \}/.exec(conf)![0].replace('/var/lib/airlock/', `${data}/`);
    lb = await startNginx(mkdtempSync(join(tmpdir(), 'airlock-offload-rot-nginx-')), [a.port], internal);
    const m = await fetch(`${lb.url}/v2/reg.test/team/offrot/manifests/${img.digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    expect(m.status).toBe(200);
  });
  afterAll(async () => {
    await lb?.stop();
    await a?.stop();
    await pub.stop();
    await hub.stop();
    await reg.stop();
  });

  const frontEnds = [
    { name: 'PyPI', bytes: wheelBytes, path: `/pypi/files/offrot/${wheel}` },
    { name: 'Hugging Face', bytes: weights, path: '/hf/acme/offrot/resolve/main/model.safetensors' },
    { name: 'OCI', bytes: layer, path: `/v2/reg.test/team/offrot/blobs/${digestOf(layer)}` },
  ];

  /** Warm again after a refetch: the refill committed and the fill is over. */
  const settle = async (hex: string, size: number) => {
    for (let i = 0; i < 100 && (await a.airlock.cache.cachedSize(hex)) !== size; i++) await new Promise((r) => setTimeout(r, 20));
    await a.airlock.cache.idle();
  };

  for (const fe of frontEnds) {
    it(`${fe.name}: a Range over a rotted chunk through nginx is served by Airlock and cut, never complete; quarantined and fetched clean next`, async () => {
      const hex = sha256hex(fe.bytes);
      const url = `${lb.url}${fe.path}`;
      expect((await rawGet(url)).body.equals(fe.bytes)).toBe(true);
      await settle(hex, fe.bytes.length);
      // A sound warm whole GET is handed to nginx (the offload still works).
      const direct = await rawGet(`${a.url}${fe.path}`);
      expect(direct.headers['x-accel-redirect']).toBe(`/_airlock_blobs/${hex.slice(0, 2)}/${hex}`);
      for (const c of [...ROT_CASES, { ...ROT_CASES[2], what: 'the middle, bytes=0- with If-Range', ifRange: true }]) {
        expect(await a.airlock.cache.cachedSize(hex), c.what).toBe(fe.bytes.length);
        const before = quarantinedIn(data, hex).length;
        rotBlob(data, hex, fe.bytes, c.at(fe.bytes.length));
        const etag = 'ifRange' in c ? ((await fetch(url, { method: 'HEAD' })).headers.get('etag') ?? `"${hex}"`) : undefined;
        const cut = await rawGet(url, { range: c.range, ...(etag ? { 'if-range': etag } : {}) });
        const want = rangeSlice(fe.bytes, c.range);
        expect(cut.headers['x-airlock-cache'], c.what).toBe('hit');
        expect(cut.complete, c.what).toBe(false);
        expect(cut.body.length, c.what).toBeLessThan(want.length);
        expect(cut.body.equals(want.subarray(0, cut.body.length)), c.what).toBe(true);
        expect(quarantinedIn(data, hex).length, c.what).toBe(before + 1);
        const recs = await records(a, `sha256=${hex}&decision=deny`);
        expect(recs[0], c.what).toMatchObject({ cache: 'hit', code: 'digest_mismatch' });
        const again = await rawGet(url, { range: c.range });
        expect(again.status, c.what).toBe(206);
        expect(again.headers['x-airlock-cache'], c.what).toBe('miss');
        expect(again.complete && again.body.equals(want), c.what).toBe(true);
        await settle(hex, fe.bytes.length);
      }
      // A sound range is served whole by Airlock, from verified chunks (not by nginx).
      const part = await rawGet(url, { range: 'bytes=5-1000' });
      expect(part.status).toBe(206);
      expect(part.complete && part.body.equals(fe.bytes.subarray(5, 1001))).toBe(true);
      const partDirect = await rawGet(`${a.url}${fe.path}`, { range: 'bytes=5-1000' });
      expect(partDirect.headers['x-accel-redirect']).toBeUndefined();
      expect(partDirect.body.equals(fe.bytes.subarray(5, 1001))).toBe(true);
    });

    it(`${fe.name}: a whole GET of a rotted blob through nginx is never served complete with the wrong bytes; quarantined and fetched clean`, async () => {
      const hex = sha256hex(fe.bytes);
      const url = `${lb.url}${fe.path}`;
      await settle(hex, fe.bytes.length);
      // Sound bytes to start from (whatever the case before left).
      if (existsSync(blobFile(data, hex))) writeFileSync(blobFile(data, hex), fe.bytes);
      expect((await rawGet(url)).body.equals(fe.bytes)).toBe(true);
      for (const at of [0, 2 * MiB + 7, fe.bytes.length - 1]) {
        const before = quarantinedIn(data, hex).length;
        rotBlob(data, hex, fe.bytes, at);
        const got = await rawGet(url);
        // The file is hashed before nginx may send it: the rot is found first, and the body fetched clean.
        expect(got.headers['x-airlock-cache'], `rot at ${at}`).toBe('miss');
        expect(got.complete && got.body.equals(fe.bytes), `rot at ${at}`).toBe(true);
        expect(quarantinedIn(data, hex).length, `rot at ${at}`).toBe(before + 1);
        const again = await rawGet(url);
        expect(again.complete && again.body.equals(fe.bytes), `rot at ${at}`).toBe(true);
        await settle(hex, fe.bytes.length);
      }
      // Sound again: handed to nginx, and what nginx sends is the blob.
      const sound = await rawGet(url);
      expect(sound.headers['x-airlock-cache']).toBe('hit');
      expect(sound.complete && sound.body.equals(fe.bytes)).toBe(true);
    });
  }
});
