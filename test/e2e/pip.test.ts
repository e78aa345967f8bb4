import { mkdtempSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { buildDist, pip } from '../helpers/pip.js';

/** End to end with the real pip on this machine, through Airlock, against local indexes. */
describe('real pip through Airlock', () => {
  const pub = new FakeIndex();
  const internal = new FakeIndex();
  let a: TestAirlock;
  const index = () => `${a.url}/pypi/simple/`;
  const target = () => mkdtempSync(join(tmpdir(), 'airlock-pip-target-'));
  const dists = {
    tiny10: buildDist({ name: 'tinylib', version: '1.0', requires_dist: ['deplib>=1'] }),
    tiny20: buildDist({ name: 'tinylib', version: '2.0' }),
    tinySdist: buildDist({ name: 'tinylib', version: '1.0', kind: 'sdist' }),
    dep11: buildDist({ name: 'deplib', version: '1.1' }),
    dep12: buildDist({ name: 'deplib', version: '1.2' }),
    acmeInternal: buildDist({ name: 'acme-core', version: '1.0' }),
    acmePublic: buildDist({ name: 'acme-core', version: '99.0' }),
    future10: buildDist({ name: 'futurelib', version: '1.0' }),
    future20: buildDist({ name: 'futurelib', version: '2.0', requires_python: '>=99' }),
    yank10: buildDist({ name: 'yanklib', version: '1.0' }),
    yank11: buildDist({ name: 'yanklib', version: '1.1' }),
    bad: buildDist({ name: 'badlib', version: '1.0' }),
  };

  beforeAll(async () => {
    await pub.start();
    await internal.start();
    pub.format = 'html';
    pub
      .add('tinylib', dists.tiny10)
      .add('tinylib', dists.tiny20)
      .add('tinylib', dists.tinySdist)
      .add('deplib', dists.dep11)
      .add('deplib', dists.dep12)
      .add('acme-core', dists.acmePublic)
      .add('futurelib', dists.future10)
      .add('futurelib', dists.future20)
      .add('yanklib', dists.yank10)
      .add('yanklib', { ...dists.yank11, yanked: 'broken' })
      .add('badlib', { ...dists.bad, servedBytes: Buffer.concat([dists.bad.bytes.subarray(0, -1), Buffer.from([dists.bad.bytes.at(-1)! ^ 0xff])]) });
    internal.add('acme-core', dists.acmeInternal);
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  internal: ${internal.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}", "127.0.0.1:${internal.port}"]
policy:
  pypi:
    internal: ["acme-*"]
    allow:
      - { name: tinylib, versions: ">=1,<2" }
      - { name: deplib }
      - { name: futurelib }
      - { name: yanklib }
      - { name: badlib }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
    await internal.stop();
  });

  it('installs an allowed package and its dependency with --require-hashes', async () => {
    const dir = target();
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, `tinylib==1.0 --hash=sha256:${sha256(dists.tiny10.bytes)}\ndeplib==1.2 --hash=sha256:${sha256(dists.dep12.bytes)}\n`);
    const r = await pip(['install', '--index-url', index(), '--require-hashes', '--only-binary', ':all:', '--target', join(dir, 't'), '-r', req]);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(join(dir, 't')).sort()).toEqual(expect.arrayContaining(['tinylib', 'deplib', 'tinylib-1.0.dist-info', 'deplib-1.2.dist-info']));
  });

  it('resolves a dependency through the proxy', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--only-binary', ':all:', '-d', dir, 'tinylib']);
    expect(r.code, r.out).toBe(0);
    // 2.0 is outside the policy; deplib resolves to its newest allowed version.
    expect(readdirSync(dir).sort()).toEqual(['deplib-1.2-py3-none-any.whl', 'tinylib-1.0-py3-none-any.whl']);
  });

  it('downloads an sdist through the proxy', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '--no-binary', ':all:', '-d', dir, 'tinylib==1.0']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual(['tinylib-1.0.tar.gz']);
  });

  it('gets the internal package, never the public shadow (dependency confusion)', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'acme-core']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual(['acme_core-1.0-py3-none-any.whl']);
    expect(pub.count('/simple/acme-core/')).toBe(0);
  });

  it('is refused a package outside the policy, and shows the reason', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, '-vv', 'numpy']);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('numpy is not on the PyPI allowlist');
    const v = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'tinylib==2.0']);
    expect(v.code).not.toBe(0);
    expect(v.out).toContain('from versions: 1.0');
    // Asked for directly (a stale lock file, a hand-written URL), the file itself is refused with the reason at ERROR level.
    const direct = await pip(['download', '--no-deps', '-d', dir, `${a.url}/pypi/files/tinylib/${dists.tiny20.filename}`]);
    expect(direct.code).not.toBe(0);
    expect(direct.out).toContain('tinylib 2.0 is outside the allowed range >=1,<2');
  });

  it('skips releases whose Requires-Python excludes this interpreter', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'futurelib']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual(['futurelib-1.0-py3-none-any.whl']);
  });

  it('ignores a yanked release unless it is pinned exactly', async () => {
    const dir = target();
    const r = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir, 'yanklib']);
    expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual(['yanklib-1.0-py3-none-any.whl']);
    const dir2 = target();
    const pinned = await pip(['download', '--index-url', index(), '--no-deps', '-d', dir2, 'yanklib==1.1']);
    expect(pinned.code, pinned.out).toBe(0);
    expect(pinned.out).toContain('broken');
    expect(readdirSync(dir2)).toEqual(['yanklib-1.1-py3-none-any.whl']);
  });

  it('never hands pip a tampered file whole, and caches nothing', async () => {
    const dir = target();
    const r = await pip(['download', '--retries', '0', '--index-url', index(), '--no-deps', '-d', dir, 'badlib']);
    expect(r.code).not.toBe(0);
    expect(existsSync(join(dir, dists.bad.filename))).toBe(false);
    const blob = join(a.dir, 'data', 'blobs', 'sha256', sha256(dists.bad.bytes).slice(0, 2), sha256(dists.bad.bytes));
    expect(existsSync(blob)).toBe(false);
    const recs = (await (await fetch(`${a.url}/-/records?name=badlib`)).json()).records;
    expect(recs[0].decision).toBe('deny');
    expect(recs[0].reason).toContain('sha256');
  });
});
