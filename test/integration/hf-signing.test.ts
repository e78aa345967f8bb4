/**
 * Model signatures at the Hub front-end (issue 26, item 5): the real model_signing fixtures (keyless, key and
 * certificate modes; test/fixtures/signatures/models, see its SOURCES.md) served by a local Hub as pinned
 * commits, behind `require: signed` rules. Signed snapshots are served; every file of an unsigned or mis-signed
 * one is refused (GET and HEAD, on record) naming the reason, while its metadata is still served.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, type HubFile } from '../helpers/fake-hub.js';
import { records } from '../helpers/http.js';

const BASE = join(import.meta.dirname, '../fixtures/signatures/models');

/** A fixture folder as Hub files: signme-1 in LFS (its SHA-256 from the Hub's metadata), the rest ordinary git files. */
export function fixtureFiles(dir: string, edit: (files: HubFile[]) => HubFile[] = (f) => f): HubFile[] {
  const files = readdirSync(join(BASE, dir)).map((name) => ({ path: name, bytes: readFileSync(join(BASE, dir, name)), lfs: name === 'signme-1' }));
  return edit(files);
}

describe('model signatures at the Hub front-end', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  const c: Record<string, string> = {};
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const hf = (p: string) => `${a.url}/hf/${p}`;

  beforeAll(async () => {
    await hub.start();
    const key = 'v1.1.0-elliptic-key';
    const repos: [string, string, ((f: HubFile[]) => HubFile[])?][] = [
      ['keyless', 'v1.1.0-sigstore'],
      ['key', key],
      ['cert', 'v1.1.0-certificate'],
      ['extra', key, (f) => [...f, { path: 'extra.txt', bytes: Buffer.from('not signed\n') }]],
      ['missing', key, (f) => f.filter((x) => x.path !== 'signme-2')],
      ['changed', key, (f) => f.map((x) => (x.path === 'signme-1' ? { ...x, bytes: Buffer.from('changed!\n') } : x))],
      ['unsigned', key, (f) => f.filter((x) => x.path !== 'model.sig')],
      ['wrong-key', key],
      ['wrong-ca', 'v1.1.0-certificate'],
      ['wrong-identity', 'v1.1.0-sigstore'],
      ['moved', key, (f) => f.map((x) => (x.path === 'model.sig' ? { ...x, path: 'sigs/model.sig' } : x))],
    ];
    for (const [name, dir, edit] of repos) c[name] = hub.commit('model', `acme/${name}`, fixtureFiles(dir, edit));
    c.plain = hub.commit(
      'model',
      'acme/plain',
      fixtureFiles(key, (f) => f.filter((x) => x.path !== 'model.sig')),
    );
    const rule = (name: string, signers: string, extra = '') =>
      `      - repo: acme/${name}\n        refs: { main: "${c[name]}" }\n        require: signed\n        signers: ${signers}\n${extra}`;
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  signing:
    signers:
      ibm: { issuer: "https://sigstore.verify.ibm.com/oauth2", subject: stefanb@us.ibm.com }
      acme-key: { key_file: ${join(BASE, 'keys/signing-key-pub.pem')} }
      acme-ca: { ca_file: ${join(BASE, 'keys/ca-cert.pem')} }
      other-ca: { ca_file: ${join(BASE, 'keys/other-ca-cert.pem')} }
  hf:
    allow:
${rule('keyless', '[ibm]')}${rule('key', '[acme-key]')}${rule('cert', '[acme-ca]')}${rule('extra', '[acme-key]')}${rule('missing', '[acme-key]')}${rule('changed', '[acme-key]')}${rule('unsigned', '[acme-key]')}${rule('wrong-key', `[{ key: ${JSON.stringify(otherKey)} }]`)}${rule('wrong-ca', '[other-ca]')}${rule('wrong-identity', '[{ issuer: "https://sigstore.verify.ibm.com/oauth2", subject: mallory@example.com }]')}${rule('moved', '[acme-key]', '        signature: sigs/model.sig\n')}      - repo: acme/plain
        refs: { main: "${c.plain}" }
`);
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
  ] as const) {
    it(`serves every file of a snapshot signed in ${repo} mode (LFS and git files alike)`, async () => {
      const dir = repo === 'keyless' ? 'v1.1.0-sigstore' : repo === 'cert' ? 'v1.1.0-certificate' : 'v1.1.0-elliptic-key';
      for (const f of fixtureFiles(dir)) {
        const path = repo === 'moved' && f.path === 'model.sig' ? 'sigs/model.sig' : f.path;
        const res = await fetch(hf(`acme/${repo}/resolve/main/${path}`));
        expect(res.status, `${repo}/${path}: ${res.headers.get('x-error-message')}`).toBe(200);
        expect(Buffer.from(await res.arrayBuffer()).equals(f.bytes)).toBe(true);
      }
      const rows = (await records(a, `name=acme/${repo}`)).filter((r) => r.decision === 'allow');
      expect(rows.length).toBeGreaterThanOrEqual(4);
      expect(identity).toBeTruthy();
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
        expect(r.rule).toMatch(/^hf\.allow\[\d+\]$/);
        expect(r.reason).toMatch(reason);
      }
      // Nothing of a refused snapshot was served.
      expect((await records(a, `name=acme/${repo}`)).filter((r) => r.decision === 'allow')).toEqual([]);
    });
  }

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
});
