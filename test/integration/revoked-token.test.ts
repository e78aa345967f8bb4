import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FakeRegistry, makeImage } from '../helpers/fake-registry.js';

const OCI_ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

/**
 * Identity is looked up once per request (src/app.ts: the fast path's finding is reused by the
 * router): a token revoked while every route is warm (a PyPI page and a manifest the fast path
 * answers, files, blobs, Hub files) is refused on the next request of each, and no request
 * carries another's identity.
 */
describe('a revoked token is refused on every route, warm or not', () => {
  const pub = new FakeIndex();
  const reg = new FakeRegistry();
  const hub = new FakeHub();
  const img = makeImage([randomBytes(2000)]);
  let a: TestAirlock;
  let commit: string;
  const wheel = 'tinylib-1.0-py3-none-any.whl';

  beforeAll(async () => {
    await Promise.all([pub.start(), reg.start(), hub.start()]);
    pub.add('tinylib', { filename: wheel, bytes: randomBytes(1000) });
    reg.push('team/app', img, 'v1');
    commit = hub.commit('model', 'acme/tiny', [{ path: 'config.json', bytes: Buffer.from('{"model_type": "gpt2"}') }]);
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
  index_ttl: 3600
oci:
  default_registry: reg.test
  registries:
    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }
${hfUpstream(hub)}policy:
  pypi:
    allow:
      - { name: tinylib }
  oci:
    allow:
      - repository: reg.test/team/app
        tags: { v1: "${img.digest}" }
  hf:
    allow:
      - repo: acme/tiny
        refs: { main: "${commit}" }
auth: { pypi: token, hf: token, oci: token, admin: open }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await Promise.all([pub.stop(), reg.stop(), hub.stop()]);
  });

  it('serves every route under a good token, then refuses each once it is revoked (and a good token after is served)', async () => {
    const auth = new Authenticator(a.airlock.meta);
    const secret = await auth.create('ci-runner', false);
    const other = await auth.create('other-runner', false);
    const bearer = (s: string) => ({ authorization: `Bearer ${s}` });
    const basic = (s: string) => ({ authorization: `Basic ${Buffer.from(`__token__:${s}`).toString('base64')}` });
    const page = await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json', ...basic(secret) } });
    expect(page.status).toBe(200);
    const fileUrl = new URL(((await page.json()) as { files: { url: string }[] }).files[0].url, `${a.url}/pypi/simple/tinylib/`).href;
    const routes: [string, string, Record<string, string>, (s: string) => Record<string, string>][] = [
      ['PyPI page (fast path)', `${a.url}/pypi/simple/tinylib/`, { accept: 'application/vnd.pypi.simple.v1+json' }, basic],
      ['PyPI file', fileUrl, {}, basic],
      ['OCI manifest (fast path)', `${a.url}/v2/team/app/manifests/v1`, { accept: OCI_ACCEPT }, bearer],
      ['OCI blob', `${a.url}/v2/team/app/blobs/sha256:${createHash('sha256').update(img.config).digest('hex')}`, {}, bearer],
      ['Hub file', `${a.url}/hf/acme/tiny/resolve/main/config.json`, {}, bearer],
      ['Hub API', `${a.url}/hf/api/models/acme/tiny/revision/main`, {}, bearer],
    ];
    const status = async (url: string, headers: Record<string, string>, method = 'GET') => {
      const r = await fetch(url, { method, headers, redirect: 'manual' });
      await r.arrayBuffer();
      return r.status;
    };
    // Warm, twice each: the second of a page and a manifest is the fast path's.
    for (const [what, url, headers, cred] of routes)
      for (let i = 0; i < 2; i++) expect([what, await status(url, { ...headers, ...cred(secret) })]).toEqual([what, 200]);
    const tried: boolean[] = [];
    const serve = a.airlock.fast.serve.bind(a.airlock.fast);
    a.airlock.fast.serve = async (req, res) => {
      const done = await serve(req, res);
      tried.push(done);
      return done;
    };
    expect(await a.airlock.meta.revokeToken('ci-runner')).toBe(true);
    for (const [what, url, headers, cred] of routes) {
      expect([what, await status(url, { ...headers, ...cred(secret) })]).toEqual([what, 401]);
      expect([what, await status(url, { ...headers, ...cred(secret) }, 'HEAD')]).toEqual([what, 401]);
      // Interleaved with another client's good token on the same route: each request its own identity.
      const [bad, good] = await Promise.all([status(url, { ...headers, ...cred(secret) }), status(url, { ...headers, ...cred(other) })]);
      expect([what, bad, good]).toEqual([what, 401, 200]);
    }
    // The fast path tried the page and the manifest, and answered only the other token's.
    expect(tried.filter((t) => t)).toHaveLength(2);
    expect(tried.filter((t) => !t)).toHaveLength(4);
  });
});
