import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeRegistry, digestOf, makeImage, makeIndex } from '../helpers/fake-registry.js';
import { rawGet, records } from '../helpers/http.js';
import { debianBase, layerOf, rootfs } from '../helpers/layers.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

/**
 * Issue 30: a blob of an approved image is served whether or not a client pulled the image's
 * manifest through Airlock before (a build cache, `crane blob`, a pull resumed through another
 * replica, the OCI conformance suite all ask for blobs by digest). Airlock fetches and verifies the
 * repository's approved manifests itself, once, and every gate still applies.
 */
describe('blobs of approved images no client pulled yet (fake registry)', () => {
  const reg = new FakeRegistry();
  let a: TestAirlock;
  let b: TestAirlock;
  const img = makeImage([randomBytes(120_000), randomBytes(2000)]);
  const amd = makeImage([randomBytes(3000)], 'amd64');
  const arm = makeImage([randomBytes(3000)], 'arm64');
  const multi = makeIndex([
    { img: amd, arch: 'amd64' },
    { img: arm, arch: 'arm64' },
  ]);
  const stray = makeImage([randomBytes(1000)]);
  // Debian packages and no Debian advisories imported: the image cannot be fully judged, which the gate refuses by default.
  const deb = makeImage([layerOf(debianBase(), 'none'), layerOf(rootfs({ 'etc/motd': 'hello\n' }), 'none')]);
  // No packages at all: nothing to refuse, the gate lets it through.
  const plain = makeImage([layerOf(rootfs({ 'etc/motd': 'no packages here\n' }), 'none')]);
  const stale = `sha256:${'d'.repeat(64)}`;
  const later = makeImage([randomBytes(1500)]);

  beforeAll(async () => {
    await reg.start();
    reg.push('team/app', img, 'v1');
    reg.push('team/app', stray);
    reg.pushIndex('team/multi', multi, [amd, arm], 'latest');
    reg.push('team/deb', deb, 'v1');
    reg.push('team/plain', plain, 'v1');
    reg.push('team/partial', stray);
    reg.push('team/app404', img, 'v1');
    reg.push('team/later', later, 'v1');
    const registries = `oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
`;
    a = await startAirlock(`${registries}policy:
  oci:
    allow:
      - repository: reg.test/team/app
        tags: { v1: "${img.digest}" }
      - repository: reg.test/team/multi
        tags: { latest: "${multi.digest}" }
      - repository: reg.test/team/partial
        digests: ["${stale}", "${stray.digest}"]
    deny:
      - repository: reg.test/team/multi
        digests: ["${digestOf(arm.layers[0])}"]
        reason: CVE-2099-0001 in this layer
`);
    b = await startAirlock(`${registries}  unknown_blob_status: 404
policy:
  advisories:
    refuse: critical
  oci:
    allow:
      - repository: reg.test/team/app404
        tags: { v1: "${img.digest}" }
      - repository: reg.test/team/deb
        tags: { v1: "${deb.digest}" }
      - repository: reg.test/team/plain
        tags: { v1: "${plain.digest}" }
`);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await reg.stop();
  });

  const blob = (x: TestAirlock, repo: string, digest: string, init: RequestInit = {}) => fetch(`${x.url}/v2/${repo}/blobs/${digest}`, init);
  const manifests = (repo: string, ref: string) => reg.count(`manifest:${repo}:${ref}`);

  it('serves HEAD, GET and a Range of blobs of a pinned image on a fresh start, fetching its manifest upstream once for concurrent requests', async () => {
    const [cfg, layer0, layer1] = [digestOf(img.config), digestOf(img.layers[0]), digestOf(img.layers[1])];
    const [head, getCfg, getLayer, range, head2, getLayer1] = await Promise.all([
      blob(a, 'team/app', cfg, { method: 'HEAD' }),
      rawGet(`${a.url}/v2/team/app/blobs/${cfg}`),
      rawGet(`${a.url}/v2/team/app/blobs/${layer0}`),
      rawGet(`${a.url}/v2/team/app/blobs/${layer0}`, { range: 'bytes=100-199' }),
      blob(a, 'team/app', layer1, { method: 'HEAD' }),
      rawGet(`${a.url}/v2/team/app/blobs/${layer1}`),
    ]);
    expect(head.status).toBe(200);
    expect(head.headers.get('docker-content-digest')).toBe(cfg);
    expect(head.headers.get('content-length')).toBe(String(img.config.length));
    expect(head2.status).toBe(200);
    expect(head2.headers.get('content-length')).toBe(String(img.layers[1].length));
    expect(getCfg.status).toBe(200);
    expect(getCfg.body.equals(img.config)).toBe(true);
    expect(getLayer.status).toBe(200);
    expect(getLayer.body.equals(img.layers[0])).toBe(true);
    expect([200, 206]).toContain(range.status);
    if (range.status === 206) expect(range.body.equals(img.layers[0].subarray(100, 200))).toBe(true);
    expect(getLayer1.body.equals(img.layers[1])).toBe(true);
    // Nobody asked for the manifest: Airlock fetched it (by its pinned digest) exactly once.
    expect(manifests('team/app', img.digest)).toBe(1);
    expect(manifests('team/app', 'v1')).toBe(0);
    const rows = (await records(a, 'ecosystem=oci')).filter((r) => r.name === 'reg.test/team/app' && r.filename === 'blob');
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(rows.every((r) => r.decision === 'allow')).toBe(true);
  });

  it('an index: a platform manifest by digest and its blobs before anyone pulled the index; a denied layer stays refused', async () => {
    const m = await fetch(`${a.url}/v2/team/multi/manifests/${amd.digest}`, { headers: { accept: ACCEPT } });
    expect(m.status).toBe(200);
    expect(Buffer.from(await m.arrayBuffer()).equals(amd.manifest)).toBe(true);
    const cfg = await rawGet(`${a.url}/v2/team/multi/blobs/${digestOf(arm.config)}`);
    expect(cfg.status).toBe(200);
    expect(cfg.body.equals(arm.config)).toBe(true);
    const denied = await blob(a, 'team/multi', digestOf(arm.layers[0]));
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { errors: { message: string }[] }).errors[0].message).toMatch(/CVE-2099-0001/);
    expect(manifests('team/multi', multi.digest)).toBe(1);
    expect(manifests('team/multi', amd.digest) + manifests('team/multi', arm.digest)).toBe(2);
  });

  it('a blob no approved manifest references: 403 DENIED (default), on record, and the upstream is not asked again', async () => {
    const before = reg.count(`manifest:team/app:${img.digest}`) + reg.count(`manifest:team/app:${stray.digest}`);
    for (let i = 0; i < 3; i++) {
      const res = await blob(a, 'team/app', digestOf(stray.layers[0]));
      expect(res.status).toBe(403);
      const e = ((await res.json()) as { errors: { code: string; message: string }[] }).errors[0];
      expect(e.code).toBe('DENIED');
      expect(e.message).toMatch(/is not referenced by any approved manifest of reg.test\/team\/app;/);
    }
    expect(reg.count(`manifest:team/app:${img.digest}`) + reg.count(`manifest:team/app:${stray.digest}`)).toBe(before);
    const rows = await records(a, 'ecosystem=oci&decision=deny');
    expect(rows.some((r) => r.code === 'not_referenced' && r.sha256 === digestOf(stray.layers[0]).slice(7))).toBe(true);
  });

  it('a pinned manifest the upstream does not have does not stop the others from being linked', async () => {
    const res = await rawGet(`${a.url}/v2/team/partial/blobs/${digestOf(stray.layers[0])}`);
    expect(res.status).toBe(200);
    expect(res.body.equals(stray.layers[0])).toBe(true);
    const again = reg.count(`manifest:team/partial:${stale}`);
    expect(again).toBe(1);
    // Within the retry delay, an unknown blob does not send the missing pin upstream again.
    expect((await blob(a, 'team/partial', `sha256:${'0'.repeat(64)}`)).status).toBe(403);
    expect(reg.count(`manifest:team/partial:${stale}`)).toBe(again);
  });

  it('after a reload: the blobs of a newly pinned image are served at once, and refused again once it is unpinned', async () => {
    const layer = digestOf(later.layers[0]);
    expect((await blob(a, 'team/later', layer)).status).toBe(403);
    const before = readFileSync(a.configFile, 'utf8');
    const pinned = before.replace('    deny:\n', `      - repository: reg.test/team/later\n        digests: ["${later.digest}"]\n    deny:\n`);
    writeFileSync(a.configFile, pinned);
    expect(await a.airlock.reloadPolicy()).toBe(true);
    const res = await rawGet(`${a.url}/v2/team/later/blobs/${layer}`);
    expect(res.status).toBe(200);
    expect(res.body.equals(later.layers[0])).toBe(true);
    writeFileSync(a.configFile, before);
    expect(await a.airlock.reloadPolicy()).toBe(true);
    expect((await blob(a, 'team/later', layer)).status).toBe(403);
  });

  it('oci.unknown_blob_status: 404 answers BLOB_UNKNOWN (still on record as not_referenced); known blobs are served as before', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await blob(b, 'team/app404', digestOf(stray.layers[0]), { method });
      expect(res.status, method).toBe(404);
      if (method === 'GET') expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('BLOB_UNKNOWN');
    }
    const rows = await records(b, 'ecosystem=oci&decision=deny');
    expect(rows.some((r) => r.code === 'not_referenced' && r.sha256 === digestOf(stray.layers[0]).slice(7))).toBe(true);
    const ok = await rawGet(`${b.url}/v2/team/app404/blobs/${digestOf(img.config)}`);
    expect(ok.status).toBe(200);
    // Outside an allowed repository nothing changes: not on the allowlist is 403.
    expect((await blob(b, 'team/nope', digestOf(stray.layers[0]))).status).toBe(403);
  });

  it('the image gate still applies to blobs: a layer of an image it refuses is refused, pulled first or not; a passing image is served', async () => {
    const layer = digestOf(deb.layers[1]);
    const first = await blob(b, 'team/deb', layer);
    expect(first.status).toBe(403);
    expect(((await first.json()) as { errors: { message: string }[] }).errors[0].message).toMatch(/cannot be fully judged/);
    const m = await fetch(`${b.url}/v2/team/deb/manifests/v1`, { headers: { accept: ACCEPT } });
    expect(m.status).toBe(403);
    // After the (refused) manifest pull linked it, its blobs are still refused, on every path.
    for (const d of [layer, digestOf(deb.layers[0]), digestOf(deb.config)]) {
      expect((await blob(b, 'team/deb', d)).status, d).toBe(403);
      expect((await blob(b, 'team/deb', d, { method: 'HEAD' })).status, d).toBe(403);
      expect((await blob(b, 'team/deb', d, { headers: { range: 'bytes=0-9' } })).status, d).toBe(403);
    }
    const rows = (await records(b, 'ecosystem=oci')).filter((r) => r.name === 'reg.test/team/deb' && r.filename === 'blob');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.decision === 'deny' && r.code === 'unjudged')).toBe(true);
    const good = await rawGet(`${b.url}/v2/team/plain/blobs/${digestOf(plain.layers[0])}`);
    expect(good.status).toBe(200);
    expect(good.body.equals(plain.layers[0])).toBe(true);
  });
});
