import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/image/inventory.js';
import { readLayer } from '../../src/image/layer.js';
import { debianBase, dpkgQuery, FIXTURES, layerOf, rootfs, type Compression } from '../helpers/layers.js';

const read = (b: Buffer, label = 'layer') => readLayer(Readable.from([b]), label);
const SITE = 'usr/local/lib/python3.11/site-packages';

describe('image inventory from real package databases', () => {
  it("reads this machine's dpkg database as dpkg-query does, in gzip, zstd and plain layers", async () => {
    const want = dpkgQuery();
    expect(want.size).toBeGreaterThan(50);
    const root = debianBase();
    for (const c of ['gzip', 'zstd', 'none'] as Compression[]) {
      const inv = applyLayers([await read(layerOf(root, c))]);
      const debs = inv.packages.filter((p) => p.type === 'deb');
      expect(debs.length, c).toBe(want.size);
      for (const p of debs) {
        const q = want.get(p.name);
        expect(q, p.name).toBeDefined();
        expect(p.version).toBe(q!.version);
        expect(p.source).toBe(q!.source);
        expect(p.sourceVersion ?? p.version).toBe(q!.sourceVersion);
        expect(p.arch).toBe(q!.arch);
      }
      const osr = readFileSync('/usr/lib/os-release', 'utf8');
      expect(inv.os?.id).toBe(/^ID=(.*)$/m.exec(osr)![1]);
      expect(inv.os?.ecosystem).toBe(`Debian:${/^VERSION_ID="?(\d+)/m.exec(osr)![1]}`);
    }
  });

  it('applies layers in order: an upgraded package, a removed one, a whiteout and an opaque directory', async () => {
    const status = readFileSync('/var/lib/dpkg/status', 'utf8');
    const paras = status.split(/\n\n+/).filter((p) => /^Status: install ok installed$/m.test(p));
    const up = /^Package: (.*)$/m.exec(paras[0])![1];
    const gone = /^Package: (.*)$/m.exec(paras[1])![1];
    // What dpkg leaves after an upgrade of `up` and a removal of `gone`: a rewritten status file.
    const upgraded = status
      .split(/\n\n+/)
      .filter((p) => !new RegExp(`^Package: ${gone.replace(/[.+]/g, '\\$&')}$`, 'm').test(p))
      .map((p) => (new RegExp(`^Package: ${up.replace(/[.+]/g, '\\$&')}$`, 'm').test(p) ? p.replace(/^Version: (.*)$/m, 'Version: 99:$1') : p))
      .join('\n\n');
    const base = debianBase({
      [SITE]: { copyDir: join(FIXTURES, 'python/site-packages') },
      'opt/app/lib/old-1.0.dist-info/METADATA': 'Name: old\nVersion: 1.0\n',
    });
    const upper = rootfs({
      'var/lib/dpkg/status': upgraded,
      [`${SITE}/.wh.idna-3.20.dist-info`]: '',
      'opt/app/.wh..wh..opq': '',
      'opt/app/lib/new-2.0.dist-info/METADATA': 'Name: New\nVersion: 2.0\n',
    });
    const lower = await read(layerOf(base));
    const top = await read(layerOf(upper, 'zstd'));
    expect(top.whiteouts).toEqual([`${SITE}/idna-3.20.dist-info`]);
    expect(top.opaque).toEqual(['opt/app']);

    const before = applyLayers([lower]);
    const after = applyLayers([lower, top]);
    const deb = (inv: typeof after, n: string) => inv.packages.find((p) => p.type === 'deb' && p.name === n);
    expect(deb(before, up)!.version).not.toMatch(/^99:/);
    expect(deb(after, up)!.version).toMatch(/^99:/);
    expect(deb(before, gone)).toBeDefined();
    expect(deb(after, gone)).toBeUndefined();
    const py = (inv: typeof after) =>
      inv.packages
        .filter((p) => p.type === 'pypi')
        .map((p) => `${p.name}==${p.version}`)
        .sort();
    expect(py(before)).toEqual(['idna==3.20', 'old==1.0', 'urllib3==2.8.0']);
    expect(py(after)).toEqual(['new==2.0', 'urllib3==2.8.0']);
    // The other order: the lower layer's files come back only where nothing above deletes them.
    expect(py(applyLayers([top, lower]))).toEqual(['idna==3.20', 'new==2.0', 'old==1.0', 'urllib3==2.8.0']);
  });

  it('reads an rpm database written by the real rpm as rpm -qa does', async () => {
    const root = rootfs({ 'var/lib/rpm/rpmdb.sqlite': readFileSync(join(FIXTURES, 'rpm/root/var/lib/rpm/rpmdb.sqlite')) });
    const inv = applyLayers([await read(layerOf(root))]);
    const got = inv.packages
      .filter((p) => p.type === 'rpm')
      .map((p) => `${p.name} ${p.version.includes(':') ? p.version : `0:${p.version}`} ${p.arch} ${p.source}`)
      .sort();
    // rpm-qa.txt: NAME EPOCHNUM:VERSION-RELEASE ARCH SOURCERPM, as `rpm -qa` printed it.
    const want = readFileSync(join(FIXTURES, 'rpm/rpm-qa.txt'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.replace(/-[^-]+-[^-]+\.src\.rpm$/, ''));
    expect(got).toEqual(want);
    expect(want).toHaveLength(4);
    expect(inv.unreadable).toEqual([]);
  });

  it('says which databases it cannot read (BerkeleyDB rpm), and an os-release as Alpine writes it', async () => {
    const root = rootfs({
      'var/lib/rpm/Packages': Buffer.alloc(4096),
      'etc/os-release': readFileSync(join(FIXTURES, 'alpine/os-release')),
      'lib/apk/db/installed': readFileSync(join(FIXTURES, 'alpine/installed')),
    });
    const inv = applyLayers([await read(layerOf(root))]);
    expect(inv.unreadable).toHaveLength(1);
    expect(inv.unreadable[0]).toMatch(/var\/lib\/rpm\/Packages.*BerkeleyDB/);
    expect(inv.os).toMatchObject({ id: 'alpine', versionId: '3.20.0', ecosystem: 'Alpine:v3.20' });
    expect(inv.packages.filter((p) => p.type === 'apk').map((p) => `${p.name} ${p.version} ${p.source}`)).toEqual([
      'musl 1.2.5-r0 musl',
      'libcrypto3 3.3.0-r2 openssl',
      'busybox 1.36.1-r28 busybox',
    ]);
  });

  it('reads distroless status.d files, and is not fooled by a blob that is not a layer', async () => {
    const root = rootfs({
      'var/lib/dpkg/status.d/base-files': 'Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n',
      'var/lib/dpkg/status.d/libssl3': 'Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n',
      'var/lib/dpkg/status.d/libssl3.md5sums': 'x',
    });
    const inv = applyLayers([await read(layerOf(root))]);
    expect(inv.packages.map((p) => `${p.name} ${p.version} ${p.source}`).sort()).toEqual([
      'base-files 12.4+deb12u5 base-files',
      'libssl3 3.0.11-1~deb12u2 openssl',
    ]);
    const config = await read(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' })));
    expect(config.tar).toBe(false);
  });

  it("a V7 tar layer (no magic, which Go's archive/tar extracts as any other) is not taken for a blob that is no layer", async () => {
    const root = debianBase();
    const v7 = execFileSync('tar', ['-C', root, '--format=v7', '-cf', '-', 'usr/lib/os-release', 'var/lib/dpkg/status'], { maxBuffer: 1 << 30 });
    expect(v7.toString('latin1', 257, 262)).not.toBe('ustar');
    for (const layer of [v7, gzipSync(v7)]) {
      // Its packages are read, or the layer is refused as unreadable: never a clean "not a layer".
      const facts = await read(layer, 'sha256:v7').catch((e: Error) => e);
      if (facts instanceof Error) expect(facts.message).toMatch(/sha256:v7: the layer could not be read/);
      else expect(applyLayers([facts]).packages.length).toBeGreaterThan(10);
    }
  });

  it('rejects a corrupt compressed layer instead of reporting it clean', async () => {
    const good = layerOf(debianBase());
    const bad = Buffer.from(good);
    bad.fill(0x55, 2000, 4000);
    await expect(read(bad, 'sha256:bad')).rejects.toThrow(/sha256:bad: the layer could not be read/);
  });
});
