import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeRegistry, digestOf, makeImage } from '../helpers/fake-registry.js';
import { debianBase, dpkgQuery, layerOf } from '../helpers/layers.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

/**
 * A Debian advisory arriving by a feed sync reaches the image gate with no SIGHUP: a pinned image
 * whose stored inventory (this machine's dpkg database) now matches is refused at its next
 * manifest request, judged again from the stored inventory without fetching its layers.
 */
describe('advisory feeds and the image gate', () => {
  const feed = new OsvFeedServer();
  const reg = new FakeRegistry();
  const img = makeImage([layerOf(debianBase(), 'none')]);
  const baseFiles = dpkgQuery().get('base-files')!;
  let a: TestAirlock;

  beforeAll(async () => {
    await Promise.all([feed.start(), reg.start()]);
    reg.push('team/deb', img, 'v1');
    feed.put('Debian', {
      id: 'DEBIAN-CVE-2000-0001',
      modified: '2026-11-01T00:00:00Z',
      affected: [{ package: { ecosystem: 'Debian:12', name: 'nothing-here' }, versions: ['1'] }],
    });
    a = await startAirlock(`
oci:
  default_registry: reg.test
  registries:
    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }
advisories:
  sources:
    - { url: "${feed.url}", ecosystem: Debian }
  interval: 5
  poll: 0.5
policy:
  advisories:
    refuse: critical
  oci:
    allow:
      - repository: reg.test/team/deb
        digests: ["${img.digest}"]
`);
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await Promise.all([feed.stop(), reg.stop()]);
  });

  it('refuses the next manifest request once a synced advisory matches its stored inventory', async () => {
    const manifest = () => fetch(`${a.url}/v2/reg.test/team/deb/manifests/${img.digest}`, { headers: { accept: ACCEPT } });
    expect((await manifest()).status).toBe(200);
    await a.airlock.backgroundJudged();
    expect(await a.airlock.meta.inventories.getInventory(img.digest)).not.toBeNull();
    const layerFetches = () => img.layers.map(digestOf).reduce((n, d) => n + reg.count(`blob:${d}`) + reg.count(`cdn:${d}`), 0);
    const fetched = layerFetches();
    expect(fetched).toBeGreaterThan(0);
    feed.put('Debian', {
      id: 'DEBIAN-CVE-2099-0777',
      modified: '2026-12-03T10:00:00Z',
      severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
      affected: [
        {
          package: { ecosystem: 'Debian:12', name: baseFiles.source || 'base-files' },
          ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: `${baseFiles.sourceVersion || baseFiles.version}+1` }] }],
        },
      ],
    });
    const end = Date.now() + 25_000;
    let res = await manifest();
    while (res.status === 200 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      res = await manifest();
    }
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('DEBIAN-CVE-2099-0777');
    expect(feed.asked('.json')).toEqual(['/Debian/DEBIAN-CVE-2099-0777.json']);
    expect(layerFetches()).toBe(fetched);
  }, 60_000);
});
