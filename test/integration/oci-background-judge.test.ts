import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { startServer } from '../../src/server.js';
import { FakeRegistry, digestOf, makeImage, makeIndex } from '../helpers/fake-registry.js';
import { debianBase, layerOf, rootfs } from '../helpers/layers.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

/**
 * Images pinned by editing the policy by hand are judged in the background as soon as a policy
 * load sees them: with no client pull, their inventory is stored and their blobs cached, so the
 * first pull answers its manifest at once without fetching layers upstream.
 */
describe('pinned images judged in the background on policy load (fake registry)', () => {
  const reg = new FakeRegistry();
  const lines: { msg: string; [k: string]: unknown }[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const osRelease = (id: string) => `ID=${id}\nVERSION_ID=1\nPRETTY_NAME="${id} 1"\n`;
  // A Debian image (this machine's dpkg database) and a second layer; a two-platform index; one pinned at start.
  const deb = makeImage([layerOf(debianBase(), 'none'), layerOf(rootfs({ 'etc/motd': 'hello\n' }), 'none')]);
  const amd = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('amdlinux') }), 'none')], 'amd64');
  const arm = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('armlinux') }), 'none')], 'arm64');
  const multi = makeIndex([
    { img: amd, arch: 'amd64' },
    { img: arm, arch: 'arm64' },
  ]);
  const early = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('early') }), 'none')]);
  const ungated = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('ungated') }), 'none')]);
  const missing = `sha256:${'e'.repeat(64)}`;
  const tampered = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('tampered') }), 'none')]);
  let dir: string;
  let configFile: string;
  let server: Awaited<ReturnType<typeof startServer>>;
  let url: string;

  const config = (allow: string) => `listen: 127.0.0.1:0
data_dir: ${join(dir, 'data')}
log_level: info
auth:
  admin: open
oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
policy:
  advisories:
    refuse: critical
    images:
      unjudged: allow
      repositories:
        - repository: reg.test/team/ungated
          refuse: none
  oci:
    allow:
      - repository: reg.test/team/early
        digests: ["${early.digest}"]
${allow}`;
  /** The policy file edited by hand (no `airlock pin`), then reloaded as SIGHUP does. */
  const editAndReload = (allow: string) => {
    writeFileSync(configFile, config(allow));
    return server.airlock.reloadPolicy();
  };
  const outcomes = async () => {
    const out: Record<string, number> = {};
    for (const v of (await server.airlock.metrics.backgroundJudgements.get()).values) out[String(v.labels.outcome)] = v.value;
    return out;
  };
  const blobHits = (digests: string[]) => digests.reduce((n, d) => n + reg.count(`blob:${d}`) + reg.count(`cdn:${d}`), 0);
  const blobsOf = (img: { config: Buffer; layers: Buffer[] }) => [digestOf(img.config), ...img.layers.map(digestOf)];

  beforeAll(async () => {
    await reg.start();
    reg.push('team/deb', deb, 'v1');
    reg.pushIndex('team/multi', multi, [amd, arm], 'latest');
    reg.push('team/early', early);
    reg.push('team/ungated', ungated);
    reg.push('team/tampered', tampered);
    reg.tamper.add(tampered.digest);
    dir = mkdtempSync(join(tmpdir(), 'airlock-bgjudge-'));
    configFile = join(dir, 'airlock.yaml');
    writeFileSync(configFile, config(''));
    server = await startServer(loadConfig(configFile), { log: pino({ level: 'debug' }, sink), defaultMetrics: false });
    url = `http://127.0.0.1:${server.port}`;
  }, 60_000);

  let stopped = false;
  afterAll(async () => {
    if (!stopped) await server?.stop();
    await reg.stop();
  });

  it('judges what the policy pins when the server starts', async () => {
    await server.airlock.backgroundJudged();
    expect(await server.airlock.meta.inventories.getInventory(early.digest)).not.toBeNull();
    expect(lines.some((l) => l.msg === 'image judged in the background' && l.digest === early.digest)).toBe(true);
  });

  it('judges a hand-written pin on reload without any client pull: inventory stored, blobs cached; the first pull then fetches nothing upstream', async () => {
    const before = blobHits(blobsOf(deb));
    expect(await server.airlock.meta.inventories.getInventory(deb.digest)).toBeNull();
    expect(
      editAndReload(`      - repository: reg.test/team/deb
        tags: { v1: "${deb.digest}" }
      - repository: reg.test/team/multi
        digests: ["${multi.digest}"]
      - repository: reg.test/team/ungated
        digests: ["${ungated.digest}"]
`),
    ).toBe(true);
    await server.airlock.backgroundJudged();
    // No client asked for anything: the inventory is stored, every blob fetched once and cached.
    const inv = await server.airlock.meta.inventories.getInventory(deb.digest);
    expect(inv).not.toBeNull();
    expect((JSON.parse(inv!.inventory) as { packages: { type: string }[] }).packages.filter((p) => p.type === 'deb').length).toBeGreaterThan(20);
    for (const d of blobsOf(deb)) expect(await server.airlock.cache.cachedSize(d.slice(7))).toBeGreaterThan(0);
    expect(blobHits(blobsOf(deb))).toBe(before + 2 * blobsOf(deb).length); // a redirect and the CDN each
    // Both platforms of the pinned index.
    for (const img of [amd, arm]) expect(await server.airlock.meta.inventories.getInventory(img.digest)).not.toBeNull();
    // An ungated repository is not judged (nothing to judge there).
    expect(await server.airlock.meta.inventories.getInventory(ungated.digest)).toBeNull();
    expect(reg.count(`manifest:team/ungated:${ungated.digest}`)).toBe(0);
    const judged = lines.filter((l) => l.msg === 'image judged in the background').map((l) => l.digest);
    expect(judged).toEqual(expect.arrayContaining([deb.digest, multi.digest]));
    expect((await outcomes()).done).toBeGreaterThanOrEqual(3);

    // The first client pull: the manifest at once from the cache, its blobs without asking upstream.
    const manifestsBefore = reg.count('manifest:team/deb:v1') + reg.count(`manifest:team/deb:${deb.digest}`);
    const blobsBefore = blobHits(blobsOf(deb));
    reg.throttle = 1024; // Were anything fetched now, it would crawl.
    try {
      const started = Date.now();
      const res = await fetch(`${url}/v2/reg.test/team/deb/manifests/v1`, { headers: { accept: ACCEPT } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-airlock-cache')).toBe('hit');
      expect(Buffer.from(await res.arrayBuffer()).equals(deb.manifest)).toBe(true);
      expect(Date.now() - started).toBeLessThan(2000);
      for (const d of blobsOf(deb)) {
        const b = await fetch(`${url}/v2/reg.test/team/deb/blobs/${d}`);
        expect(b.status).toBe(200);
        expect(digestOf(Buffer.from(await b.arrayBuffer()))).toBe(d);
      }
    } finally {
      reg.throttle = 0;
    }
    expect(reg.count('manifest:team/deb:v1') + reg.count(`manifest:team/deb:${deb.digest}`)).toBe(manifestsBefore);
    expect(blobHits(blobsOf(deb))).toBe(blobsBefore);
  });

  it('a pin it cannot fetch is logged and counted and does not break the reload; the first pull tries again as before', async () => {
    const failedBefore = (await outcomes()).failed ?? 0;
    expect(
      editAndReload(`      - repository: reg.test/team/deb
        tags: { v1: "${deb.digest}" }
      - repository: reg.test/team/gone
        digests: ["${missing}"]
      - repository: reg.test/team/tampered
        digests: ["${tampered.digest}"]
`),
    ).toBe(true);
    await server.airlock.backgroundJudged();
    expect((await outcomes()).failed).toBe(failedBefore + 2);
    const mismatch = lines.find((l) => l.msg === 'image could not be judged in the background; its first pull judges it' && l.digest === tampered.digest);
    expect(mismatch?.err).toMatch(/sent a manifest for reg.test\/team\/tampered@.* that has sha256:/);
    expect(await server.airlock.meta.inventories.getInventory(tampered.digest)).toBeNull();
    const warned = lines.find((l) => l.msg === 'image could not be judged in the background; its first pull judges it' && l.digest === missing);
    expect(warned?.err).toMatch(/404/);
    expect(warned?.name).toBe('reg.test/team/gone');
    // The reload took: the new pin is in force (a pull of it is tried upstream again, and answered as the registry answers).
    const asked = reg.count(`manifest:team/gone:${missing}`);
    const res = await fetch(`${url}/v2/reg.test/team/gone/manifests/${missing}`, { headers: { accept: ACCEPT } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect(reg.count(`manifest:team/gone:${missing}`)).toBe(asked + 1);
    // Served images are unaffected.
    expect((await fetch(`${url}/v2/reg.test/team/deb/manifests/v1`, { headers: { accept: ACCEPT } })).status).toBe(200);
  });

  it('a client pulling while the background judges joins its work: every layer fetched upstream once', async () => {
    const late = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('late'), 'opt/blob': Buffer.alloc(256 * 1024, 7) }), 'none')]);
    reg.push('team/late', late);
    reg.throttle = 512 * 1024; // about half a second per layer
    try {
      expect(
        editAndReload(`      - repository: reg.test/team/late
        digests: ["${late.digest}"]
`),
      ).toBe(true);
      let judged = false;
      void server.airlock.backgroundJudged().then(() => (judged = true));
      await new Promise((r) => setTimeout(r, 100));
      expect(judged).toBe(false); // the client comes while the background is at work
      const res = await fetch(`${url}/v2/reg.test/team/late/manifests/${late.digest}`, { headers: { accept: ACCEPT } });
      expect(res.status).toBe(200);
      await server.airlock.backgroundJudged();
    } finally {
      reg.throttle = 0;
    }
    expect(reg.count(`cdn:${digestOf(late.layers[0])}`)).toBe(1);
    expect(reg.count(`manifest:team/late:${late.digest}`)).toBe(1);
  });

  it('the server stops promptly while a judgement is under way', async () => {
    const slow = makeImage([layerOf(rootfs({ 'etc/os-release': osRelease('slow'), 'opt/blob': Buffer.alloc(512 * 1024, 9) }), 'none')]);
    reg.push('team/slow', slow);
    reg.throttle = 64 * 1024; // eight seconds for the layer
    try {
      expect(
        editAndReload(`      - repository: reg.test/team/slow
        digests: ["${slow.digest}"]
`),
      ).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      expect(reg.count(`cdn:${digestOf(slow.layers[0])}`)).toBe(1);
      const started = Date.now();
      stopped = true;
      await server.stop();
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      reg.throttle = 0;
    }
  });

  it('after a restart, images judged before are known (not fetched again); one cut short by the stop is judged again', async () => {
    const earlyLayer = reg.count(`cdn:${digestOf(early.layers[0])}`);
    server = await startServer(loadConfig(configFile), { log: pino({ level: 'debug' }, sink), defaultMetrics: false });
    stopped = false;
    await server.airlock.backgroundJudged();
    const o = await outcomes();
    expect(o.known).toBe(1); // team/early
    expect(o.done).toBe(1); // team/slow
    expect(reg.count(`cdn:${digestOf(early.layers[0])}`)).toBe(earlyLayer);
  });
});
