import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { rawGet, records } from '../helpers/http.js';

const PIP_ACCEPT = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01';
const HTML_ONLY = 'text/html';

describe('PyPI front-end against a local upstream', () => {
  const pub = new FakeIndex();
  const internal = new FakeIndex();
  let a: TestAirlock;
  const wheel = (name: string, v: string) => `${name.replace(/-/g, '_')}-${v}-py3-none-any.whl`;
  const good = randomBytes(300_000);
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const evil = randomBytes(200_000);
  const md = Buffer.from('Metadata-Version: 2.1\nName: tinylib\nVersion: 1.0\n\n');

  beforeAll(async () => {
    await pub.start();
    await internal.start();
    pub
      .add('tinylib', { filename: wheel('tinylib', '1.0'), bytes: good, metadata: md, requiresPython: '>=3.8' })
      .add('tinylib', { filename: wheel('tinylib', '1.5'), bytes: randomBytes(1000), yanked: 'broken build' })
      .add('tinylib', { filename: wheel('tinylib', '2.0'), bytes: randomBytes(1000) })
      .add('tinylib', { filename: 'tinylib-1.0.tar.gz', bytes: randomBytes(2000) })
      .add('tinylib', { filename: 'evil-1.0-py3-none-any.whl', bytes: randomBytes(10) })
      .add('tinylib', { filename: wheel('tinylib', '1.1'), bytes: randomBytes(10), advertisedSha256: null })
      .add('biglib', { filename: wheel('biglib', '1.0'), bytes: big })
      .add('tampered', {
        filename: wheel('tampered', '1.0'),
        bytes: evil,
        servedBytes: Buffer.concat([evil.subarray(0, 199_999), Buffer.from([evil[199_999] ^ 1])]),
      })
      .add('offsite', { filename: wheel('offsite', '1.0'), bytes: good, url: `http://localhost:${pub.port}/files/${wheel('offsite', '1.0')}` })
      .add('bounce', { filename: wheel('bounce', '1.0'), bytes: good, redirectTo: `http://localhost:${pub.port}/files/${wheel('bounce', '1.0')}` })
      .add('acme-utils', { filename: wheel('acme-utils', '99.0'), bytes: randomBytes(100) })
      .add('coldpage', { filename: wheel('coldpage', '1.0'), bytes: randomBytes(3000) })
      .add('pinned', { filename: wheel('pinned', '1.0'), bytes: Buffer.from('pinned-a') })
      .add('pinned', { filename: wheel('pinned', '1.0').replace('py3-none-any', 'cp311-cp311-linux_x86_64'), bytes: Buffer.from('pinned-b') });
    internal.add('acme-utils', { filename: wheel('acme-utils', '1.0'), bytes: Buffer.from('internal acme utils') });
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  internal: ${internal.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}", "127.0.0.1:${internal.port}"]
  index_ttl: 0
policy:
  pypi:
    internal: ["acme-*"]
    allow:
      - { name: TinyLib, versions: ">=1,<2" }
      - { name: biglib }
      - { name: tampered }
      - { name: offsite }
      - { name: pinned, versions: "==1.0", sha256: ["${sha256('pinned-a')}"] }
      - { name: acme-tools }
      - { name: coldpage }
      - { name: bounce }
    deny:
      - { name: blocked, reason: "typosquat of requests" }
`);
  });
  afterEach(() => {
    pub.mode = 'ok';
    pub.format = 'json';
  });
  afterAll(async () => {
    await a.stop();
    await pub.stop();
    await internal.stop();
  });

  it('serves only allowed files, as PEP 691 JSON with matching versions', async () => {
    const res = await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: PIP_ACCEPT } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.pypi.simple.v1+json');
    expect(res.headers.get('vary')).toBe('Accept, Accept-Encoding');
    const doc = await res.json();
    expect(doc.name).toBe('tinylib');
    expect(doc.meta['api-version']).toBe('1.1');
    const names = doc.files.map((f: any) => f.filename).sort();
    // 2.0 is out of range, evil-* is another project's name, 1.1 has no sha256: none are offered.
    expect(names).toEqual(['tinylib-1.0-py3-none-any.whl', 'tinylib-1.0.tar.gz', 'tinylib-1.5-py3-none-any.whl']);
    expect(doc.versions).toEqual(['1.0', '1.5']);
    const f10 = doc.files.find((f: any) => f.filename === 'tinylib-1.0-py3-none-any.whl');
    expect(f10.url).toBe('../../files/tinylib/tinylib-1.0-py3-none-any.whl');
    expect(f10.hashes).toEqual({ sha256: sha256(good) });
    expect(f10['requires-python']).toBe('>=3.8');
    expect(f10['core-metadata']).toEqual({ sha256: sha256(md) });
    expect(f10.size).toBe(good.length);
    expect(f10['upload-time']).toBe('2024-01-01T00:00:00.000000Z');
    const f15 = doc.files.find((f: any) => f.filename === 'tinylib-1.5-py3-none-any.whl');
    expect(f15.yanked).toBe('broken build');
  });

  it('gzips pages for clients that ask, and only for them', async () => {
    const gz = await rawGet(`${a.url}/pypi/simple/tinylib/`, { accept: PIP_ACCEPT, 'accept-encoding': 'gzip, deflate' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    const plain = await rawGet(`${a.url}/pypi/simple/tinylib/`, { accept: PIP_ACCEPT });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(gunzipSync(gz.body).equals(plain.body)).toBe(true);
    const refused = await rawGet(`${a.url}/pypi/simple/tinylib/`, { accept: PIP_ACCEPT, 'accept-encoding': 'gzip;q=0, identity' });
    expect(refused.headers['content-encoding']).toBeUndefined();
  });

  it('re-renders HTML from an HTML upstream and drops an upstream <base href>', async () => {
    pub.format = 'html';
    pub.inject = '<base href="http://attacker.example/"><script>alert(1)</script>';
    // index_ttl is 0: the page is fetched again in the new format.
    const res = await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: HTML_ONLY } });
    pub.inject = '';
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(html).not.toContain('attacker');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<base');
    expect(html).toContain(
      `<a href="../../files/tinylib/tinylib-1.0-py3-none-any.whl#sha256=${sha256(good)}" data-requires-python="&gt;=3.8" data-core-metadata="sha256=${sha256(md)}"`,
    );
    expect(html).toContain('data-yanked="broken build"');
    expect(html).not.toContain('2.0');
  });

  it('keeps an empty data-yanked as yanked', async () => {
    pub.format = 'html';
    pub.projects.get('tinylib')![1].yanked = true;
    const html = await (await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: HTML_ONLY } })).text();
    pub.projects.get('tinylib')![1].yanked = 'broken build';
    expect(html).toMatch(/tinylib-1\.5-py3-none-any\.whl#sha256=[0-9a-f]{64}" data-yanked="">/);
  });

  it('negotiates by q-value and answers 406 when nothing fits', async () => {
    const uv = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01';
    expect((await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: uv } })).headers.get('content-type')).toBe('application/vnd.pypi.simple.v1+json');
    const htmlFirst = 'application/vnd.pypi.simple.v1+json;q=0.5, application/vnd.pypi.simple.v1+html';
    expect((await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: htmlFirst } })).headers.get('content-type')).toBe(
      'application/vnd.pypi.simple.v1+html; charset=utf-8',
    );
    const r406 = await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: 'application/json' } });
    expect(r406.status).toBe(406);
    const fmt = await fetch(`${a.url}/pypi/simple/tinylib/?format=text/html`, { headers: { accept: PIP_ACCEPT } });
    expect(fmt.headers.get('content-type')).toBe('text/html; charset=utf-8');
  });

  it('redirects non-normalised names and refuses invalid ones', async () => {
    const r = await fetch(`${a.url}/pypi/simple/Tiny_Lib/`, { redirect: 'manual' });
    expect(r.status).toBe(301);
    expect(r.headers.get('location')).toBe('/pypi/simple/tiny-lib/');
    const slashless = await fetch(`${a.url}/pypi/simple/tinylib`, { redirect: 'manual' });
    expect(slashless.status).toBe(301);
    expect(slashless.headers.get('location')).toBe('/pypi/simple/tinylib/');
    for (const bad of ['%2e%2e', 'foo%2Fbar', 'foo%00', 'foo%0A', '-foo', 'foo%5Cbar', 'x'.repeat(10_000)]) {
      const res = await fetch(`${a.url}/pypi/simple/${bad}/`, { redirect: 'manual' });
      expect([400, 404, 414, 431]).toContain(res.status);
    }
    // Dot segments never reach a handler as a name.
    const trav = await rawGet(`${a.url}/pypi/simple/../../etc/passwd/`);
    expect(trav.status).toBe(404);
  });

  it('refuses a project outside the policy with 403 and the reason', async () => {
    const res = await rawGet(`${a.url}/pypi/simple/numpy/`);
    expect(res.status).toBe(403);
    expect(res.body.toString()).toContain('numpy is not on the PyPI allowlist');
    const denied = await rawGet(`${a.url}/pypi/simple/blocked/`);
    expect(denied.status).toBe(403);
    expect(denied.body.toString()).toContain('typosquat of requests');
    expect(denied.body.toString()).toContain('pypi.deny[0]');
  });

  it('answers an internal name only from the internal index (dependency confusion)', async () => {
    const doc = await (await fetch(`${a.url}/pypi/simple/acme-utils/`, { headers: { accept: PIP_ACCEPT } })).json();
    expect(doc.versions).toEqual(['1.0']);
    expect(doc.files.map((f: any) => f.filename)).toEqual(['acme_utils-1.0-py3-none-any.whl']);
    const file = await rawGet(`${a.url}/pypi/files/acme-utils/acme_utils-1.0-py3-none-any.whl`);
    expect(file.body.toString()).toBe('internal acme utils');
    // The public 99.0 is unreachable even by its file URL.
    const shadow = await rawGet(`${a.url}/pypi/files/acme-utils/acme_utils-99.0-py3-none-any.whl`);
    expect(shadow.status).toBe(404);
    // An internal name the internal index lacks is 403 (uv stops there), never the public project.
    const missing = await rawGet(`${a.url}/pypi/simple/acme-tools/`);
    expect(missing.status).toBe(403);
    expect(missing.body.toString()).toContain('internal index has no such project');
    expect(internal.count('/simple/acme-tools/')).toBe(1);
    expect(pub.count('/simple/acme-tools/')).toBe(0);
    expect(pub.count('/simple/acme-utils/')).toBe(0);
  });

  it('streams a verified file, caches it, then serves it from disk with Range', async () => {
    const url = `${a.url}/pypi/files/biglib/biglib-1.0-py3-none-any.whl`;
    const first = await rawGet(url);
    expect(first.status).toBe(200);
    expect(first.complete).toBe(true);
    expect(first.headers['x-airlock-cache']).toBe('miss');
    expect(first.headers['content-length']).toBe(String(big.length));
    expect(sha256(first.body)).toBe(sha256(big));
    // The commit (fsync, rename) follows the verified transfer; wait for it.
    await a.airlock.cache.idle();
    const before = pub.count('/files/biglib-1.0-py3-none-any.whl');
    const second = await rawGet(url);
    expect(second.headers['x-airlock-cache']).toBe('hit');
    expect(sha256(second.body)).toBe(sha256(big));
    expect(pub.count('/files/biglib-1.0-py3-none-any.whl')).toBe(before);
    expect(existsSync(join(a.dir, 'data', 'blobs', 'sha256', sha256(big).slice(0, 2), sha256(big)))).toBe(true);
    const part = await rawGet(url, { range: 'bytes=100-199' });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 100-199/${big.length}`);
    expect(part.body.equals(big.subarray(100, 200))).toBe(true);
    const tail = await rawGet(url, { range: 'bytes=-10' });
    expect(tail.body.equals(big.subarray(big.length - 10))).toBe(true);
    const bad = await rawGet(url, { range: `bytes=${big.length}-` });
    expect(bad.status).toBe(416);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(big.length));
    const recs = await records(a, 'name=biglib');
    expect(recs.some((r) => r.cache === 'miss' && r.decision === 'allow' && r.sha256 === sha256(big))).toBe(true);
    expect(recs.some((r) => r.cache === 'hit')).toBe(true);
  });

  it('gives N concurrent clients of a cold file one upstream fetch', async () => {
    const bytes = randomBytes(2 * 1024 * 1024);
    pub.add('coalesce', { filename: wheel('coalesce', '1.0'), bytes });
    pub.throttle = 8 * 1024 * 1024;
    const url = `${a.url}/pypi/files/biglib/${wheel('coalesce', '1.0')}`;
    // A file of another project asked for under an allowed project's URL: not on that page, 404.
    expect((await rawGet(url)).status).toBe(404);
    pub.projects.get('biglib')!.push({ filename: wheel('biglib', '2.0'), bytes });
    const url2 = `${a.url}/pypi/files/biglib/${wheel('biglib', '2.0')}`;
    const results = await Promise.all(Array.from({ length: 8 }, () => rawGet(url2)));
    pub.throttle = 0;
    for (const r of results) {
      expect(r.complete).toBe(true);
      expect(sha256(r.body)).toBe(sha256(bytes));
    }
    expect(pub.count(`/files/${wheel('biglib', '2.0')}`)).toBe(1);
    expect(results.filter((r) => r.headers['x-airlock-cache'] === 'miss')).toHaveLength(1);
  });

  it('cuts a tampered file before its last bytes, caches nothing and records the refusal', async () => {
    const res = await rawGet(`${a.url}/pypi/files/tampered/${wheel('tampered', '1.0')}`);
    expect(res.status).toBe(200);
    expect(res.complete).toBe(false);
    expect(res.body.length).toBeLessThan(evil.length);
    expect(existsSync(join(a.dir, 'data', 'blobs', 'sha256', sha256(evil).slice(0, 2), sha256(evil)))).toBe(false);
    // The spool file goes once the failed fill is over (its removal is asynchronous: under load it trails the cut).
    await a.airlock.cache.idle();
    expect(readdirSync(join(a.dir, 'data', 'spool'))).toEqual([]);
    const recs = await records(a, 'name=tampered');
    expect(recs[0].decision).toBe('deny');
    expect(recs[0].reason).toContain('expected sha256:' + sha256(evil));
    // A second try fetches again (nothing was cached) and fails again.
    const again = await rawGet(`${a.url}/pypi/files/tampered/${wheel('tampered', '1.0')}`);
    expect(again.complete).toBe(false);
    expect(pub.count(`/files/${wheel('tampered', '1.0')}`)).toBe(2);
  });

  it('refuses files of versions or hashes the policy does not allow, with the reason', async () => {
    const v2 = await rawGet(`${a.url}/pypi/files/tinylib/${wheel('tinylib', '2.0')}`);
    expect(v2.status).toBe(403);
    expect(v2.body.toString()).toContain('tinylib 2.0 is outside the allowed range >=1,<2 (policy rule pypi.allow[0])');
    const other = await rawGet(`${a.url}/pypi/files/pinned/pinned-1.0-cp311-cp311-linux_x86_64.whl`);
    expect(other.status).toBe(403);
    expect(other.body.toString()).toContain('is not among the hashes pinned by policy rule pypi.allow[4]');
    const ok = await rawGet(`${a.url}/pypi/files/pinned/pinned-1.0-py3-none-any.whl`);
    expect(ok.body.toString()).toBe('pinned-a');
    const unhashed = await rawGet(`${a.url}/pypi/files/tinylib/${wheel('tinylib', '1.1')}`);
    expect(unhashed.status).toBe(403);
    expect(unhashed.body.toString()).toContain('no sha256');
    const recs = await records(a, 'name=tinylib&decision=deny');
    expect(recs.some((r) => r.version === '2.0' && r.rule === 'pypi.allow[0]')).toBe(true);
  });

  it('serves the PEP 658 metadata file verified against its advertised hash', async () => {
    const res = await rawGet(`${a.url}/pypi/files/tinylib/${wheel('tinylib', '1.0')}.metadata`);
    expect(res.status).toBe(200);
    expect(res.body.equals(md)).toBe(true);
    const none = await rawGet(`${a.url}/pypi/files/tinylib/tinylib-1.0.tar.gz.metadata`);
    expect(none.status).toBe(404);
  });

  it('never fetches a file from a host outside file_hosts', async () => {
    const res = await rawGet(`${a.url}/pypi/files/offsite/${wheel('offsite', '1.0')}`);
    expect(res.status).toBe(502);
    expect(res.body.toString()).toContain('not in pypi.file_hosts');
    expect(pub.count(`/files/${wheel('offsite', '1.0')}`)).toBe(0);
    const recs = await records(a, 'name=offsite');
    expect(recs[0].rule).toBe('pypi.file_hosts');
  });

  it('refuses an upstream redirect to a host outside file_hosts before any byte, and records the refusal with the request id', async () => {
    const res = await rawGet(`${a.url}/pypi/files/bounce/${wheel('bounce', '1.0')}`, { 'x-request-id': 'req-bounce-1' });
    expect(res.status).toBe(502);
    const recs = await records(a, 'name=bounce');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ decision: 'deny', requestId: 'req-bounce-1', client: '127.0.0.1' });
    expect(recs[0].rule).toMatch(/^pypi\.allow\[\d+\]$/);
    expect(recs[0].reason).toMatch(/localhost/);
  });

  it('rejects traversal and odd names in file URLs', async () => {
    for (const p of [
      'tinylib/..%2F..%2Fetc%2Fpasswd',
      'tinylib/..%5C..%5Cx.whl',
      'TinyLib/tinylib-1.0.tar.gz',
      'tinylib/a%00b.whl',
      'tinylib/' + 'a'.repeat(300) + '.whl',
      '..%2Ftinylib/x.whl',
    ]) {
      const res = await rawGet(`${a.url}/pypi/files/${p}`);
      expect(res.status, p).toBe(400);
    }
    // The URL parser resolves dot segments (also percent-encoded ones) before routing: no handler sees them.
    expect((await rawGet(`${a.url}/pypi/files/tinylib/%2e%2e`)).status).toBe(404);
    expect((await rawGet(`${a.url}/pypi/files/tinylib/../../../etc/passwd`)).status).toBe(404);
  });

  it('serves the last good page, marked stale, when the upstream is down or answers garbage; cached files keep working', async () => {
    await rawGet(`${a.url}/pypi/files/biglib/biglib-1.0-py3-none-any.whl`);
    await a.airlock.cache.idle();
    for (const mode of ['down', 'garbage', 'error-page'] as const) {
      pub.mode = mode;
      const res = await fetch(`${a.url}/pypi/simple/biglib/`, { headers: { accept: PIP_ACCEPT } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-airlock-stale')).toContain('upstream failed');
      expect((await res.json()).versions).toContain('1.0');
      const file = await rawGet(`${a.url}/pypi/files/biglib/biglib-1.0-py3-none-any.whl`);
      expect(file.complete).toBe(true);
      expect(sha256(file.body)).toBe(sha256(big));
    }
    pub.mode = 'down';
    // Never seen before (no page on record) and upstream down: a clear 502, not an empty page.
    const cold = await rawGet(`${a.url}/pypi/simple/coldpage/`);
    expect(cold.status).toBe(502);
    expect(cold.headers['x-airlock-stale']).toBeUndefined();
    expect(cold.body.toString()).toMatch(/public index answered 503/);
  });

  it('records a download that fails before its first byte (upstream down after the page was read)', async () => {
    const page = await fetch(`${a.url}/pypi/simple/coldpage/`, { headers: { accept: PIP_ACCEPT } });
    expect(page.status).toBe(200);
    pub.mode = 'down';
    const res = await rawGet(`${a.url}/pypi/files/coldpage/${wheel('coldpage', '1.0')}`);
    expect(res.status).toBe(502);
    await a.airlock.recorder.flush();
    const recs = await records(a, 'name=coldpage');
    expect(recs[0]).toMatchObject({ filename: wheel('coldpage', '1.0'), decision: 'error', cache: 'none' });
    expect(recs[0].reason).toMatch(/upstream answered 503/);
  });

  it('lists approved projects at the root and exposes health and metrics', async () => {
    const root = await (await fetch(`${a.url}/pypi/simple/`, { headers: { accept: PIP_ACCEPT } })).json();
    expect(root.projects.map((p: any) => p.name)).toEqual(['acme-tools', 'biglib', 'bounce', 'coldpage', 'offsite', 'pinned', 'tampered', 'tinylib']);
    expect((await fetch(`${a.url}/-/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${a.url}/-/metrics`)).text();
    expect(metrics).toMatch(/airlock_pulls_total\{ecosystem="pypi",cache="miss",decision="allow"\} \d+/);
    expect(metrics).toMatch(/airlock_refusals_total\{ecosystem="pypi",code="digest_mismatch"\} \d+/);
    // Bytes sent are counted as they go out: at least the big file, served cold and from the cache.
    const sent = (cache: string) => Number(new RegExp(`airlock_bytes_sent_total\\{ecosystem="pypi",cache="${cache}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    expect(sent('miss')).toBeGreaterThanOrEqual(big.length);
    expect(sent('hit')).toBeGreaterThanOrEqual(big.length);
  });
});
