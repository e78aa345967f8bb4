/**
 * Continuity of image signers under rules that require no signature (issue 26, item 6): once a repository's signer
 * is on record (here set by `airlock trust accept`, as it is after a policy that required signatures was relaxed),
 * a digest admitted by a rule WITHOUT `require` (a later pin) is checked all the same: unsigned, or signed by another key, it is refused before its
 * manifest is served (by digest, by tag, HEAD, a platform manifest under an index, its blobs), naming the recorded
 * signer and `airlock trust accept`; signed by the recorded key it is served; under on_change: warn it is served
 * with the reason on its row. A repository with no signer on record is served as before.
 * Signatures: cosign's legacy `sha256-<hex>.sig`, with two keys.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeRegistry, digestOf, makeImage, makeIndex, type Image } from '../helpers/fake-registry.js';
import { records } from '../helpers/http.js';
import { idOf, keySigner, legacySig, OCI_ACCEPT } from '../helpers/cosign-legacy.js';

const ACCEPT = OCI_ACCEPT;

const keyA = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyB = generateKeyPairSync('ec', { namedCurve: 'P-256' });

describe('continuity of image signers under a rule without require', () => {
  const reg = new FakeRegistry();
  let a: TestAirlock;
  const first = makeImage([randomBytes(200)]);
  const unsigned = makeImage([randomBytes(200)]);
  const byB = makeImage([randomBytes(200)]);
  const byA = makeImage([randomBytes(200)]);
  const arm = makeImage([randomBytes(200)], 'arm64');
  const index = makeIndex([{ img: arm, arch: 'arm64' }]);
  const warned1 = makeImage([randomBytes(200)]);
  const warned2 = makeImage([randomBytes(200)]);
  const free = makeImage([randomBytes(200)]);
  const get = (path: string, method = 'GET') => fetch(`${a.url}/v2/reg.test/${path}`, { method, headers: { accept: ACCEPT } });
  const message = async (r: Response) => ((await r.json()) as { errors: { code: string; message: string }[] }).errors[0];

  beforeAll(async () => {
    reg.referrersMode = 'none';
    await reg.start();
    const signed = (repo: string, img: Image, key?: KeyObject) => {
      reg.push(repo, img);
      if (key) reg.push(repo, legacySig(img, key), `sha256-${img.digest.slice(7)}.sig`);
    };
    signed('later/app', first, keyA.privateKey);
    signed('later/app', unsigned);
    signed('later/app', byB, keyB.privateKey);
    signed('later/app', byA, keyA.privateKey);
    reg.pushIndex('later/app', index, [arm]);
    signed('warned/app', warned1, keyA.privateKey);
    signed('warned/app', warned2);
    signed('free/app', free);
    a = await startAirlock(`
oci:
  default_registry: reg.test
  registries:
    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }
policy:
  signing:
    signers:
${keySigner('key-a', keyA.publicKey)}
${keySigner('key-b', keyB.publicKey)}
  oci:
    allow:
      - repository: reg.test/later/app
        digests: ["${first.digest}", "${unsigned.digest}", "${byB.digest}", "${byA.digest}", "${index.digest}"]
        tags: { v2: "${unsigned.digest}" }
      - repository: reg.test/warned/app
        digests: ["${warned1.digest}", "${warned2.digest}"]
        on_change: warn
      - repository: reg.test/free/app
        digests: ["${free.digest}"]
`);
    for (const repo of ['reg.test/later/app', 'reg.test/warned/app']) {
      const r = await airlockCli(['trust', 'accept', 'oci', repo, '--identity', idOf(keyA.publicKey), '--config', a.configFile]);
      expect([r.code, r.stderr]).toEqual([0, '']);
    }
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  it('refuses a later unsigned digest (by digest, tag, HEAD, its blob), or one signed by another key; serves one signed by the recorded key', async () => {
    const A = idOf(keyA.publicKey);
    const B = idOf(keyB.publicKey);

    const res = await get(`later/app/manifests/${unsigned.digest}`);
    expect(res.status).toBe(403);
    const err = await message(res);
    expect(err.code).toBe('DENIED');
    expect(err.message).toMatch(new RegExp(`^signer changed: reg\\.test/later/app ${unsigned.digest} is not signed, but earlier versions were signed by ${A}`));
    expect(err.message).toContain('under oci.allow[0]; if the change is legitimate after review, accept it: airlock trust accept oci reg.test/later/app');
    expect((await get(`later/app/manifests/v2`)).status).toBe(403);
    expect((await get(`later/app/manifests/${unsigned.digest}`, 'HEAD')).status).toBe(403);
    const blob = await get(`later/app/blobs/${digestOf(unsigned.layers[0])}`);
    expect(blob.status).toBe(403);
    expect((await message(blob)).message).toContain('is not signed, but earlier versions');

    const other = await get(`later/app/manifests/${byB.digest}`);
    expect(other.status).toBe(403);
    const otherMsg = (await message(other)).message;
    expect(otherMsg).toContain(`${byB.digest} is signed by ${B}, but earlier versions were signed by ${A}`);
    expect(otherMsg).toContain(`airlock trust accept oci reg.test/later/app --identity '${B}'`);

    const same = await get(`later/app/manifests/${byA.digest}`);
    expect(same.status).toBe(200);
    expect(digestOf(Buffer.from(await same.arrayBuffer()))).toBe(byA.digest);

    const rows = await records(a, 'ecosystem=oci&name=reg.test/later/app');
    const of = (d: string, decision: string) => rows.filter((r) => r.sha256 === d.slice(7) && r.decision === decision);
    expect(of(unsigned.digest, 'deny').length).toBeGreaterThanOrEqual(3);
    for (const r of of(unsigned.digest, 'deny')) expect(r).toMatchObject({ code: 'unsigned', rule: 'oci.allow[0]' });
    const [bRow] = of(byB.digest, 'deny');
    expect(bRow).toMatchObject({ code: 'bad_signature', rule: 'oci.allow[0]', filename: 'manifest' });
    expect(JSON.parse(bRow.signature)).toMatchObject({ ok: true, identity: B });
    const [aRow] = of(byA.digest, 'allow');
    expect(JSON.parse(aRow.signature)).toMatchObject({ ok: true, identity: A });
  }, 60_000);

  it('a platform manifest under a later, unsigned index is refused with the index', async () => {
    expect((await get(`later/app/manifests/${index.digest}`)).status).toBe(403);
    const res = await get(`later/app/manifests/${arm.digest}`);
    expect(res.status).toBe(403);
    expect((await message(res)).message).toContain(`reg.test/later/app ${index.digest} is not signed, but earlier versions`);
    for (const repo of ['reg.test/later/app', 'reg.test/warned/app']) {
      const r = await airlockCli(['trust', 'accept', 'oci', repo, '--identity', idOf(keyA.publicKey), '--config', a.configFile]);
      expect([r.code, r.stderr]).toEqual([0, '']);
    }
  }, 60_000);

  it('serves a later unsigned digest under on_change: warn, with the reason on its row', async () => {
    expect((await get(`warned/app/manifests/${warned1.digest}`)).status).toBe(200);
    const [one] = (await records(a, 'ecosystem=oci&name=reg.test/warned/app&decision=allow')).filter((r) => r.sha256 === warned1.digest.slice(7));
    expect(JSON.parse(one.signature)).toMatchObject({ ok: true, identity: idOf(keyA.publicKey) });
    expect(one.reason ?? '').not.toContain('signer changed');
    const res = await get(`warned/app/manifests/${warned2.digest}`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const [row] = (await records(a, 'ecosystem=oci&name=reg.test/warned/app&decision=allow')).filter((r) => r.sha256 === warned2.digest.slice(7));
    expect(row.reason).toMatch(/^signer changed: reg\.test\/warned\/app sha256:[0-9a-f]{64} is not signed, .*served with a warning \(on_change: warn\)/);
    // Nothing was found to record of a signature: the row's reason names the change and the earlier signer.
    expect(row.signature ?? null).toBeNull();
    expect(row.reason).toContain(`earlier versions were signed by ${idOf(keyA.publicKey)}`);
  }, 60_000);

  it('a repository with no signer on record is served as before, unsigned', async () => {
    const res = await get(`free/app/manifests/${free.digest}`);
    expect(res.status).toBe(200);
    expect(digestOf(Buffer.from(await res.arrayBuffer()))).toBe(free.digest);
    const blob = await get(`free/app/blobs/${digestOf(free.layers[0])}`);
    expect(blob.status).toBe(200);
    await blob.arrayBuffer();
  }, 60_000);

  it('a missing or broken trusted root refuses a repository with a signer on record, even under on_change: warn (fail closed); others are served', async () => {
    await a.airlock.meta.putTrustRoot({ sha256: 'f'.repeat(64), root: '{"mediaType": "not a trusted root"}' });
    expect(await a.airlock.reloadTrust()).toBeNull();
    for (const method of ['GET', 'HEAD']) {
      const res = await get(`warned/app/manifests/${warned1.digest}`, method);
      expect(res.status).toBe(403);
      if (method === 'GET')
        expect((await message(res)).message).toBe(
          `reg.test/warned/app has a signer on record (${idOf(keyA.publicKey)}), and its signature cannot be checked: no usable Sigstore trusted root (see airlock trust import)`,
        );
    }
    expect((await get(`warned/app/blobs/${digestOf(warned1.layers[0])}`)).status).toBe(403);
    expect((await get(`free/app/manifests/${free.digest}`)).status).toBe(200);
  }, 60_000);
});
