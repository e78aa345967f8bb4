import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { records } from '../helpers/http.js';

const PIP_ACCEPT = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01';

/**
 * The fast path for warm PyPI pages (src/http/fast.ts) answers outside the router: it must give
 * the router's answer, byte for byte, and never serve what the router would refuse.
 */
describe('fast path for warm PyPI pages', () => {
  const pub = new FakeIndex();
  let anon: TestAirlock;
  let tokens: TestAirlock;
  /** Every fast-path attempt of an instance, and whether it answered. */
  const tried = new Map<TestAirlock, boolean[]>();
  const watch = (a: TestAirlock) => {
    const seen: boolean[] = [];
    tried.set(a, seen);
    const serve = a.airlock.fast.serve.bind(a.airlock.fast);
    a.airlock.fast.serve = async (req, res) => {
      const done = await serve(req, res);
      seen.push(done);
      return done;
    };
    return seen;
  };
  const wheel = (name: string, v: string) => `${name.replace(/-/g, '_')}-${v}-py3-none-any.whl`;
  const config = (extra: string) => `
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
  index_ttl: 3600
policy:
  pypi:
    allow:
      - { name: tinylib, versions: ">=1,<2" }
${extra}`;

  beforeAll(async () => {
    await pub.start();
    pub
      .add('tinylib', { filename: wheel('tinylib', '1.0'), bytes: randomBytes(1000) })
      .add('tinylib', { filename: wheel('tinylib', '2.0'), bytes: randomBytes(1000) })
      .add('otherlib', { filename: wheel('otherlib', '1.0'), bytes: randomBytes(1000) });
    anon = await startAirlock(config(''));
    tokens = await startAirlock(config('auth: { pypi: token, admin: open }\n'));
  });
  afterAll(async () => {
    await anon?.stop();
    await tokens?.stop();
    await pub.stop();
  });

  const get = (a: TestAirlock, path: string, headers: Record<string, string> = {}) => fetch(`${a.url}${path}`, { headers: { accept: PIP_ACCEPT, ...headers } });
  const answer = async (r: Response) => ({
    status: r.status,
    body: Buffer.from(await r.arrayBuffer()),
    headers: Object.fromEntries(['content-type', 'content-length', 'content-encoding', 'vary', 'cache-control'].map((h) => [h, r.headers.get(h)])),
  });

  it('answers a warm page with the bytes and headers the router gives, for each format and encoding', async () => {
    const seen = watch(anon);
    // The first request fetches and parses the page: the router's work.
    expect((await get(anon, '/pypi/simple/tinylib/')).status).toBe(200);
    for (const [accept, enc] of [
      [PIP_ACCEPT, 'gzip'],
      [PIP_ACCEPT, ''],
      ['text/html', 'gzip'],
      ['text/html', ''],
    ]) {
      seen.length = 0;
      const h = { accept, ...(enc ? { 'accept-encoding': enc } : { 'accept-encoding': 'identity' }) };
      const fast = await answer(await get(anon, '/pypi/simple/tinylib/', h));
      expect(seen).toEqual([true]);
      // A query string keeps a request off the fast path (not even a candidate): the router's answer to compare with.
      const routed = await answer(await get(anon, '/pypi/simple/tinylib/?via=router', h));
      expect(seen).toEqual([true]);
      expect(fast).toEqual(routed);
      expect(fast.status).toBe(200);
      expect(fast.body.toString('latin1')).not.toBe('');
      expect(fast.headers['content-encoding']).toBe(enc ? 'gzip' : null);
    }
    // The filtered page: 2.0 is outside the allowed range on both paths.
    const page = await (await get(anon, '/pypi/simple/tinylib/', { 'accept-encoding': 'identity' })).json();
    expect(page.files.map((f: { filename: string }) => f.filename)).toEqual([wheel('tinylib', '1.0')]);
  });

  it('leaves refusals, redirects and cold pages to the router', async () => {
    const seen = watch(anon);
    const notAllowed = await get(anon, '/pypi/simple/otherlib/');
    expect(notAllowed.status).toBe(403);
    expect(await notAllowed.text()).toMatch(/not on the PyPI allowlist/);
    const unnormalised = await fetch(`${anon.url}/pypi/simple/TinyLib/`, { redirect: 'manual', headers: { accept: PIP_ACCEPT } });
    expect(unnormalised.status).toBe(301);
    expect((await get(anon, '/pypi/simple/tinylib/', { accept: 'image/png' })).status).toBe(406);
    expect(seen.every((done) => !done)).toBe(true);
    expect(seen.length).toBe(3);
  });

  it('refuses a warm page once a policy reload denies it: the fast path never serves what the router refuses', async () => {
    expect((await get(anon, '/pypi/simple/tinylib/')).status).toBe(200);
    const seen = watch(anon);
    const before = readFileSync(anon.configFile, 'utf8');
    writeFileSync(
      anon.configFile,
      before.replace('- { name: tinylib, versions: ">=1,<2" }', '- { name: otherlib }\n    deny:\n      - { name: tinylib, reason: "withdrawn" }'),
    );
    try {
      expect(anon.airlock.reloadPolicy()).toBe(true);
      const denied = await get(anon, '/pypi/simple/tinylib/');
      expect(denied.status).toBe(403);
      expect(await denied.text()).toMatch(/denied by policy rule .*withdrawn/);
      expect(seen).toEqual([false]);
    } finally {
      writeFileSync(anon.configFile, before);
      expect(anon.airlock.reloadPolicy()).toBe(true);
    }
    expect((await get(anon, '/pypi/simple/tinylib/')).status).toBe(200);
    expect(seen).toEqual([false, true]);
  });

  it('counts its answers in the request metric', async () => {
    const count = async () =>
      Number(/airlock_http_requests_total\{ecosystem="pypi",status="2xx"\} (\d+)/.exec(await (await fetch(`${anon.url}/-/metrics`)).text())?.[1] ?? 0);
    const before = await count();
    const seen = watch(anon);
    for (let i = 0; i < 3; i++) expect((await get(anon, '/pypi/simple/tinylib/')).status).toBe(200);
    expect(seen).toEqual([true, true, true]);
    expect(await count()).toBe(before + 3);
  });

  it('checks identity as the router does: no token and a wrong token are refused by the router, and the wrong one recorded', async () => {
    const secret = await new Authenticator(tokens.airlock.meta).create('ci-runner', false);
    const basic = (s: string) => ({ authorization: `Basic ${Buffer.from(`__token__:${s}`).toString('base64')}` });
    // Warm the page with a good token (the router's first fetch).
    expect((await get(tokens, '/pypi/simple/tinylib/', basic(secret))).status).toBe(200);
    const seen = watch(tokens);

    const none = await get(tokens, '/pypi/simple/tinylib/');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Basic realm="airlock"');
    const wrong = await get(tokens, '/pypi/simple/tinylib/', basic('not-a-token'));
    expect(wrong.status).toBe(401);
    expect(seen).toEqual([false, false]);
    const rows = await records(tokens, 'decision=deny');
    expect(rows.filter((r) => r.code === 'bad_token' && r.name === '/pypi/simple/tinylib/')).toHaveLength(1);

    // Repeated credentials: the fast path declines, the router decides (it reads them joined).
    const twice = (first: string, second: string) =>
      new Promise<number>((resolve, reject) => {
        const headers = ['host', `127.0.0.1:${tokens.port}`, 'accept', PIP_ACCEPT, 'authorization', first, 'authorization', second];
        const req = request(
          { host: '127.0.0.1', port: tokens.port, path: '/pypi/simple/tinylib/', headers: headers as unknown as Record<string, string> },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await twice(`Bearer ${secret}`, 'Bearer not-a-token')).toBe(401);
    expect(await twice(basic(secret).authorization, basic('x').authorization)).toBe(200);
    expect(seen).toEqual([false, false, false, false]);

    const good = await get(tokens, '/pypi/simple/tinylib/', basic(secret));
    expect(good.status).toBe(200);
    expect(seen).toEqual([false, false, false, false, true]);
  });
});
