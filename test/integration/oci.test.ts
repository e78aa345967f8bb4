import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../src/oci/registry-client.js';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeRegistry, digestOf, makeImage, makeIndex, type Image } from '../helpers/fake-registry.js';
import { rawGet, rawPath, records } from '../helpers/http.js';

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

async function ociError(res: Response): Promise<{ code: string; message: string }> {
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  return body.errors[0];
}

describe('OCI front-end against a local registry', () => {
  const reg = new FakeRegistry();
  let a: TestAirlock;
  const v1 = makeImage([randomBytes(200_000), randomBytes(1000)]);
  const v2 = makeImage([randomBytes(5000)]);
  const other = makeImage([randomBytes(3000)]);
  const tampered = makeImage([randomBytes(300_000)]);
  const evilManifest = makeImage([randomBytes(100)]);
  const amd = makeImage([randomBytes(4000)], 'amd64');
  const arm = makeImage([randomBytes(4000)], 'arm64');
  const multi = makeIndex([
    { img: amd, arch: 'amd64' },
    { img: arm, arch: 'arm64' },
  ]);
  const big = makeImage([randomBytes(4 * 1024 * 1024)]);

  beforeAll(async () => {
    await reg.start();
    reg.push('team/app', v1, 'v1');
    reg.push('team/app', v2);
    reg.push('team/app', other);
    reg.push('team/tampered', tampered, 'latest');
    reg.push('team/evilman', evilManifest, 'latest');
    reg.tamper.add(digestOf(tampered.layers[0]));
    reg.tamper.add(evilManifest.digest);
    reg.pushIndex('team/multi', multi, [amd, arm], 'latest');
    reg.push('team/big', big);
    a = await startAirlock(`
oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
    docker.io:
      url: ${reg.url}
policy:
  oci:
    allow:
      - repository: reg.test/team/app
        digests: ["${v1.digest}"]
        tags: { v1: "${v1.digest}" }
      - repository: reg.test/team/tampered
        digests: ["${tampered.digest}"]
      - repository: reg.test/team/evilman
        digests: ["${evilManifest.digest}"]
      - repository: reg.test/team/multi
        tags: { latest: "${multi.digest}" }
      - repository: reg.test/team/big
        digests: ["${big.digest}"]
      - repository: docker.io/library/python
        digests: ["${v1.digest}"]
    deny:
      - repository: reg.test/team/multi
        digests: ["${digestOf(arm.layers[0])}"]
        reason: CVE-2099-0001 in this layer
`);
  });

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  const v2url = (p: string) => `${a.url}/v2/${p}`;
  const manifestOf = (repo: string, ref: string, init: RequestInit = {}) =>
    fetch(v2url(`${repo}/manifests/${ref}`), { ...init, headers: { accept: ACCEPT, ...(init.headers ?? {}) } });

  it('answers the version check like a registry', async () => {
    for (const p of ['/v2/', '/v2']) {
      const res = await fetch(`${a.url}${p}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    }
  });

  it('serves a pinned manifest by digest with its exact bytes, type and digest', async () => {
    const res = await manifestOf('reg.test/team/app', v1.digest);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(v1.mediaType);
    expect(res.headers.get('docker-content-digest')).toBe(v1.digest);
    expect(Buffer.from(await res.arrayBuffer()).equals(v1.manifest)).toBe(true);
    const head = await manifestOf('reg.test/team/app', v1.digest, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(v1.manifest.length));
    expect(head.headers.get('docker-content-digest')).toBe(v1.digest);
  });

  it('does not serve a manifest whose pull record cannot be written (503 in the OCI envelope)', async () => {
    const meta = a.airlock.meta;
    const append = meta.appendPulls.bind(meta);
    meta.appendPulls = async () => {
      throw new Error('SQLITE_FULL: database or disk is full');
    };
    try {
      const res = await manifestOf('reg.test/team/app', v1.digest);
      expect(res.status).toBe(503);
      const body = await res.json();
      expect(body.errors[0].code).toBe('UNKNOWN');
      expect(body.errors[0].message).toMatch(/pull record could not be written \(SQLITE_FULL/);
    } finally {
      meta.appendPulls = append;
    }
    expect((await manifestOf('reg.test/team/app', v1.digest)).status).toBe(200);
  });

  it('answers a pinned tag with the pinned manifest even after the upstream tag moves', async () => {
    reg.tags.set('team/app:v1', v2.digest);
    const before = reg.count(`manifest:team/app:v1`);
    const res = await manifestOf('reg.test/team/app', 'v1');
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(v1.digest);
    expect(Buffer.from(await res.arrayBuffer()).equals(v1.manifest)).toBe(true);
    // Airlock never asked upstream what v1 points to.
    expect(reg.count(`manifest:team/app:v1`)).toBe(before);
  });

  it('refuses tags and digests that are not pinned, with the reason in the OCI error', async () => {
    let res = await manifestOf('reg.test/team/app', 'latest');
    expect(res.status).toBe(403);
    let e = await ociError(res);
    expect(e.code).toBe('DENIED');
    expect(e.message).toMatch(/tag "latest" of reg.test\/team\/app is not pinned/);
    res = await manifestOf('reg.test/team/app', other.digest);
    expect(res.status).toBe(403);
    e = await ociError(res);
    expect(e.message).toMatch(/is not pinned in policy/);
    res = await manifestOf('reg.test/team/unknown', 'v1');
    expect(res.status).toBe(403);
    expect((await ociError(res)).message).toMatch(/not on the OCI allowlist/);
    const recs = await records(a, 'ecosystem=oci&decision=deny');
    expect(recs.some((r) => r.name === 'reg.test/team/app' && r.version === other.digest)).toBe(true);
  });

  it('serves the blobs of an approved manifest, following the CDN redirect without Authorization', async () => {
    await manifestOf('reg.test/team/app', v1.digest);
    const layer = v1.layers[0];
    const res = await rawGet(v2url(`reg.test/team/app/blobs/${digestOf(layer)}`));
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.body.equals(layer)).toBe(true);
    expect(res.headers['docker-content-digest']).toBe(digestOf(layer));
    expect(reg.count(`cdn:${digestOf(layer)}`)).toBe(1);
    expect(reg.cdnAuthorization.every((h) => h === undefined)).toBe(true);
    // Token flow: one anonymous token for the repository scope, reused.
    expect(reg.tokenRequests.some((t) => t.scope === 'repository:team/app:pull' && t.service === 'fake-registry')).toBe(true);
    // Cached now: Range from the store.
    const part = await rawGet(v2url(`reg.test/team/app/blobs/${digestOf(layer)}`), { range: 'bytes=10-19' });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 10-19/${layer.length}`);
    expect(part.body.equals(layer.subarray(10, 20))).toBe(true);
    expect(reg.count(`cdn:${digestOf(layer)}`)).toBe(1);
    const head = await fetch(v2url(`reg.test/team/app/blobs/${digestOf(layer)}`), { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(layer.length));
  });

  it('refuses a blob that no approved manifest references', async () => {
    const res = await fetch(v2url(`reg.test/team/app/blobs/${digestOf(other.layers[0])}`));
    expect(res.status).toBe(403);
    const e = await ociError(res);
    expect(e.code).toBe('DENIED');
    expect(e.message).toMatch(/not referenced by any approved manifest/);
    expect(reg.count(`blob:${digestOf(other.layers[0])}`)).toBe(0);
  });

  it('cuts a tampered blob before its end, caches nothing and records the refusal', async () => {
    await manifestOf('reg.test/team/tampered', tampered.digest);
    const layer = tampered.layers[0];
    const res = await rawGet(v2url(`reg.test/team/tampered/blobs/${digestOf(layer)}`));
    expect(res.complete).toBe(false);
    expect(res.body.length).toBeLessThan(layer.length);
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(digestOf(layer).slice(7))).toBeUndefined();
    const recs = await records(a, 'ecosystem=oci&name=reg.test/team/tampered&decision=deny');
    expect(recs[0].reason).toMatch(/expected sha256/);
    expect(readdirSync(join(a.dir, 'data', 'spool'))).toEqual([]);
  });

  it('refuses a tampered manifest and caches nothing', async () => {
    const res = await manifestOf('reg.test/team/evilman', evilManifest.digest);
    expect(res.status).toBe(502);
    expect((await ociError(res)).message).toMatch(/nothing was cached/);
    reg.tamper.delete(evilManifest.digest);
    const ok = await manifestOf('reg.test/team/evilman', evilManifest.digest);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-airlock-cache')).toBe('miss');
  });

  it('approves the manifests an approved index lists, and their blobs, unless denied', async () => {
    const idx = await manifestOf('reg.test/team/multi', 'latest');
    expect(idx.status).toBe(200);
    expect(idx.headers.get('content-type')).toBe(multi.mediaType);
    expect(idx.headers.get('docker-content-digest')).toBe(multi.digest);
    const child = await manifestOf('reg.test/team/multi', arm.digest);
    expect(child.status).toBe(200);
    expect(Buffer.from(await child.arrayBuffer()).equals(arm.manifest)).toBe(true);
    const cfg = await fetch(v2url(`reg.test/team/multi/blobs/${digestOf(arm.config)}`));
    expect(cfg.status).toBe(200);
    expect(Buffer.from(await cfg.arrayBuffer()).equals(arm.config)).toBe(true);
    const deniedLayer = await fetch(v2url(`reg.test/team/multi/blobs/${digestOf(arm.layers[0])}`));
    expect(deniedLayer.status).toBe(403);
    expect((await ociError(deniedLayer)).message).toMatch(/CVE-2099-0001/);
    // The same manifest digest under another repository is not approved by this index.
    const elsewhere = await manifestOf('reg.test/team/app', arm.digest);
    expect(elsewhere.status).toBe(403);
  });

  it('maps names to upstreams by path prefix, ?ns= and the default, and refuses disagreement', async () => {
    const byNs = await manifestOf('team/app', `${v1.digest}?ns=reg.test`);
    expect(byNs.status).toBe(200);
    const byDefault = await manifestOf('team/app', v1.digest);
    expect(byDefault.status).toBe(200);
    const dockerLib = await manifestOf('docker.io/python', v1.digest);
    expect(dockerLib.status).toBe(200);
    const conflict = await manifestOf('reg.test/team/app', `${v1.digest}?ns=docker.io`);
    expect(conflict.status).toBe(400);
    const unknown = await manifestOf('quay.io/team/app', v1.digest);
    expect(unknown.status).toBe(404);
    expect((await ociError(unknown)).code).toBe('NAME_UNKNOWN');
  });

  it('refuses bad names and digests with 400, ungrammatical tags with 404, and writes with 405', async () => {
    const cases: [string, string][] = [
      ['reg.test/Team/App/manifests/v1', 'NAME_INVALID'],
      ['reg.test/team/app/manifests/sha256:abc', 'DIGEST_INVALID'],
      ['reg.test/team/app/manifests/md5:0123456789abcdef0123456789abcdef', 'DIGEST_INVALID'],
      ['reg.test/team/app/blobs/sha512:' + 'a'.repeat(128), 'DIGEST_INVALID'],
      ['reg.test/team%2Fapp/manifests/v1', 'NAME_INVALID'],
    ];
    for (const [p, code] of cases) {
      const res = await fetch(v2url(p), { headers: { accept: ACCEPT } });
      expect(res.status, p).toBe(400);
      expect((await ociError(res)).code, p).toBe(code);
    }
    for (const p of ['/v2/reg.test/../etc/manifests/v1', '/v2/reg.test/team/./app/blobs/sha256:' + 'a'.repeat(64), '/v2//team/manifests/v1']) {
      const res = await rawPath(a.port, p);
      expect(res.status, p).toBe(400);
      expect(JSON.parse(res.body).errors[0].code, p).toBe('NAME_INVALID');
    }
    // A tag that breaks the grammar names no manifest: 404 MANIFEST_UNKNOWN, as the spec and its conformance suite say.
    for (const tag of ['-bad-tag', '.INVALID_MANIFEST_NAME', 'a'.repeat(129)]) {
      for (const method of ['GET', 'HEAD']) {
        const res = await fetch(v2url(`reg.test/team/app/manifests/${tag}`), { method, headers: { accept: ACCEPT } });
        expect(res.status, `${method} ${tag}`).toBe(404);
        if (method === 'GET') expect((await ociError(res)).code, tag).toBe('MANIFEST_UNKNOWN');
      }
    }
    const long = await rawPath(a.port, `/v2/reg.test/${'a/'.repeat(700)}x/manifests/v1`);
    expect(long.status).toBe(414);
    const put = await fetch(v2url(`reg.test/team/app/manifests/v1`), { method: 'PUT', body: '{}' });
    expect(put.status).toBe(405);
    expect((await ociError(put)).code).toBe('UNSUPPORTED');
    const upload = await fetch(v2url(`reg.test/team/app/blobs/uploads/`), { method: 'POST' });
    expect(upload.status).toBe(405);
  });

  it('lists the referrers of an approved manifest and serves them, and nothing for others', async () => {
    // A signature's shape (cosign's legacy simple-signing layer): an image listed as a referrer is not served (breaks-26.test.ts).
    const img = makeImage([Buffer.from('cosign signature payload')]);
    const sigManifest = Buffer.from(
      img.manifest.toString().replace('application/vnd.oci.image.layer.v1.tar', 'application/vnd.dev.cosign.simplesigning.v1+json'),
    );
    const sig = { ...img, manifest: sigManifest, digest: digestOf(sigManifest) };
    reg.push('team/app', sig);
    reg.referrers.set(v1.digest, [sig]);
    const res = await fetch(v2url(`reg.test/team/app/referrers/${v1.digest}`));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.oci.image.index.v1+json');
    const idx = await res.json();
    expect(idx.manifests.map((m: { digest: string }) => m.digest)).toEqual([sig.digest]);
    // The signature is approved through its subject, and its layer through it.
    const m = await manifestOf('reg.test/team/app', sig.digest);
    expect(m.status).toBe(200);
    const layer = await rawGet(v2url(`reg.test/team/app/blobs/${digestOf(sig.layers[0])}`));
    expect(layer.body.equals(sig.layers[0])).toBe(true);
    // Not for a manifest that is not approved.
    const denied = await fetch(v2url(`reg.test/team/app/referrers/${other.digest}`));
    expect(denied.status).toBe(403);
  });

  it('lists only the pinned tags, with n/last paging', async () => {
    reg.tags.set('team/app:extra', other.digest);
    const res = await fetch(v2url('reg.test/team/app/tags/list'));
    expect(await res.json()).toEqual({ name: 'reg.test/team/app', tags: ['v1'] });
    const paged = await fetch(v2url('reg.test/team/multi/tags/list?n=0'));
    expect(await paged.json()).toEqual({ name: 'reg.test/team/multi', tags: [] });
    const denied = await fetch(v2url('reg.test/team/nope/tags/list'));
    expect(denied.status).toBe(403);
  });

  it('shares one upstream fetch among concurrent pulls of a cold blob', async () => {
    await manifestOf('reg.test/team/big', big.digest);
    const layer = big.layers[0];
    reg.throttle = 16 * 1024 * 1024;
    const N = 8;
    try {
      const results = await Promise.all(Array.from({ length: N }, () => rawGet(v2url(`reg.test/team/big/blobs/${digestOf(layer)}`))));
      for (const r of results) {
        expect(r.status).toBe(200);
        expect(r.body.equals(layer)).toBe(true);
      }
    } finally {
      reg.throttle = 0;
    }
    expect(reg.count(`cdn:${digestOf(layer)}`)).toBe(1);
    const recs = await records(a, 'ecosystem=oci&name=reg.test/team/big');
    const caches = recs.filter((r) => r.filename === 'blob').map((r) => r.cache);
    expect(caches.filter((c) => c === 'miss')).toHaveLength(1);
    expect(caches.length).toBe(N);
  });

  it('serves pinned content from cache while the upstream is down', async () => {
    reg.down = true;
    try {
      const m = await manifestOf('reg.test/team/app', 'v1');
      expect(m.status).toBe(200);
      expect(m.headers.get('x-airlock-cache')).toBe('hit');
      const b = await rawGet(v2url(`reg.test/team/app/blobs/${digestOf(v1.layers[0])}`));
      expect(b.status).toBe(200);
      expect(b.body.equals(v1.layers[0])).toBe(true);
      // Not cached: a clear upstream error, not a hang or a crash.
      const cold = await fetch(v2url(`reg.test/team/app/blobs/${digestOf(v1.layers[1])}`));
      expect(cold.status).toBe(502);
    } finally {
      reg.down = false;
    }
  });
});

describe('registry token flow', () => {
  const reg = new FakeRegistry();
  const img: Image = makeImage([randomBytes(100)]);
  beforeAll(async () => {
    await reg.start();
    reg.redirectBlobs = false;
    reg.push('lib/x', img, 'v1');
  });
  afterAll(() => reg.stop());

  it('caches a token until shortly before it expires, then fetches a new one', async () => {
    let now = 1_000_000;
    const http = new UpstreamHttp();
    const client = new RegistryClient({ key: 'reg.test', url: reg.url, blobHosts: [], authHosts: [] }, http, () => now);
    reg.tokenSeconds = 120;
    const r1 = await client.request('lib/x', `manifests/${img.digest}`);
    r1.body.resume();
    expect(r1.status).toBe(200);
    const r2 = await client.request('lib/x', `manifests/${img.digest}`);
    r2.body.resume();
    expect(client.tokenFetches).toBe(1);
    now += 115_000; // within the 10 s renewal margin
    const r3 = await client.request('lib/x', `manifests/${img.digest}`);
    r3.body.resume();
    expect(r3.status).toBe(200);
    expect(client.tokenFetches).toBe(2);
    // A token revoked early upstream: one 401, a new token, the retry succeeds.
    reg.revokeTokens();
    const r4 = await client.request('lib/x', `blobs/${digestOf(img.layers[0])}`);
    expect(r4.status).toBe(200);
    r4.body.resume();
    expect(client.tokenFetches).toBe(3);
    // No expires_in: 60 s by the token spec.
    reg.tokenSeconds = undefined;
    reg.revokeTokens();
    (await client.request('lib/x', `manifests/${img.digest}`)).body.resume();
    expect(client.tokenFetches).toBe(4);
    now += 45_000;
    (await client.request('lib/x', `manifests/${img.digest}`)).body.resume();
    expect(client.tokenFetches).toBe(4);
    now += 10_000;
    (await client.request('lib/x', `manifests/${img.digest}`)).body.resume();
    expect(client.tokenFetches).toBe(5);
    await http.close();
  });

  it('sends configured credentials to the token realm, and refuses a realm on a foreign host', async () => {
    const http = new UpstreamHttp();
    const client = new RegistryClient({ key: 'reg.test', url: reg.url, blobHosts: [], authHosts: [], username: 'svc', password: 's3cret' }, http);
    reg.revokeTokens();
    (await client.request('lib/x', `manifests/${img.digest}`)).body.resume();
    const last = reg.tokenRequests[reg.tokenRequests.length - 1];
    expect(last.authorization).toBe(`Basic ${Buffer.from('svc:s3cret').toString('base64')}`);
    // The same registry reached as "localhost": the realm (127.0.0.1) is another host.
    const foreign = new RegistryClient({ key: 'reg.test', url: reg.url.replace('127.0.0.1', 'localhost'), blobHosts: [], authHosts: [] }, http);
    await expect(foreign.request('lib/x', `manifests/${img.digest}`)).rejects.toThrow(/token realm .* neither the registry's host nor in its auth_hosts/);
    await http.close();
  });
});
