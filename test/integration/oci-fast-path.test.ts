import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { AirlockError } from '../../src/core/errors.js';
import { verifyChain } from '../../src/core/chain.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeRegistry, makeImage } from '../helpers/fake-registry.js';
import { records } from '../helpers/http.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

/**
 * The fast path for warm OCI manifest GETs (src/oci/fast.ts) answers outside the router: the
 * router's bytes, headers and pull row, the row committed before the answer, and never what the
 * router would refuse or answer otherwise.
 */
describe('fast path for warm OCI manifests', () => {
  const reg = new FakeRegistry();
  let a: TestAirlock;
  const v1 = makeImage([randomBytes(2000)]);
  const v2 = makeImage([randomBytes(3000)]);
  const seen: boolean[] = [];
  const config = (tag: string) => `
oci:
  default_registry: reg.test
  registries:
    reg.test: { url: ${reg.url} }
policy:
  oci:
    allow:
      - repository: reg.test/team/app
        digests: ["${v1.digest}"]
        tags: { v1: "${tag}" }
`;

  beforeAll(async () => {
    await reg.start();
    reg.push('team/app', v1, 'v1');
    reg.push('team/app', v2, 'v2');
    a = await startAirlock(config(v1.digest));
    const serve = a.airlock.fast.serve.bind(a.airlock.fast);
    a.airlock.fast.serve = async (req, res) => {
      const done = await serve(req, res);
      seen.push(done);
      return done;
    };
  });
  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  const get = (ref: string, headers: Record<string, string> = {}, query = '') =>
    fetch(`${a.url}/v2/team/app/manifests/${ref}${query}`, { headers: { accept: ACCEPT, ...headers } });
  const answer = async (r: Response) => ({
    status: r.status,
    body: Buffer.from(await r.arrayBuffer()),
    headers: Object.fromEntries(
      ['content-type', 'content-length', 'docker-content-digest', 'etag', 'x-airlock-cache', 'docker-distribution-api-version'].map((h) => [
        h,
        r.headers.get(h),
      ]),
    ),
  });

  it('answers a warm GET by tag and by digest with the router answer and the router row, committed first', async () => {
    // The first GET fetches the manifest upstream: the router's work.
    expect((await get('v1')).status).toBe(200);
    for (const ref of ['v1', v1.digest]) {
      seen.length = 0;
      const id = `fast-${ref.length}`;
      const fast = await answer(await get(ref, { 'x-request-id': id }));
      expect(seen).toEqual([true]);
      // The row is on record when the client has the manifest (no flush: committed before the answer).
      const rows = (await (await fetch(`${a.url}/-/records?limit=50`)).json()).records as any[];
      const row = rows.find((r) => r.requestId === id);
      expect(row).toMatchObject({
        ecosystem: 'oci',
        name: 'reg.test/team/app',
        version: ref,
        filename: 'manifest',
        sha256: v1.digest.slice(7),
        size: v1.manifest.length,
        cache: 'hit',
        decision: 'allow',
        client: '127.0.0.1',
      });
      // ?ns= keeps a request off the fast path (not a candidate): the router's answer and row to compare with.
      const routed = await answer(await get(ref, { 'x-request-id': `${id}-routed` }, '?ns=reg.test'));
      expect(seen).toEqual([true]);
      expect(fast).toEqual(routed);
      expect(fast.body.equals(v1.manifest)).toBe(true);
      const routedRow = (await records(a, 'limit=50')).find((r) => r.requestId === `${id}-routed`);
      const strip = (r: any) => ({ ...r, id: 0, ts: 0, requestId: '', hash: '', prevHash: '' });
      expect(strip(row)).toEqual(strip(routedRow));
    }
  });

  it('leaves HEAD, If-None-Match, an Accept without the type, unpinned tags and a failed record to the router', async () => {
    expect((await get('v1')).status).toBe(200);
    seen.length = 0;
    expect((await get('v1', { 'if-none-match': `"${v1.digest}"` })).status).toBe(304);
    expect((await get('v1', { accept: 'application/vnd.docker.distribution.manifest.v2+json' })).status).toBe(404);
    expect((await get('v2')).status).toBe(403);
    expect((await get(v2.digest)).status).toBe(403);
    expect(seen).toEqual([false, false, false, false]);
    // HEAD is never a candidate.
    expect((await fetch(`${a.url}/v2/team/app/manifests/v1`, { method: 'HEAD', headers: { accept: ACCEPT } })).status).toBe(200);
    expect(seen).toHaveLength(4);
    // A record that cannot be written: the fast path sends nothing, the router answers the failure.
    const recorder = a.airlock.recorder;
    const recordServed = recorder.recordServed.bind(recorder);
    recorder.recordServed = () => Promise.reject(new AirlockError('RECORD_FAILED', 'the pull record could not be written (disk full)'));
    try {
      const r = await get('v1');
      expect(r.status).toBeGreaterThanOrEqual(500);
      expect(Buffer.from(await r.arrayBuffer()).includes(v1.manifest)).toBe(false);
      expect(seen).toEqual([false, false, false, false, false]);
    } finally {
      recorder.recordServed = recordServed;
    }
    expect((await get('v1')).status).toBe(200);
    expect(seen.at(-1)).toBe(true);
  });

  it('follows a policy reload at once: a re-pinned tag serves the new digest, an unpinned one is refused by the router', async () => {
    expect((await get('v1')).status).toBe(200);
    const before = readFileSync(a.configFile, 'utf8');
    try {
      writeFileSync(a.configFile, config(v2.digest));
      expect(a.airlock.reloadPolicy()).toBe(true);
      seen.length = 0;
      const moved = await get('v1');
      expect(moved.status).toBe(200);
      expect(moved.headers.get('docker-content-digest')).toBe(v2.digest);
      // v2's manifest was not held yet: the router fetched it; the next GET is the fast path's.
      expect(seen).toEqual([false]);
      expect((await get('v1')).headers.get('docker-content-digest')).toBe(v2.digest);
      expect(seen).toEqual([false, true]);
      writeFileSync(a.configFile, before.replace(/tags: \{ v1: "[^"]+" \}/, 'tags: {}'));
      expect(a.airlock.reloadPolicy()).toBe(true);
      expect((await get('v1')).status).toBe(403);
      expect(seen).toEqual([false, true, false]);
    } finally {
      writeFileSync(a.configFile, before);
      expect(a.airlock.reloadPolicy()).toBe(true);
    }
  });

  it('follows a reload that unpins a digest: the warm digest GET is refused by the router at once, GET and HEAD', async () => {
    expect((await get(v1.digest)).status).toBe(200);
    seen.length = 0;
    expect((await get(v1.digest)).status).toBe(200);
    expect(seen).toEqual([true]);
    const before = readFileSync(a.configFile, 'utf8');
    try {
      // v2 pinned in v1's place: v1 is no longer allowed by digest or by tag.
      writeFileSync(a.configFile, config(v2.digest).replace(v1.digest, v2.digest));
      expect(a.airlock.reloadPolicy()).toBe(true);
      const r = await get(v1.digest);
      expect(r.status).toBe(403);
      expect(Buffer.from(await r.arrayBuffer()).includes(v1.manifest)).toBe(false);
      expect((await fetch(`${a.url}/v2/team/app/manifests/${v1.digest}`, { method: 'HEAD', headers: { accept: ACCEPT } })).status).toBe(403);
      expect(seen).toEqual([true, false]);
    } finally {
      writeFileSync(a.configFile, before);
      expect(a.airlock.reloadPolicy()).toBe(true);
    }
    expect((await get(v1.digest)).status).toBe(200);
  });

  it('gives each of many concurrent GETs its own row, and the chain verifies', async () => {
    expect((await get('v1')).status).toBe(200);
    const tag = `many-${Date.now()}`;
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => get('v1', { 'x-request-id': `${tag}-${i}` })));
    for (const r of answers) {
      expect(r.status).toBe(200);
      expect(Buffer.from(await r.arrayBuffer()).equals(v1.manifest)).toBe(true);
    }
    const rows = (await records(a, 'limit=1000')).filter((r) => String(r.requestId).startsWith(tag));
    expect(rows).toHaveLength(200);
    const report = await verifyChain(a.airlock.meta);
    expect(report.problem).toBeUndefined();
    expect(report.rows).toBeGreaterThanOrEqual(200);
  });
  it('under client tokens: names the token in the row, and leaves a missing or wrong token to the router (401, looked up once)', async () => {
    const t = await startAirlock(`${config(v1.digest)}auth: { oci: token, admin: open }\n`);
    try {
      const secret = await new Authenticator(t.airlock.meta).create('ci-runner', false);
      const tried: boolean[] = [];
      const serve = t.airlock.fast.serve.bind(t.airlock.fast);
      t.airlock.fast.serve = async (req, res) => {
        const done = await serve(req, res);
        tried.push(done);
        return done;
      };
      const lookups = { n: 0 };
      // Token lookups, at the store (every check goes through it).
      const meta = t.airlock.meta;
      const findToken = meta.findToken.bind(meta);
      meta.findToken = (hash: string) => (lookups.n++, findToken(hash));
      const pull = (auth?: string) =>
        fetch(`${t.url}/v2/team/app/manifests/v1`, { headers: { accept: ACCEPT, 'x-request-id': 'tok-1', ...(auth ? { authorization: auth } : {}) } });
      expect((await pull(`Bearer ${secret}`)).status).toBe(200); // the router's first fetch
      expect((await pull(`Bearer ${secret}`)).status).toBe(200);
      expect(tried).toEqual([false, true]);
      expect(lookups.n).toBe(2);
      const rows = (await records(t, 'limit=10')).filter((r) => r.requestId === 'tok-1');
      expect(rows.map((r) => r.client)).toEqual(['ci-runner@127.0.0.1', 'ci-runner@127.0.0.1']);
      expect((await pull()).status).toBe(401);
      expect((await pull('Bearer not-a-token')).status).toBe(401);
      expect(tried).toEqual([false, true, false, false]);
      // One lookup for the wrong token (none for no token): the router reuses the fast path's.
      expect(lookups.n).toBe(3);
    } finally {
      await t.stop();
    }
  });
});
