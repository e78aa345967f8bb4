/**
 * Continuity of image signers (issue 26, item 6): the first verified digest of a repository records its signer;
 * a later digest signed by another identity the rule also accepts is refused before its manifest is served
 * (DENIED, naming `airlock trust accept`, on record), or served with a warning under on_change: warn; after
 * `airlock trust accept` it is served. Signatures: cosign's legacy `sha256-<hex>.sig`, with two keys.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeRegistry, digestOf, makeImage, type Image } from '../helpers/fake-registry.js';
import { records } from '../helpers/http.js';
import { idOf, keySigner, legacySig, OCI_ACCEPT } from '../helpers/cosign-legacy.js';

const ACCEPT = OCI_ACCEPT;

const keyA = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyB = generateKeyPairSync('ec', { namedCurve: 'P-256' });

describe('continuity of image signers', () => {
  const reg = new FakeRegistry();
  let a: TestAirlock;
  const imgs: Record<string, [Image, Image]> = {};
  const get = (path: string, method = 'GET') => fetch(`${a.url}/v2/${path}`, { method, headers: { accept: ACCEPT } });

  beforeAll(async () => {
    reg.referrersMode = 'none';
    await reg.start();
    for (const repo of ['cont/app', 'warned/app']) {
      imgs[repo] = [makeImage([randomBytes(200)]), makeImage([randomBytes(200)])];
      imgs[repo].forEach((img, i) => {
        reg.push(repo, img);
        reg.push(repo, legacySig(img, [keyA, keyB][i].privateKey), `sha256-${img.digest.slice(7)}.sig`);
      });
    }
    const rule = (repo: string, extra = '') =>
      `      - repository: reg.test/${repo}\n        digests: ["${imgs[repo][0].digest}", "${imgs[repo][1].digest}"]\n        require: signed\n        signers: [key-a, key-b]\n${extra}`;
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
${rule('cont/app')}${rule('warned/app', '        on_change: warn\n')}`);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  it('refuses a later digest signed by another key (manifest and blob), naming trust accept; serves it once accepted', async () => {
    const [one, two] = imgs['cont/app'];
    expect((await get(`reg.test/cont/app/manifests/${one.digest}`)).status).toBe(200);
    const res = await get(`reg.test/cont/app/manifests/${two.digest}`);
    expect(res.status).toBe(403);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0].code).toBe('DENIED');
    const msg = body.errors[0].message;
    expect(msg).toMatch(new RegExp(`^signer changed: reg\\.test/cont/app ${two.digest} is signed by ${idOf(keyB.publicKey)}, but earlier versions`));
    expect(msg).toContain(`airlock trust accept oci reg.test/cont/app --identity '${idOf(keyB.publicKey)}'`);
    // A blob of the refused image (linked as its manifest was fetched) is refused too, with the same reason.
    const blob = await get(`reg.test/cont/app/blobs/${digestOf(two.layers[0])}`);
    expect(blob.status).toBe(403);
    expect(((await blob.json()) as { errors: { message: string }[] }).errors[0].message).toBe(msg);
    const rows = await records(a, 'ecosystem=oci&name=reg.test/cont/app&decision=deny');
    expect(rows.map((r) => [r.filename, r.code]).sort()).toEqual([
      ['blob', 'bad_signature'],
      ['manifest', 'bad_signature'],
    ]);
    const manifestRow = rows.find((r) => r.filename === 'manifest');
    expect(manifestRow).toMatchObject({ code: 'bad_signature', rule: 'oci.allow[0]', sha256: two.digest.slice(7), reason: msg });
    expect(JSON.parse(manifestRow.signature)).toMatchObject({ ok: true, identity: idOf(keyB.publicKey) });

    const acc = await airlockCli(['trust', 'accept', 'oci', 'reg.test/cont/app', '--identity', idOf(keyB.publicKey), '--config', a.configFile]);
    expect([acc.code, acc.stderr]).toEqual([0, '']);
    // Kept in memory for 10 s (the acceptance is seen within it: pypi-continuity.test.ts waits it out), or until a SIGHUP.
    expect((await get(`reg.test/cont/app/manifests/${two.digest}`)).status).toBe(403);
    await a.airlock.reloadTrust();
    const now = await get(`reg.test/cont/app/manifests/${two.digest}`);
    expect(now.status).toBe(200);
    expect(digestOf(Buffer.from(await now.arrayBuffer()))).toBe(two.digest);
    expect((await get(`reg.test/cont/app/manifests/${one.digest}`)).status).toBe(403);
  }, 30_000);

  it('serves a later digest signed by another key under on_change: warn, with a warning row', async () => {
    const [one, two] = imgs['warned/app'];
    expect((await get(`reg.test/warned/app/manifests/${one.digest}`)).status).toBe(200);
    expect((await get(`reg.test/warned/app/manifests/${two.digest}`)).status).toBe(200);
    const blob = await get(`reg.test/warned/app/blobs/${digestOf(two.layers[0])}`);
    expect(blob.status).toBe(200);
    expect(Buffer.from(await blob.arrayBuffer()).equals(two.layers[0])).toBe(true);
    const ofTwo = [two.digest, digestOf(two.layers[0])].map((d) => d.slice(7));
    const rows = (await records(a, 'ecosystem=oci&name=reg.test/warned/app&decision=allow')).filter((r) => ofTwo.includes(r.sha256));
    expect(rows.map((r) => r.filename).sort()).toEqual(['blob', 'manifest']);
    for (const r of rows) {
      expect(r.reason).toMatch(
        /^signer changed: reg\.test\/warned\/app sha256:[0-9a-f]{64} is signed by key:[0-9a-f]{12}, .*served with a warning \(on_change: warn\)/,
      );
      expect(JSON.parse(r.signature)).toMatchObject({ ok: true, identity: idOf(keyB.publicKey), changedFrom: idOf(keyA.publicKey) });
    }
  });
});
