import { readFileSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { records } from '../helpers/http.js';
import { buildImage, haveTool, pushImage, RealRegistry, skopeo, type BuiltImage } from '../helpers/oci-tools.js';

/** Read what skopeo wrote into an OCI layout: the top digest and every blob, re-hashed. */
function readLayout(dir: string): { top: string; blobsOk: boolean; blobCount: number } {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  const top = index.manifests[0].digest as string;
  let blobsOk = true;
  let blobCount = 0;
  const check = (digest: string) => {
    const bytes = readFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)));
    blobCount++;
    if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== digest) blobsOk = false;
    return bytes;
  };
  const walk = (digest: string) => {
    const doc = JSON.parse(check(digest).toString('utf8'));
    if (doc.manifests) for (const m of doc.manifests) walk(m.digest);
    if (doc.config) check(doc.config.digest);
    for (const l of doc.layers ?? []) check(l.digest);
  };
  walk(top);
  return { top, blobsOk, blobCount };
}

describe('real skopeo through Airlock, from a real distribution registry', () => {
  const reg = new RealRegistry();
  let a: TestAirlock;
  let app: BuiltImage;
  let appNext: BuiltImage;
  let multi: BuiltImage;
  let bad: BuiltImage;
  let other: BuiltImage;
  const out = () => mkdtempSync(join(tmpdir(), 'airlock-pull-'));

  beforeAll(async () => {
    for (const tool of ['skopeo', 'docker-registry', 'tar']) {
      if (!haveTool(tool)) throw new Error(`${tool} is not installed: .ci/run installs it with apt-get (see docs/testing.md)`);
    }
    await reg.start();
    app = await buildImage(['amd64'], 'v1');
    appNext = await buildImage(['amd64'], 'v1');
    multi = await buildImage(['amd64', 'arm64'], 'v1');
    bad = await buildImage(['amd64'], 'v1', 256 * 1024);
    other = await buildImage(['amd64'], 'v1');
    await pushImage(app, reg.port, 'team/app', 'v1');
    await pushImage(multi, reg.port, 'team/multi', '2.0');
    await pushImage(bad, reg.port, 'team/bad', 'v1');
    await pushImage(other, reg.port, 'team/other', 'latest');
    a = await startAirlock(`
oci:
  default_registry: registry.test
  registries:
    registry.test:
      url: http://127.0.0.1:${reg.port}
policy:
  oci:
    allow:
      - repository: registry.test/team/app
        tags: { v1: "${app.digest}" }
      - repository: registry.test/team/multi
        tags: { "2.0": "${multi.digest}" }
      - repository: registry.test/team/bad
        digests: ["${bad.digest}"]
`);
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  const via = (ref: string) => `docker://127.0.0.1:${a.port}/registry.test/${ref}`;

  it('pulls an allowed image by digest; the bytes match the upstream digests', async () => {
    const dir = out();
    const r = await skopeo(['copy', '--preserve-digests', '--src-tls-verify=false', via(`team/app@${app.digest}`), `oci:${dir}:pulled`]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const got = readLayout(dir);
    expect(got.top).toBe(app.digest);
    expect(got.blobsOk).toBe(true);
    expect(got.blobCount).toBe(3);
  });

  it('pulls by pinned tag, and keeps serving the pinned digest after the upstream tag moves', async () => {
    const first = out();
    expect((await skopeo(['copy', '--preserve-digests', '--src-tls-verify=false', via('team/app:v1'), `oci:${first}:pulled`])).code).toBe(0);
    expect(readLayout(first).top).toBe(app.digest);
    // Someone re-points team/app:v1 upstream.
    await pushImage(appNext, reg.port, 'team/app', 'v1');
    const direct = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://127.0.0.1:${reg.port}/team/app:v1`]);
    expect(createHash('sha256').update(direct.stdout).digest('hex')).toBe(appNext.digest.slice(7));
    // The first pull's blobs are committed before the second asks (a slow disk would make it a join, not a hit).
    await a.airlock.cache.idle();
    const second = out();
    const r = await skopeo(['copy', '--preserve-digests', '--src-tls-verify=false', via('team/app:v1'), `oci:${second}:pulled`]);
    expect(r.code).toBe(0);
    expect(readLayout(second).top).toBe(app.digest);
  });

  it('pulls every platform of a multi-arch image by pinned tag', async () => {
    const dir = out();
    const r = await skopeo(['copy', '--all', '--preserve-digests', '--src-tls-verify=false', via('team/multi:2.0'), `oci:${dir}:pulled`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const got = readLayout(dir);
    expect(got.top).toBe(multi.digest);
    expect(got.blobsOk).toBe(true);
    expect(got.blobCount).toBe(1 + 2 * 3);
  });

  it('refuses an image that is not on the allowlist, and says why', async () => {
    const r = await skopeo(['copy', '--src-tls-verify=false', via('team/other:latest'), `oci:${out()}:pulled`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/registry.test\/team\/other is not on the OCI allowlist/);
    const byDigest = await skopeo(['copy', '--src-tls-verify=false', via(`team/app@${other.digest}`), `oci:${out()}:pulled`]);
    expect(byDigest.code).not.toBe(0);
    expect(byDigest.stderr).toMatch(/is not pinned in policy/);
  });

  it('fails the pull of a tampered blob and caches nothing bad', async () => {
    const layer = bad.blobs[1];
    const path = reg.blobPath(layer);
    expect(existsSync(path)).toBe(true);
    const bytes = readFileSync(path);
    bytes[bytes.length - 100] ^= 0xff;
    writeFileSync(path, bytes);
    const dir = out();
    const r = await skopeo(['copy', '--src-tls-verify=false', via(`team/bad@${bad.digest}`), `oci:${dir}:pulled`]);
    expect(r.code).not.toBe(0);
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(layer.slice(7))).toBeUndefined();
    const refused = await records(a, 'ecosystem=oci&name=registry.test/team/bad&decision=deny');
    expect(refused.some((x) => x.sha256 === layer.slice(7) && /expected sha256/.test(x.reason))).toBe(true);
  });

  it('records every pull with client, digest and cache state', async () => {
    const recs = await records(a, 'ecosystem=oci&name=registry.test/team/app&decision=allow');
    expect(recs.some((r) => r.filename === 'manifest' && r.version === 'v1' && r.sha256 === app.digest.slice(7))).toBe(true);
    expect(recs.some((r) => r.filename === 'blob' && r.cache === 'hit')).toBe(true);
    expect(recs.every((r) => r.client === '127.0.0.1')).toBe(true);
  });
});
