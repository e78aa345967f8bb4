import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha1Git, sha256hex } from '../helpers/fake-hub.js';
import { rawGet, rawPath, records } from '../helpers/http.js';
import { safetensors } from '../helpers/model-files.js';
import { Authenticator } from '../../src/auth/tokens.js';

describe('Hugging Face front-end against a local Hub', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  const weights = safetensors({ w: { dtype: 'U8', shape: [600_000], data_offsets: [0, 600_000] } }, randomBytes(600_000));
  const config = Buffer.from(JSON.stringify({ model_type: 'gpt2', n_layer: 2 }));
  const tokenizer = Buffer.from('{"version":"1.0"}');
  const pickle = randomBytes(1000);
  const spaced = Buffer.from('spaces and subfolders\n');
  const evilSmall = Buffer.from('{"not": "what was listed"}');
  const evilBig = safetensors({ w: { dtype: 'U8', shape: [400_000], data_offsets: [0, 400_000] } }, randomBytes(400_000));
  let c1: string;
  let c2: string;
  let gpt2: string;
  let ds: string;
  let pr: string;
  let gated: string;
  let many: string;

  beforeAll(async () => {
    await hub.start();
    hub.pageSize = 3;
    c1 = hub.commit('model', 'acme/tiny', [
      { path: 'model.safetensors', bytes: weights, lfs: true },
      { path: 'config.json', bytes: config },
      { path: 'tokenizer.json', bytes: tokenizer },
      { path: 'pytorch_model.bin', bytes: pickle, lfs: true },
      { path: 'sub dir/read me.txt', bytes: spaced },
      { path: 'evil.json', bytes: evilSmall },
      { path: 'evil.safetensors', bytes: evilBig, lfs: true },
    ]);
    hub.tamper.add('evil.json');
    hub.tamper.add('evil.safetensors');
    gpt2 = hub.commit('model', 'gpt2', [{ path: 'config.json', bytes: Buffer.from('{"legacy": true}') }]);
    pr = hub.commit('model', 'gpt2', [{ path: 'config.json', bytes: Buffer.from('{"pr": 1}') }], ['refs/pr/1']);
    ds = hub.commit('dataset', 'acme/corpus', [{ path: 'data/train.parquet', bytes: randomBytes(5000), lfs: true }]);
    gated = hub.commit('model', 'acme/gated', [{ path: 'config.json', bytes: Buffer.from('{"gated": true}') }]);
    many = hub.commit(
      'model',
      'acme/many',
      Array.from({ length: 1005 }, (_, i) => ({ path: `shards/f${String(i).padStart(4, '0')}.json`, bytes: Buffer.from(String(i)) })),
    );
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  hf:
    allow:
      - repo: acme/tiny
        refs: { main: "${c1}" }
        files: ["*.safetensors", "*.json", "*.txt"]
      - repo: gpt2
        commits: ["${gpt2}"]
        refs: { "refs/pr/1": "${pr}" }
      - repo: acme/corpus
        type: dataset
        refs: { main: "${ds}" }
      - repo: acme/many
        refs: { main: "${many}" }
    deny:
      - repo: acme/tiny
        files: ["evil-*"]
        reason: known bad
`);
  });

  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  const hf = (p: string) => `${a.url}/hf/${p}`;

  it('answers repo info at the pinned commit, listing only allowed files, without Xet fields', async () => {
    const res = await fetch(hf('api/models/acme/tiny/revision/main?blobs=true'));
    expect(res.status).toBe(200);
    const info = await res.json();
    expect(info.id).toBe('acme/tiny');
    expect(info.sha).toBe(c1);
    expect(info.xetEnabled).toBeUndefined();
    expect(info.pipeline_tag).toBe('text-generation');
    const names = info.siblings.map((s: { rfilename: string }) => s.rfilename).sort();
    expect(names).toEqual(['config.json', 'evil.json', 'evil.safetensors', 'model.safetensors', 'sub dir/read me.txt', 'tokenizer.json']);
    const w = info.siblings.find((s: { rfilename: string }) => s.rfilename === 'model.safetensors');
    expect(w.lfs).toEqual({ sha256: sha256hex(weights), size: weights.length, pointerSize: expect.any(Number) });
    const cfg = info.siblings.find((s: { rfilename: string }) => s.rfilename === 'config.json');
    expect(cfg.blobId).toBe(sha1Git(config));
    // The default revision (HEAD, as @huggingface/hub asks) is the pinned main.
    expect((await (await fetch(hf('api/models/acme/tiny'))).json()).sha).toBe(c1);
  });

  it('keeps answering the pinned commit for main after main moves upstream', async () => {
    const c3 = hub.commit('model', 'acme/tiny', [{ path: 'config.json', bytes: Buffer.from('{"backdoor": true}') }]);
    expect(hub.repos.get('model:acme/tiny')!.refs.get('main')).toBe(c3);
    const info = await (await fetch(hf('api/models/acme/tiny/revision/main'))).json();
    expect(info.sha).toBe(c1);
    const res = await fetch(hf('acme/tiny/resolve/main/config.json'));
    expect(res.headers.get('x-repo-commit')).toBe(c1);
    expect(Buffer.from(await res.arrayBuffer()).equals(config)).toBe(true);
    expect(hub.count('revision:acme/tiny:main')).toBe(0);
    // The new commit itself is not approved.
    const direct = await fetch(hf(`acme/tiny/resolve/${c3}/config.json`));
    expect(direct.status).toBe(404);
    expect(direct.headers.get('x-error-code')).toBe('RevisionNotFound');
  });

  it('answers HEAD on resolve from metadata with the headers huggingface_hub needs', async () => {
    const before = hub.count(`cdn:${sha256hex(weights)}`);
    const res = await fetch(hf('acme/tiny/resolve/main/model.safetensors'), { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-repo-commit')).toBe(c1);
    expect(res.headers.get('etag')).toBe(`"${sha256hex(weights)}"`);
    expect(res.headers.get('x-linked-etag')).toBe(`"${sha256hex(weights)}"`);
    expect(res.headers.get('x-linked-size')).toBe(String(weights.length));
    expect(res.headers.get('content-length')).toBe(String(weights.length));
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('x-xet-hash')).toBeNull();
    expect(res.headers.get('link')).toBeNull();
    expect(hub.count(`cdn:${sha256hex(weights)}`)).toBe(before);
    const small = await fetch(hf('acme/tiny/resolve/main/config.json'), { method: 'HEAD' });
    expect(small.headers.get('etag')).toBe(`"${sha1Git(config)}"`);
  });

  it('answers Range bytes=0-0 with 206 and the total size, then streams the verified file', async () => {
    const first = await rawGet(hf('acme/tiny/resolve/main/model.safetensors'), { range: 'bytes=0-0' });
    expect(first.status).toBe(206);
    expect(first.headers['content-range']).toBe(`bytes 0-0/${weights.length}`);
    expect(first.body.equals(weights.subarray(0, 1))).toBe(true);
    const full = await rawGet(hf('acme/tiny/resolve/main/model.safetensors'));
    expect(full.status).toBe(200);
    expect(full.complete).toBe(true);
    expect(full.body.equals(weights)).toBe(true);
    expect(hub.count(`cdn:${sha256hex(weights)}`)).toBe(1);
    expect(hub.cdnAuth.every((h) => h === undefined)).toBe(true);
    const resume = await rawGet(hf('acme/tiny/resolve/main/model.safetensors'), { range: 'bytes=500000-' });
    expect(resume.status).toBe(206);
    expect(resume.body.equals(weights.subarray(500000))).toBe(true);
  });

  it('verifies ordinary files against their git blob id', async () => {
    const res = await rawGet(hf('acme/tiny/resolve/main/tokenizer.json'));
    expect(res.status).toBe(200);
    expect(res.body.equals(tokenizer)).toBe(true);
    const part = await rawGet(hf('acme/tiny/resolve/main/tokenizer.json'), { range: 'bytes=1-3' });
    expect(part.status).toBe(206);
    expect(part.body.toString()).toBe(tokenizer.subarray(1, 4).toString());
    const bad = await fetch(hf('acme/tiny/resolve/main/evil.json'));
    expect(bad.status).toBe(502);
    expect(bad.headers.get('x-error-message')).toMatch(/git blob id .* expected/);
    const recs = await records(a, 'ecosystem=hf&decision=deny');
    expect(recs.some((r) => r.filename === 'evil.json' && /nothing was cached/.test(r.reason))).toBe(true);
  });

  it('never delivers a tampered LFS file whole, and caches nothing', async () => {
    const res = await rawGet(hf('acme/tiny/resolve/main/evil.safetensors'));
    // Either the transfer had started (the header was judged first) and is cut before its end,
    // or the digest failed before any byte went out and the client gets the error itself.
    if (res.status === 200) {
      expect(res.complete).toBe(false);
      expect(res.body.length).toBeLessThan(evilBig.length);
    } else {
      expect(res.status).toBe(502);
      expect(String(res.headers['x-error-message'])).toMatch(/expected sha256/);
    }
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(sha256hex(evilBig))).toBeUndefined();
    // What was judged were not the expected bytes: no verdict is kept for the file they pretended to be.
    expect(await a.airlock.meta.getScan(sha256hex(evilBig))).toBeFalsy();
    expect(readdirSync(join(a.dir, 'data', 'spool'))).toEqual([]);
    const recs = await records(a, 'ecosystem=hf&decision=deny');
    expect(recs.some((r) => r.filename === 'evil.safetensors' && /expected sha256/.test(r.reason))).toBe(true);
  });

  it('refuses in the Hub error contract: RepoNotFound, RevisionNotFound, EntryNotFound', async () => {
    let res = await fetch(hf('api/models/acme/gated/revision/main'));
    expect(res.status).toBe(404);
    expect(res.headers.get('x-error-code')).toBe('RepoNotFound');
    expect(res.headers.get('x-error-message')).toMatch(/blocked by mirror policy: acme\/gated is not on the Hugging Face allowlist/);
    expect((await res.json()).error).toMatch(/not on the Hugging Face allowlist/);
    res = await fetch(hf('acme/tiny/resolve/v2/config.json'));
    expect(res.headers.get('x-error-code')).toBe('RevisionNotFound');
    res = await fetch(hf('acme/tiny/resolve/main/pytorch_model.bin'));
    expect(res.status).toBe(404);
    expect(res.headers.get('x-error-code')).toBe('EntryNotFound');
    expect(res.headers.get('x-repo-commit')).toBe(c1);
    expect(res.headers.get('x-error-message')).toMatch(/not among the files allowed/);
    res = await fetch(hf('acme/tiny/resolve/main/adapter_config.json'));
    expect(res.headers.get('x-error-code')).toBe('EntryNotFound');
    expect(res.headers.get('x-repo-commit')).toBe(c1);
    void gated;
  });

  it('handles one-segment ids, datasets, refs/pr/N in both encodings, spaces and subfolders', async () => {
    expect((await (await fetch(hf('api/models/gpt2/revision/' + gpt2))).json()).sha).toBe(gpt2);
    const legacy = await fetch(hf(`gpt2/resolve/${gpt2}/config.json`));
    expect(await legacy.text()).toBe('{"legacy": true}');
    const enc = await fetch(hf('gpt2/resolve/refs%2Fpr%2F1/config.json'));
    expect(enc.headers.get('x-repo-commit')).toBe(pr);
    expect(await enc.text()).toBe('{"pr": 1}');
    const rawTree = await fetch(hf('api/models/gpt2/tree/refs/pr/1?recursive=true'));
    expect((await rawTree.json()).map((e: { path: string }) => e.path)).toEqual(['config.json']);
    const dsFile = await rawGet(hf('datasets/acme/corpus/resolve/main/data/train.parquet'));
    expect(dsFile.status).toBe(200);
    expect((await (await fetch(hf('api/datasets/acme/corpus/revision/main'))).json()).sha).toBe(ds);
    const spacedRes = await fetch(hf('acme/tiny/resolve/main/sub%20dir/read%20me.txt'));
    expect(Buffer.from(await spacedRes.arrayBuffer()).equals(spaced)).toBe(true);
    const sub = await fetch(hf('api/models/acme/tiny/tree/main/sub%20dir'));
    expect((await sub.json()).map((e: { path: string }) => e.path)).toEqual(['sub dir/read me.txt']);
  });

  it('pages the tree with Link headers pointing back at Airlock, without Xet fields', async () => {
    let url: string | undefined = hf('api/models/acme/many/tree/main?recursive=true&expand=false');
    const paths: string[] = [];
    let pages = 0;
    while (url) {
      const res: Response = await fetch(url);
      expect(res.status).toBe(200);
      const page = await res.json();
      paths.push(...page.map((e: { path: string }) => e.path));
      const link: string | null = res.headers.get('link');
      url = link ? /<([^>]+)>;\s*rel="next"/.exec(link)![1] : undefined;
      if (url) expect(url.startsWith(`${a.url}/hf/api/models/acme/many/tree/main?`)).toBe(true);
      pages++;
    }
    expect(pages).toBe(2);
    expect(paths).toHaveLength(1006);
    const tiny = await (await fetch(hf('api/models/acme/tiny/tree/main?recursive=true'))).json();
    expect(tiny.some((e: { xetHash?: string }) => e.xetHash)).toBe(false);
    const w = tiny.find((e: { path: string }) => e.path === 'model.safetensors');
    expect(w.lfs.oid).toBe(sha256hex(weights));
    expect(tiny.some((e: { path: string }) => e.path === 'pytorch_model.bin')).toBe(false);
  });

  it('answers paths-info with form and JSON bodies', async () => {
    const form = await fetch(hf(`api/models/acme/tiny/paths-info/${c1}`), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'paths=config.json&paths=pytorch_model.bin&paths=nope&expand=true',
    });
    expect((await form.json()).map((e: { path: string }) => e.path)).toEqual(['config.json']);
    const js = await fetch(hf('api/models/acme/tiny/paths-info/main'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ paths: ['model.safetensors'], expand: true }),
    });
    const [e] = await js.json();
    expect(e.lfs.oid).toBe(sha256hex(weights));
    expect(e.xetHash).toBeUndefined();
  });

  it('lists pinned refs, hides Xet token routes and refuses odd paths', async () => {
    const refs = await (await fetch(hf('api/models/gpt2/refs'))).json();
    expect(refs.branches).toEqual([{ name: 'refs/pr/1', ref: 'refs/pr/1', targetCommit: pr }]);
    const xet = await fetch(hf(`api/models/acme/tiny/xet-read-token/${c1}`));
    expect(xet.status).toBe(404);
    for (const p of ['/hf/acme/tiny/resolve/main/../../etc/passwd', '/hf/acme/tiny/resolve/main/a/%2e%2e/b', '/hf/acme/tiny/resolve/main/']) {
      const r = await rawPath(a.port, p);
      expect(r.status, p).toBe(400);
    }
    expect((await fetch(hf('spaces/acme/app/resolve/main/app.py'))).status).toBe(404);
    // /raw/ of an LFS file is its pointer, rebuilt and checked against the tree's git blob id.
    const ptr = await fetch(hf('acme/tiny/raw/main/model.safetensors'));
    expect(ptr.status).toBe(200);
    const text = await ptr.text();
    expect(text).toBe(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256hex(weights)}\nsize ${weights.length}\n`);
    expect(sha1Git(Buffer.from(text))).toBe(ptr.headers.get('etag')!.replace(/"/g, ''));
    expect((await fetch(hf('acme/tiny/resolve/main/config.json'), { method: 'DELETE' })).status).toBe(405);
  });

  it('keeps serving pinned, cached content while the Hub is down', async () => {
    await hub.stop();
    try {
      const res = await rawGet(hf('acme/tiny/resolve/main/model.safetensors'));
      expect(res.status).toBe(200);
      expect(res.body.equals(weights)).toBe(true);
      const info = await fetch(hf('api/models/acme/tiny/revision/main'));
      expect((await info.json()).sha).toBe(c1);
    } finally {
      await hub.start();
    }
  });
});

