/**
 * Model signatures at the Hub front-end (issue 26, item 5): the real model_signing fixtures (keyless, key and
 * certificate modes; test/fixtures/signatures/models, see its SOURCES.md) served by a local Hub as pinned
 * commits, behind `require: signed` rules. Signed snapshots are served; every file of an unsigned or mis-signed
 * one is refused (GET and HEAD, on record) naming the reason, while its metadata is still served.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestAirlock } from '../helpers/airlock.js';
import { sha256hex, type FakeHub } from '../helpers/fake-hub.js';
import { records } from '../helpers/http.js';
import { fixtureFiles, MODE_DIR, startSignedModels } from '../helpers/signed-models.js';

describe('model signatures at the Hub front-end', () => {
  let hub: FakeHub;
  let a: TestAirlock;
  let c: Record<string, string>;
  const hf = (p: string) => `${a.url}/hf/${p}`;

  beforeAll(async () => {
    ({ hub, a, commits: c } = await startSignedModels());
  });

  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  for (const [repo, identity] of [
    ['keyless', 'https://sigstore.verify.ibm.com/oauth2 stefanb@us.ibm.com'],
    ['key', 'key:c1e49d63327f'],
    ['cert', 'ca:'],
    ['moved', 'key:c1e49d63327f'],
    ['lfs-sig', 'key:c1e49d63327f'],
  ] as const) {
    it(`serves every file of a snapshot signed in ${repo} mode (LFS and git files alike)`, async () => {
      const dir = MODE_DIR[repo === 'moved' || repo === 'lfs-sig' ? 'key' : repo];
      for (const f of fixtureFiles(dir)) {
        const path = repo === 'moved' && f.path === 'model.sig' ? 'sigs/model.sig' : f.path;
        const res = await fetch(hf(`acme/${repo}/resolve/main/${path}`));
        expect(res.status, `${repo}/${path}: ${res.headers.get('x-error-message')}`).toBe(200);
        expect(Buffer.from(await res.arrayBuffer()).equals(f.bytes)).toBe(true);
      }
      // Every served row carries the signer, the bundle's digest and (keyless) the trust version and log entry.
      const rows = (await records(a, `name=acme/${repo}`)).filter((r) => r.decision === 'allow');
      expect(rows.map((r) => r.filename).sort()).toEqual(
        fixtureFiles(dir)
          .map((f) => (repo === 'moved' && f.path === 'model.sig' ? 'sigs/model.sig' : f.path))
          .sort(),
      );
      const sigBytes = fixtureFiles(dir).find((f) => f.path === 'model.sig')!.bytes;
      for (const r of rows) {
        const s = JSON.parse(r.signature);
        expect(s.ok).toBe(true);
        expect(s.identity.startsWith(identity), s.identity).toBe(true);
        expect(s.bundleDigest).toBe(`sha256:${sha256hex(sigBytes)}`);
        if (repo === 'keyless') expect(s).toMatchObject({ trustVersion: expect.stringMatching(/^[0-9a-f]{12}$/), tlogIndex: '598151086' });
      }
    });
  }

  it('pays a lookup on warm requests: neither the signature nor the git files are fetched again', async () => {
    expect((await fetch(hf('acme/key/resolve/main/signme-2'))).status).toBe(200);
    const before = ['model.sig', 'signme-2', 'ignore-me'].map((p) => hub.count(`resolve:${p}`));
    const res = await fetch(hf('acme/key/resolve/main/signme-1'));
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect((await fetch(hf('acme/key/resolve/main/signme-2'), { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(hf('acme/key/resolve/main/ignore-me'))).status).toBe(200);
    expect(['model.sig', 'signme-2', 'ignore-me'].map((p) => hub.count(`resolve:${p}`))).toEqual(before);
  });

  const refusals: [string, 'unsigned' | 'bad_signature', RegExp][] = [
    ['unsigned', 'unsigned', /acme\/unsigned@[0-9a-f]{40} has no model\.sig, and hf\.allow\[6\] requires it signed \(require: signed, signers: acme-key\)/],
    ['extra', 'bad_signature', /hf\.allow\[3\]: model\.sig: file "extra\.txt" is not in the signed list \(an extra file\)/],
    ['missing', 'bad_signature', /model\.sig: signed file "signme-2" is missing from the commit/],
    ['changed', 'bad_signature', /model\.sig: file "signme-1" has sha256 [0-9a-f]{64} but the signature says [0-9a-f]{64}/],
    ['wrong-key', 'bad_signature', /hf\.allow\[7\]: model\.sig: the bundle names another public key \(hint "[0-9a-f]{64}"\), not key:[0-9a-f]{12}/],
    ['wrong-ca', 'bad_signature', /hf\.allow\[8\]: model\.sig: chain certificate 1 \("intermediate-ca"\) .* does not chain to the configured CA/],
    ['wrong-identity', 'bad_signature', /hf\.allow\[9\]: model\.sig: no signer matched .*subject is stefanb@us\.ibm\.com, expected mallory@example\.com/],
  ];
  for (const [repo, code, reason] of refusals) {
    it(`refuses every file of acme/${repo} (${code}) on GET and HEAD, on record, naming the reason`, async () => {
      // Every file, the signed ones, the ignored one and the signature itself (signme-2 where model.sig is absent).
      const third = repo === 'unsigned' ? 'signme-2' : 'model.sig';
      for (const path of ['signme-1', third, 'ignore-me']) {
        const get = await fetch(hf(`acme/${repo}/resolve/main/${path}`));
        expect(get.status, path).toBe(403);
        const body = await get.json();
        expect(body.error).toMatch(/^blocked by mirror policy: /);
        expect(body.error).toMatch(reason);
        expect(get.headers.get('x-error-message')).toMatch(reason);
        expect(get.headers.get('x-repo-commit')).toBe(c[repo]);
      }
      const head = await fetch(hf(`acme/${repo}/resolve/main/signme-1`), { method: 'HEAD' });
      expect(head.status).toBe(404);
      expect(head.headers.get('x-error-code')).toBe('EntryNotFound');
      expect(head.headers.get('x-error-message')).toMatch(reason);
      const rows = (await records(a, `name=acme/${repo}`)).filter((r) => r.code === code);
      expect(rows.map((r) => r.filename).sort()).toEqual(['ignore-me', third, 'signme-1', 'signme-1'].sort());
      for (const r of rows) {
        expect(r.decision).toBe('deny');
        // What was found: nothing for an unsigned snapshot, else the signature that failed (by its digest).
        if (code === 'unsigned') expect(r.signature ?? null).toBeNull();
        else expect(JSON.parse(r.signature)).toMatchObject({ ok: false, bundleDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
        expect(r.rule).toMatch(/^hf\.allow\[\d+\]$/);
        expect(r.reason).toMatch(reason);
      }
      // Nothing of a refused snapshot was served.
      expect((await records(a, `name=acme/${repo}`)).filter((r) => r.decision === 'allow')).toEqual([]);
    });
  }

  it('refuses a Range GET and the /raw/ path of a refused snapshot too', async () => {
    const range = await fetch(hf('acme/extra/resolve/main/signme-1'), { headers: { range: 'bytes=0-3' } });
    expect(range.status).toBe(403);
    expect(range.headers.get('x-error-message')).toMatch(/"extra\.txt" is not in the signed list/);
    const raw = await fetch(hf('acme/extra/raw/main/signme-1'));
    expect(raw.status).toBe(403);
    expect(raw.headers.get('x-error-message')).toMatch(/"extra\.txt" is not in the signed list/);
  });

  it('refuses digest_mismatch when the Hub sends other bytes for a file the signature check reads', async () => {
    const res = await fetch(hf('acme/tampered/resolve/main/signme-2'));
    expect(res.status).toBe(502);
    expect(res.headers.get('x-error-message')).toMatch(
      /^cannot check the model signature of acme\/tampered@[0-9a-f]{40}: [a-z.-]+: the Hub sent \d+ bytes with git blob id/,
    );
    const rows = await records(a, 'name=acme/tampered');
    expect(rows.map((r) => [r.code, r.decision, r.filename])).toEqual([['digest_mismatch', 'deny', 'signme-2']]);
  });

  it('serves the metadata of a refused snapshot (the listing the signature is checked against)', async () => {
    const info = await (await fetch(hf('api/models/acme/extra/revision/main'))).json();
    expect(info.sha).toBe(c.extra);
    expect(info.siblings.map((s: { rfilename: string }) => s.rfilename).sort()).toEqual(['extra.txt', 'ignore-me', 'model.sig', 'signme-1', 'signme-2']);
    const tree = await fetch(hf('api/models/acme/unsigned/tree/main'));
    expect(tree.status).toBe(200);
  });

  it('leaves a rule without require: signed as it was (an unsigned snapshot is served)', async () => {
    const res = await fetch(hf('acme/plain/resolve/main/signme-1'));
    expect(res.status).toBe(200);
  });

  it('verifies again after a reload that changes a rule: a cached verdict is never reused for other signers', async () => {
    expect((await fetch(hf('acme/key/resolve/main/signme-2'))).status).toBe(200);
    expect((await fetch(hf('acme/wrong-key/resolve/main/signme-2'))).status).toBe(403);
    const text = readFileSync(a.configFile, 'utf8');
    const swap = (t: string, repo: string, signers: string) => t.replace(new RegExp(`(- repo: acme/${repo}\n(?:.*\n){2}\\s+signers: ).*`), `$1${signers}`);
    writeFileSync(a.configFile, swap(swap(text, 'key', '[other-ca]'), 'wrong-key', '[acme-key]'));
    expect(a.airlock.reloadPolicy()).toBe(true);
    const now = await fetch(hf('acme/key/resolve/main/signme-2'));
    expect(now.status).toBe(403);
    expect(now.headers.get('x-error-message')).toMatch(/hf\.allow\[1\]: model\.sig: /);
    expect((await fetch(hf('acme/wrong-key/resolve/main/signme-2'))).status).toBe(200);
  });
});
