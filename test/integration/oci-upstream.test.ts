import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { HashPool } from '../../src/core/hasher.js';
import { parseImageRef, type ImageRef } from '../../src/names/oci.js';
import { RegistryClient } from '../../src/oci/registry-client.js';
import { OciUpstream } from '../../src/oci/upstream.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { FakeRegistry, digestOf, makeImage, makeIndex } from '../helpers/fake-registry.js';

/**
 * The one OCI upstream (src/oci/upstream.ts) the /v2 routes, `pin oci` and `image check` share,
 * against a local registry with the Bearer token flow and a blob CDN on another port.
 */
describe('the OCI upstream service', () => {
  const reg = new FakeRegistry();
  const hashes = new HashPool(1);
  const http = new UpstreamHttp({ headersTimeoutMs: 10_000 });
  let meta: SqliteMetaStore;
  let cache: BlobCache;
  let up: OciUpstream;
  let deps: ConstructorParameters<typeof OciUpstream>[0];
  const app = makeImage([randomBytes(20_000), randomBytes(3000)]);
  const evil = makeImage([randomBytes(100)]);
  const badBlob = makeImage([randomBytes(50_000)]);
  const amd = makeImage([randomBytes(1000)], 'amd64');
  const arm = makeImage([randomBytes(1000)], 'arm64');
  const multi = makeIndex([
    { img: amd, arch: 'amd64' },
    { img: arm, arch: 'arm64' },
  ]);
  const ref = (s: string): ImageRef => {
    const r = parseImageRef(s, 'reg.test');
    if (!r.ok) throw new Error(r.reason);
    return r.ref;
  };

  beforeAll(async () => {
    await reg.start();
    reg.push('team/app', app, 'v1');
    reg.push('team/evil', evil, 'latest');
    reg.tamper.add(evil.digest);
    reg.push('team/badblob', badBlob);
    reg.tamper.add(digestOf(badBlob.layers[0]));
    reg.pushIndex('team/multi', multi, [amd, arm], 'latest');
    const store = await FsBlobStore.create(mkdtempSync(join(tmpdir(), 'airlock-upstream-')));
    meta = new SqliteMetaStore(':memory:');
    cache = new BlobCache(store, meta, hashes);
    const client = new RegistryClient({ key: 'reg.test', url: reg.url, blobHosts: [`127.0.0.1:${reg.cdnPort}`], authHosts: [] }, http);
    deps = { registries: new Map([['reg.test', client]]), defaultRegistry: 'reg.test', cache, meta, maxManifestBytes: 4 * 1024 * 1024 };
    up = new OciUpstream(deps);
  });

  afterAll(async () => {
    await cache.shutdown();
    await hashes.close();
    await http.close();
    await reg.stop();
  });

  it('fetches a manifest once for concurrent callers, verifies it and keeps it with its links', async () => {
    const t = up.targetOf(ref(`team/app@${app.digest}`));
    expect(t).toMatchObject({ registry: 'reg.test', upstreamName: 'team/app', repo: 'reg.test/team/app' });
    const got = await Promise.all(Array.from({ length: 8 }, () => up.manifest(t, app.digest)));
    expect(reg.count(`manifest:team/app:${app.digest}`)).toBe(1);
    expect(got.map((m) => m.cache).sort()).toEqual(['join', 'join', 'join', 'join', 'join', 'join', 'join', 'miss']);
    for (const m of got) expect(m).toMatchObject({ digest: app.digest, mediaType: app.mediaType, bytes: app.manifest });
    expect((await up.manifest(t, app.digest)).cache).toBe('hit');
    // Another process (a command beside the server) finds it in the shared store: nothing upstream.
    const other = new OciUpstream(deps);
    expect(await other.manifest(t, app.digest)).toMatchObject({ cache: 'hit', bytes: app.manifest });
    expect(reg.count(`manifest:team/app:${app.digest}`)).toBe(1);
    // Fresh (pin oci): the registry is asked although the store holds it.
    expect((await other.resolve(t, { digest: app.digest }, { fresh: true })).cache).toBe('miss');
    expect(reg.count(`manifest:team/app:${app.digest}`)).toBe(2);
    // Its blobs are linked to it, so they are approved through it.
    expect((await meta.getOciParents('reg.test/team/app', digestOf(app.layers[0]))).map((p) => p.parent)).toEqual([app.digest]);
  });

  it('resolves a tag once for concurrent callers, and asks again later (tags move)', async () => {
    const t = up.targetOf(ref('team/app:v1'));
    const got = await Promise.all(Array.from({ length: 5 }, () => up.resolveTag(t, 'v1')));
    expect(reg.count('manifest:team/app:v1')).toBe(1);
    expect(new Set(got.map((m) => m.digest))).toEqual(new Set([app.digest]));
    reg.push('team/app', amd, 'v1');
    expect((await up.resolve(t, { tag: 'v1' })).digest).toBe(amd.digest);
    expect(reg.count('manifest:team/app:v1')).toBe(2);
    reg.tags.set('team/app:v1', app.digest);
  });

  it('refuses a manifest that does not match the digest asked for, its declared size or the digest claimed for its tag; nothing is cached', async () => {
    const t = up.targetOf(ref('team/evil:latest'));
    const before = await meta.blobTotals();
    await expect(up.manifest(t, evil.digest)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH', message: expect.stringContaining('nothing was cached') });
    // A refusal is not remembered: the next request asks again (and is refused again).
    await expect(up.manifest(t, evil.digest)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(reg.count(`manifest:team/evil:${evil.digest}`)).toBe(2);
    await expect(up.resolveTag(t, 'latest')).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining(`is claimed to be ${evil.digest} but has sha256:`),
    });
    expect(await meta.getOciManifest(evil.digest)).toBeNull();
    expect(await meta.blobTotals()).toEqual(before);
    // The right bytes at a size other than the one an index declares for them.
    const m = up.targetOf(ref('team/multi:latest'));
    await expect(up.manifest(m, arm.digest, arm.manifest.length + 1)).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining('where the index declares'),
    });
    await expect(up.manifest(up.targetOf(ref('team/app:nope')), `sha256:${'e'.repeat(64)}`)).rejects.toMatchObject({
      code: 'MANIFEST_UNKNOWN',
      status: 404,
    });
  });

  it('lists the platform manifests of an index, each fetched and verified', async () => {
    const t = up.targetOf(ref('team/multi:latest'));
    const top = await up.resolveTag(t, 'latest');
    expect(top.digest).toBe(multi.digest);
    const platforms = await up.platforms(t, top);
    expect(platforms.map((p) => [p.platform, p.digest, p.bytes.equals(p.digest === amd.digest ? amd.manifest : arm.manifest)])).toEqual([
      ['linux/amd64', amd.digest, true],
      ['linux/arm64', arm.digest, true],
    ]);
    // A lone manifest is its own platform.
    const app1 = await up.manifest(up.targetOf(ref('team/app:v1')), app.digest);
    expect((await up.platforms(t, app1)).map((p) => p.digest)).toEqual([app.digest]);
  });

  it('maps /v2/ names and references to configured registries only', () => {
    expect(() => up.targetOf(ref('ghcr.io/x/y:1'))).toThrow(/registry ghcr\.io is not configured in oci\.registries \(configured: reg\.test\)/);
    expect(up.target('team/app')).toMatchObject({ registry: 'reg.test', repo: 'reg.test/team/app' });
    expect(up.target('reg.test/team/app')).toMatchObject({ registry: 'reg.test', repo: 'reg.test/team/app' });
    expect(() => up.target('team/app', 'docker.io')).toThrow(/docker\.io \(from \?ns=\) is not configured/);
    expect(() => up.target('Team/App')).toThrow(/not a valid repository name/);
  });

  it('BlobCache.ensure fills a blob nobody reads, verified, once; a tampered one is not stored', async () => {
    const t = up.targetOf(ref('team/app:v1'));
    const layer = app.layers[0];
    const d = digestOf(layer);
    const spec = { sha256: d.slice(7), size: layer.length, open: (signal: AbortSignal) => up.openBlob(t, d, signal) };
    const both = await Promise.all([cache.ensure(spec), cache.ensure(spec)]);
    expect(both.map((r) => r.cache).sort()).toEqual(['join', 'miss']);
    expect(await Promise.all(both.map((r) => r.stored))).toEqual([true, true]);
    expect(await cache.cachedSize(d.slice(7))).toBe(layer.length);
    const hit = await cache.ensure(spec);
    expect(hit.cache).toBe('hit');
    expect(await hit.stored).toBe(true);
    expect(reg.count(`blob:${d}`)).toBe(1);
    const bad = digestOf(badBlob.layers[0]);
    const tb = up.targetOf(ref('team/badblob@' + badBlob.digest));
    await expect(cache.ensure({ sha256: bad.slice(7), open: (signal) => up.openBlob(tb, bad, signal) })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await cache.cachedSize(bad.slice(7))).toBeUndefined();
  });
});