describe('Hugging Face upstream token', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  let commit: string;
  beforeAll(async () => {
    await hub.start();
    commit = hub.commit('model', 'org/gated', [
      { path: 'config.json', bytes: Buffer.from('{}') },
      { path: 'w.safetensors', bytes: safetensors({ w: { dtype: 'U8', shape: [1000], data_offsets: [0, 1000] } }, randomBytes(1000)), lfs: true },
    ]);
    hub.token = 'hf_service_token';
    process.env.AIRLOCK_TEST_HF_TOKEN = 'hf_service_token';
    a = await startAirlock(`
${hfUpstream(hub, '  token_env: AIRLOCK_TEST_HF_TOKEN\n')}policy:
  hf:
    allow:
      - { repo: org/gated, refs: { main: "${commit}" } }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  it('sends only the service token upstream, never the client token, and never to the CDN', async () => {
    const client = await new Authenticator(a.airlock.meta).create('client', false);
    const res = await rawGet(`${a.url}/hf/org/gated/resolve/main/w.safetensors`, { authorization: `Bearer ${client}` });
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(hub.authSeen.length).toBeGreaterThan(0);
    expect(hub.authSeen.every((h) => h === 'Bearer hf_service_token')).toBe(true);
    expect(hub.authSeen.some((h) => h?.includes(client))).toBe(false);
    expect(hub.cdnAuth).toEqual([undefined]);
  });
});
