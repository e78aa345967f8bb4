import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { records } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { debianBase, dpkgQuery, FIXTURES, layerBlob, rootfs } from '../helpers/layers.js';
import { buildLayeredImage, haveTool, pushImage, RealRegistry, skopeo, type BuiltImage } from '../helpers/oci-tools.js';

/**
 * The image gate end to end: images whose layers carry real package databases (this machine's
 * dpkg database, pip-installed dists, an apk database), pushed to a real distribution registry,
 * pulled through Airlock by the real skopeo, judged against OSV records in the real schema.
 */
const SITE = 'usr/local/lib/python3.11/site-packages';
const CRIT = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H';
/** Airlock's OCI configuration with the test's real registry as registry.test (the default). */
const registryYaml = (port: number) => `oci:\n  default_registry: registry.test\n  registries:\n    registry.test:\n      url: http://127.0.0.1:${port}\n`;

describe('vulnerable base images stop at the door (real skopeo, real registry)', () => {
  const reg = new RealRegistry();
  // Alerts (issue 28): a webhook receiver on loopback, told when a new advisory affects an image pulled earlier.
  const rx = new Receiver();
  let a: TestAirlock;
  let deb: BuiltImage;
  let alpine: BuiltImage;
  let multi: BuiltImage;
  let excepted: BuiltImage;
  let osvDir: string;
  let sslVersion: string;
  const out = () => mkdtempSync(join(tmpdir(), 'airlock-pull-'));
  const via = (ref: string) => `docker://127.0.0.1:${a.port}/registry.test/${ref}`;
  const pull = (ref: string, extra: string[] = []) => skopeo(['copy', '--src-tls-verify=false', ...extra, via(ref), `oci:${out()}:x`]);

  beforeAll(async () => {
    for (const tool of ['skopeo', 'docker-registry', 'tar', 'zstd', 'dpkg-query']) {
      if (!haveTool(tool)) throw new Error(`${tool} is not installed: .ci/run installs it with apt-get (see docs/testing.md)`);
    }
    sslVersion = dpkgQuery().get('libssl3')?.sourceVersion ?? '';
    expect(sslVersion).not.toBe('');
    await Promise.all([reg.start(), rx.start()]);
    process.env.AIRLOCK_TEST_HOOK_SECRET = 'skopeo-images-alerts';
    // A Debian image: this machine's dpkg database, then a layer of pip-installed dists (zstd).
    const debLayers = [layerBlob(debianBase()), layerBlob(rootfs({ [SITE]: { copyDir: join(FIXTURES, 'python/site-packages') } }), 'zstd')];
    const alpineLayers = [
      layerBlob(
        rootfs({
          'etc/os-release': readFileSync(join(FIXTURES, 'alpine/os-release')),
          'lib/apk/db/installed': readFileSync(join(FIXTURES, 'alpine/installed')),
        }),
      ),
    ];
    deb = buildLayeredImage([{ arch: 'amd64', layers: debLayers }]);
    excepted = buildLayeredImage([{ arch: 'amd64', layers: [...debLayers, layerBlob(rootfs({ 'etc/motd': 'excepted\n' }))] }]);
    alpine = buildLayeredImage([{ arch: 'amd64', layers: alpineLayers }]);
    multi = buildLayeredImage([
      { arch: 'amd64', layers: debLayers },
      { arch: 'arm64', layers: alpineLayers },
    ]);
    await pushImage(deb, reg.port, 'team/deb', 'v1');
    await pushImage(excepted, reg.port, 'team/excepted', 'v1');
    await pushImage(alpine, reg.port, 'team/alpine', 'v1');
    await pushImage(multi, reg.port, 'team/multi', 'v1');

    // OSV records, as osv.dev exports them: one affecting the installed OpenSSL (fixed just above
    // it), one fixed below what is installed, one withdrawn, and Alpine records fixed below.
    osvDir = mkdtempSync(join(tmpdir(), 'airlock-osv-'));
    const put = (rec: { id: string; [k: string]: unknown }) => writeFileSync(join(osvDir, `${rec.id}.json`), JSON.stringify(rec));
    const debRange = (name: string, fixed: string) => [
      { package: { ecosystem: 'Debian:12', name }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed }] }] },
    ];
    put({
      id: 'DEBIAN-CVE-2099-1001',
      upstream: ['CVE-2099-1001'],
      modified: '2026-11-20T00:00:00Z',
      summary: 'OpenSSL remote code execution',
      severity: [{ type: 'CVSS_V3', score: CRIT }],
      affected: debRange('openssl', `${sslVersion}+airlock1`),
    });
    put({
      id: 'DEBIAN-CVE-2099-1002',
      upstream: ['CVE-2099-1002'],
      modified: '2026-11-20T00:00:00Z',
      severity: [{ type: 'CVSS_V3', score: CRIT }],
      affected: debRange('openssl', '1.0.0-1'),
    });
    put({
      id: 'DEBIAN-CVE-2099-1003',
      upstream: ['CVE-2099-1003'],
      modified: '2026-11-20T00:00:00Z',
      withdrawn: '2026-11-21T00:00:00Z',
      severity: [{ type: 'CVSS_V3', score: CRIT }],
      affected: debRange('zlib', '9:9'),
    });
    put({
      id: 'ALPINE-CVE-2099-2001',
      upstream: ['CVE-2099-2001'],
      modified: '2026-11-20T00:00:00Z',
      severity: [{ type: 'CVSS_V3', score: CRIT }],
      affected: [
        { package: { ecosystem: 'Alpine:v3.20', name: 'openssl' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '3.1.0-r0' }] }] },
      ],
    });

    a = await startAirlock(`${registryYaml(reg.port)}notify:
  webhooks:
    - { name: sec, url: "${rx.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }
  poll_seconds: 0.1
policy:
  advisories:
    refuse: critical
    exceptions:
      - id: CVE-2099-1001
        repository: registry.test/team/excepted
        reason: OpenSSL is not used by this image's service; reviewed in SEC-1234
        expires: 2099-12-31
  oci:
    allow:
      - repository: registry.test/team/deb
        tags: { v1: "${deb.digest}" }
      - repository: registry.test/team/excepted
        tags: { v1: "${excepted.digest}" }
      - repository: registry.test/team/alpine
        tags: { v1: "${alpine.digest}" }
      - repository: registry.test/team/multi
        tags: { v1: "${multi.digest}" }
`);
    const imp = await airlockCli(['advisories', 'import', osvDir, '--config', a.configFile]);
    expect(imp.stdout).toContain('read 4 OSV records');
    await a.airlock.reloadAdvisories();
  }, 180_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
    await rx.stop();
  });

  it('refuses an approved image carrying a critical advisory at its manifest, on the first pull, naming the advisory and fix', async () => {
    const r = await pull('team/deb:v1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/denied/i);
    expect(r.stderr).toContain('DEBIAN-CVE-2099-1001 (CVE-2099-1001) CRITICAL 9.8 in openssl');
    expect(r.stderr).toContain(`fixed in ${sslVersion}+airlock1`);
    expect(r.stderr).not.toContain('DEBIAN-CVE-2099-1002');
    // And on every later pull, from the stored inventory.
    const again = await pull('team/deb:v1');
    expect(again.code).not.toBe(0);
    const rows = (await records(a)).filter((x) => x.name === 'registry.test/team/deb' && x.filename === 'manifest');
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const row of rows) {
      expect(row.decision).toBe('deny');
      expect(row.reason).toContain('DEBIAN-CVE-2099-1001');
      const scan = JSON.parse(row.scan!);
      expect(scan.inventory.ecosystem).toBe('Debian:12');
      expect(scan.inventory.packages).toBeGreaterThan(50);
    }
    // Nothing of the image was served to the client: no blob rows at all.
    expect((await records(a)).filter((x) => x.name === 'registry.test/team/deb' && x.filename === 'blob')).toEqual([]);
  }, 120_000);

  it('serves the same packages where a reviewed exception covers the advisory', async () => {
    const r = await pull('team/excepted:v1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const row = (await records(a)).find((x) => x.name === 'registry.test/team/excepted' && x.filename === 'manifest')!;
    expect(row.decision).toBe('allow');
    expect(JSON.parse(row.scan!).findings.find((f: { id: string }) => f.id === 'DEBIAN-CVE-2099-1001').excepted).toMatch(/SEC-1234/);
  }, 120_000);

  it('multi-arch: only the affected platform is refused', async () => {
    const arm = await pull('team/multi:v1', ['--override-arch', 'arm64']);
    expect(arm.stderr).toBe('');
    expect(arm.code).toBe(0);
    const amd = await pull('team/multi:v1', ['--override-arch', 'amd64']);
    expect(amd.code).not.toBe(0);
    expect(amd.stderr).toContain('DEBIAN-CVE-2099-1001');
  }, 120_000);

  it('a clean image pulls as before; after an import of a new advisory, the next pull is refused', async () => {
    const first = await pull('team/alpine:v1');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    writeFileSync(
      join(osvDir, 'ALPINE-CVE-2099-2002.json'),
      JSON.stringify({
        id: 'ALPINE-CVE-2099-2002',
        upstream: ['CVE-2099-2002'],
        modified: '2026-11-28T00:00:00Z',
        severity: [{ type: 'CVSS_V3', score: CRIT }],
        affected: [
          { package: { ecosystem: 'Alpine:v3.20', name: 'openssl' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '3.3.1-r0' }] }] },
        ],
      }),
    );
    const imp = await airlockCli(['advisories', 'import', osvDir, '--config', a.configFile]);
    expect(imp.code).toBe(0);
    await a.airlock.reloadAdvisories();
    const next = await pull('team/alpine:v1');
    expect(next.code).not.toBe(0);
    expect(next.stderr).toContain('ALPINE-CVE-2099-2002 (CVE-2099-2002) CRITICAL 9.8 in openssl (libcrypto3 3.3.0-r2), fixed in 3.3.1-r0');
    // Whoever pulled the image before is told, once: one alert for the image skopeo pulled, naming the client.
    await rx.until(() => rx.delivered('/hook').some((r) => JSON.parse(r.body).artefact.key === `oci:${alpine.digest}`));
    await a.airlock.alerting!.idle();
    const docs = rx.delivered('/hook').map((r) => JSON.parse(r.body));
    const mine = docs.filter((d) => d.advisory.id === 'ALPINE-CVE-2099-2002' && d.artefact.key === `oci:${alpine.digest}`);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ package: { fixed: '3.3.1-r0' }, artefact: { kind: 'oci', repositories: ['registry.test/team/alpine'] } });
    expect(mine[0].clients.map((c: { client: string }) => c.client)).toEqual(['127.0.0.1']);
    // Every alert is for another artefact (no repeats), and none for the advisories imported before anything was pulled.
    expect(new Set(docs.map((d) => `${d.advisory.id} ${d.artefact.key}`)).size).toBe(docs.length);
    expect(docs.every((d) => d.advisory.id === 'ALPINE-CVE-2099-2002')).toBe(true);
  }, 120_000);

  it('answers "which images carry it, and who pulled them" (airlock affected), and nests image packages in the SBOM', async () => {
    await records(a);
    const r = await airlockCli(['affected', 'CVE-2099-1001', '--config', a.configFile, '--json']);
    expect(r.stderr).toBe('');
    const rep = JSON.parse(r.stdout);
    expect(rep.advisory.id).toBe('DEBIAN-CVE-2099-1001');
    expect(rep.advisory.packages).toEqual(['Debian:12 openssl']);
    const byDigest = new Map(rep.images.map((i: { digest: string }) => [i.digest, i]));
    // The Debian platform manifest is shared by three repositories; the Alpine image is not affected.
    const img = byDigest.get(deb.digest) as { repositories: string[]; tags: string[]; packages: { name: string; source: string }[] };
    expect(img.repositories).toEqual(expect.arrayContaining(['registry.test/team/deb', 'registry.test/team/multi']));
    expect(img.tags).toEqual(expect.arrayContaining(['registry.test/team/deb:v1', 'registry.test/team/multi:v1']));
    expect(img.packages.find((p) => p.name === 'libssl3')!.source).toBe('openssl');
    expect(byDigest.has(alpine.digest)).toBe(false);
    expect(byDigest.has(excepted.manifests[0])).toBe(true);
    // Every pull of them: the refusals of team/deb, and the served pulls of the excepted image.
    const pulls = rep.pulls.map((p: { name: string; decision: string }) => `${p.name}:${p.decision}`);
    expect(pulls).toContain('registry.test/team/deb:deny');
    expect(pulls).toContain('registry.test/team/excepted:allow');
    const text = await airlockCli(['affected', 'CVE-2099-1001', '--config', a.configFile]);
    // Images are listed by digest, and the fixtures' digests differ from run to run: any position.
    expect(text.stdout).toMatch(/images? contain an affected package:\n(  sha256:[0-9a-f]{64} \(.*\n)*  sha256:[0-9a-f]{64} \(registry.test\/team\/deb:v1/);

    const sbom = JSON.parse((await airlockCli(['sbom', '--config', a.configFile])).stdout);
    const image = sbom.components.find((c: { name: string }) => c.name === 'registry.test/team/excepted (manifest)');
    expect(image.type).toBe('container');
    const nested = image.components as { type: string; name: string; purl?: string; version?: string }[];
    expect(nested.find((c) => c.type === 'operating-system')).toMatchObject({ name: 'debian', version: '12' });
    const ssl = nested.find((c) => c.name === 'libssl3')!;
    expect(ssl.purl).toBe(`pkg:deb/debian/libssl3@${encodeURIComponent(sslVersion).replace(/%2B/g, '%2B')}?arch=amd64&distro=debian-12&upstream=openssl`);
    expect(nested.find((c) => c.name === 'urllib3')!.purl).toBe('pkg:pypi/urllib3@2.8.0');
    expect(nested.filter((c) => c.purl?.startsWith('pkg:deb/')).length).toBeGreaterThan(50);
  }, 60_000);
});

