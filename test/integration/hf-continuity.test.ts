/**
 * Continuity of model signers at the Hub front-end (issue 26, item 6): the first verified commit of a repo
 * records its signer; a later commit signed by another identity the rule also accepts is refused (the
 * signal of a hijacked account), naming `airlock trust accept`, or served with a warning under
 * on_change: warn; after `airlock trust accept` it is served. Fixtures: the real model_signing ones
 * (keyless by stefanb@us.ibm.com, then the same files signed with acme's key).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestAirlock } from '../helpers/airlock.js';
import { startAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeHub, hfUpstream } from '../helpers/fake-hub.js';
import { records } from '../helpers/http.js';
import { fixtureFiles, MODE_DIR, MODELS } from '../helpers/signed-models.js';

const IBM = 'https://sigstore.verify.ibm.com/oauth2 stefanb@us.ibm.com';
const KEY = 'key:c1e49d63327f';

describe('continuity of model signers', () => {
  let hub: FakeHub;
  let a: TestAirlock;
  const c: Record<string, string> = {};
  const hf = (p: string) => `${a.url}/hf/${p}`;

  beforeAll(async () => {
    hub = new FakeHub();
    await hub.start();
    for (const repo of ['cont', 'warned']) {
      c[`${repo}1`] = hub.commit('model', `acme/${repo}`, fixtureFiles(MODE_DIR.keyless));
      c[`${repo}2`] = hub.commit('model', `acme/${repo}`, fixtureFiles(MODE_DIR.key), ['v2']);
    }
    const rule = (repo: string, extra = '') =>
      `      - repo: acme/${repo}\n        refs: { main: "${c[`${repo}1`]}", v2: "${c[`${repo}2`]}" }\n        require: signed\n        signers: [ibm, acme-key]\n${extra}`;
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  signing:
    signers:
      ibm: { issuer: "https://sigstore.verify.ibm.com/oauth2", subject: stefanb@us.ibm.com }
      acme-key: { key_file: ${join(MODELS, 'keys/signing-key-pub.pem')} }
  hf:
    allow:
${rule('cont')}${rule('warned', '        on_change: warn\n')}`);
  });

  afterAll(async () => {
    await a?.stop();
    await hub?.stop();
  });

  it('refuses a later commit signed by another identity, naming trust accept; serves it once accepted', async () => {
    expect((await fetch(hf('acme/cont/resolve/main/signme-2'))).status).toBe(200);
    const [first] = (await records(a, 'name=acme/cont')).filter((r) => r.decision === 'allow');
    expect(JSON.parse(first.signature)).toMatchObject({ ok: true, identity: IBM });

    const res = await fetch(hf('acme/cont/resolve/v2/signme-2'));
    expect(res.status).toBe(403);
    const msg = res.headers.get('x-error-message') ?? '';
    expect(msg).toMatch(/^blocked by mirror policy: signer changed: acme\/cont [0-9a-f]{40} is signed by key:c1e49d63327f, but earlier versions/);
    expect(msg).toContain(`airlock trust accept hf acme/cont --identity '${KEY}'`);
    expect((await res.json()).error).toBe(msg);
    const head = await fetch(hf('acme/cont/resolve/v2/signme-1'), { method: 'HEAD' });
    expect([head.status, head.headers.get('x-error-code')]).toEqual([404, 'EntryNotFound']);
    expect(head.headers.get('x-error-message')).toContain('airlock trust accept hf acme/cont');
    const refused = (await records(a, 'name=acme/cont')).filter((r) => r.decision === 'deny');
    // The GET and the HEAD, each on record with the signature found.
    expect(refused.map((r) => r.filename).sort()).toEqual(['signme-1', 'signme-2']);
    for (const r of refused) {
      expect(r).toMatchObject({ code: 'bad_signature', rule: 'hf.allow[0]', version: c.cont2 });
      expect(r.reason).toContain(`airlock trust accept hf acme/cont --identity '${KEY}'`);
      expect(JSON.parse(r.signature)).toMatchObject({ ok: true, identity: KEY });
    }

    const acc = await airlockCli(['trust', 'accept', 'hf', 'acme/cont', '--identity', KEY, '--config', a.configFile]);
    expect([acc.code, acc.stderr]).toEqual([0, '']);
    // Kept in memory for 10 s (the acceptance is seen within it: pypi-continuity.test.ts waits it out), or until a SIGHUP.
    expect((await fetch(hf('acme/cont/resolve/v2/signme-2'))).status).toBe(403);
    await a.airlock.reloadTrust();
    const now = await fetch(hf('acme/cont/resolve/v2/signme-2'));
    expect(now.status, now.headers.get('x-error-message') ?? '').toBe(200);
    await now.arrayBuffer();
    // ...and the earlier signer is now the changed one.
    expect((await fetch(hf('acme/cont/resolve/main/signme-2'))).status).toBe(403);
  }, 30_000);

  it('serves a later commit signed by another identity under on_change: warn, with a warning row', async () => {
    expect((await fetch(hf('acme/warned/resolve/main/signme-2'))).status).toBe(200);
    const res = await fetch(hf('acme/warned/resolve/v2/signme-1'));
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const git = await fetch(hf('acme/warned/resolve/v2/signme-2'));
    expect(git.status).toBe(200);
    await git.arrayBuffer();
    const rows = (await records(a, 'name=acme/warned')).filter((r) => r.version === c.warned2);
    expect(rows.map((r) => r.filename).sort()).toEqual(['signme-1', 'signme-2']);
    for (const r of rows) {
      expect(r.decision).toBe('allow');
      expect(r.reason).toMatch(/^signer changed: acme\/warned [0-9a-f]{40} is signed by key:c1e49d63327f, .*served with a warning \(on_change: warn\)/);
      expect(JSON.parse(r.signature)).toMatchObject({ ok: true, identity: KEY, changedFrom: IBM });
    }
  });
});