describe('airlock image check: the same gate where builds run', () => {
  const reg = new RealRegistry();
  let cfg: string;
  let deb: BuiltImage;
  let alpine: BuiltImage;
  let a: TestAirlock;

  beforeAll(async () => {
    await reg.start();
    const sslVersion = dpkgQuery().get('libssl3')!.sourceVersion;
    deb = buildLayeredImage([
      { arch: 'amd64', layers: [layerBlob(debianBase()), layerBlob(rootfs({ [SITE]: { copyDir: join(FIXTURES, 'python/site-packages') } }), 'zstd')] },
    ]);
    alpine = buildLayeredImage([
      {
        arch: 'amd64',
        layers: [
          layerBlob(
            rootfs({
              'etc/os-release': readFileSync(join(FIXTURES, 'alpine/os-release')),
              'lib/apk/db/installed': readFileSync(join(FIXTURES, 'alpine/installed')),
            }),
          ),
        ],
      },
    ]);
    await pushImage(deb, reg.port, 'team/deb', 'v1');
    a = await startAirlock(`${registryYaml(reg.port)}policy:
  advisories:
    refuse: critical
`);
    cfg = a.configFile;
    const dir = mkdtempSync(join(tmpdir(), 'airlock-osv-'));
    writeFileSync(
      join(dir, 'd.json'),
      JSON.stringify({
        id: 'DEBIAN-CVE-2099-3001',
        upstream: ['CVE-2099-3001'],
        severity: [{ type: 'CVSS_V3', score: CRIT }],
        affected: [
          {
            package: { ecosystem: 'Debian:12', name: 'openssl' },
            ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: `${sslVersion}+airlock1` }] }],
          },
        ],
      }),
    );
    writeFileSync(
      join(dir, 'g.json'),
      JSON.stringify({
        id: 'GHSA-2099-urll-ib3x',
        aliases: ['CVE-2099-3002'],
        summary: 'urllib3 leaks headers',
        database_specific: { severity: 'HIGH' },
        affected: [{ package: { ecosystem: 'PyPI', name: 'urllib3' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '2.0.0' }, { fixed: '2.9.0' }] }] }],
      }),
    );
    writeFileSync(
      join(dir, 'a.json'),
      JSON.stringify({
        id: 'ALPINE-CVE-2099-3003',
        severity: [{ type: 'CVSS_V3', score: CRIT }],
        affected: [
          { package: { ecosystem: 'Alpine:v3.20', name: 'openssl' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '3.1.0-r0' }] }] },
        ],
      }),
    );
    expect((await airlockCli(['advisories', 'import', dir, '--config', cfg])).code).toBe(0);
    await a.airlock.reloadAdvisories();
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  it('fails a build on a critical finding in an OCI layout, with exit codes per --fail-on', async () => {
    const layout = `oci:${deb.layout}:v1`;
    const r = await airlockCli(['image', 'check', layout, '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/CRITICAL\tDEBIAN-CVE-2099-3001\tlibssl3 \(openssl\)\t\S+\t\S+\+airlock1\tFAIL/);
    expect(r.stdout).toMatch(/HIGH\tGHSA-2099-urll-ib3x\turllib3\t2\.8\.0\t2\.9\.0\tbelow threshold/);
    expect((await airlockCli(['image', 'check', layout, '--config', cfg, '--fail-on', 'none'])).code).toBe(0);
    const high = await airlockCli(['image', 'check', layout, '--config', cfg, '--fail-on', 'high', '--json']);
    expect(high.code).toBe(1);
    const rep = JSON.parse(high.stdout);
    // One finding per advisory and package: every binary package built from openssl is listed.
    const failing = rep.platforms[0].verdict.findings.filter((f: { refusing: boolean }) => f.refusing);
    expect([...new Set(failing.map((f: { id: string }) => f.id))]).toEqual(['DEBIAN-CVE-2099-3001', 'GHSA-2099-urll-ib3x']);
    expect(failing.find((f: { package: { name: string } }) => f.package.name === 'libssl3').package.source).toBe('openssl');
    const clean = await airlockCli(['image', 'check', `oci:${alpine.layout}:v1`, '--config', cfg]);
    expect(clean.stdout).toContain('result: pass');
    expect(clean.code).toBe(0);
  }, 60_000);

  it('reads a docker-archive written by the real skopeo the same way', async () => {
    // Docker archives hold gzip or plain layers only (skopeo refuses to write zstd into one).
    const gz = buildLayeredImage([
      { arch: 'amd64', layers: [layerBlob(debianBase()), layerBlob(rootfs({ [SITE]: { copyDir: join(FIXTURES, 'python/site-packages') } }))] },
    ]);
    const file = join(mkdtempSync(join(tmpdir(), 'airlock-archive-')), 'image.tar');
    const conv = await skopeo(['copy', `oci:${gz.layout}:v1`, `docker-archive:${file}:team/deb:v1`]);
    expect(conv.stderr).toBe('');
    const r = await airlockCli(['image', 'check', `docker-archive:${file}`, '--config', cfg, '--fail-on', 'critical']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('DEBIAN-CVE-2099-3001');
  }, 60_000);

  it('checks an image through the mirror, storing its inventory for the server', async () => {
    const r = await airlockCli(['image', 'check', 'docker://registry.test/team/deb:v1', '--config', cfg]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`registry.test/team/deb@${deb.digest}`);
    expect(r.stdout).toContain('DEBIAN-CVE-2099-3001');
    const bad = await airlockCli(['image', 'check', 'oci:/nonexistent/dir', '--config', cfg]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^airlock: image check: \/nonexistent\/dir is not an OCI layout/);
  }, 60_000);

  it('airlock pin oci judges the image at approval time, so its first pull waits for nothing upstream', async () => {
    const r = await airlockCli(['pin', 'oci', 'registry.test/team/deb:v1', '--config', cfg]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain(`added registry.test/team/deb:v1 -> ${deb.digest}`);
    expect(r.stdout).toContain('DEBIAN-CVE-2099-3001');
    expect(r.stderr).toMatch(/warning: the image gate will refuse/);
    expect(a.airlock.reloadPolicy()).toBe(true);
    // The registry is gone: the refusal comes from the inventory stored at pin time.
    await reg.stop();
    const pulled = await skopeo([
      'copy',
      '--src-tls-verify=false',
      `docker://127.0.0.1:${a.port}/registry.test/team/deb:v1`,
      `oci:${mkdtempSync(join(tmpdir(), 'airlock-pull-'))}:x`,
    ]);
    expect(pulled.code).not.toBe(0);
    expect(pulled.stderr, pulled.stderr).toContain('DEBIAN-CVE-2099-3001');
  }, 60_000);
});
