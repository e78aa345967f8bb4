/**
 * Continuity of model signers under rules that require no signature (issue 26, item 6): once a Hub repo's signer
 * is on record (here set by `airlock trust accept`, as it is after a policy that required signatures was relaxed),
 * the files of a commit admitted by a rule WITHOUT `require` (a later pin) are checked all the same: a commit with
 * no model.sig, or signed by another identity, is refused (GET 403, HEAD 404 EntryNotFound with the message) naming
 * the recorded signer and `airlock trust accept`; one signed by the recorded key is served; under on_change: warn
 * an unsigned commit is served with the reason on its rows. A repo with no signer on record is served as before.
 * Fixtures: the real model_signing ones (acme's key; keyless by stefanb@us.ibm.com).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeHub, hfUpstream } from '../helpers/fake-hub.js';
import { records } from '../helpers/http.js';
import { fixtureFiles, MODE_DIR, MODELS } from '../helpers/signed-models.js';

const IBM = 'https://sigstore.verify.ibm.com/oauth2 stefanb@us.ibm.com';
const KEY = 'key:c1e49d63327f';
const unsignedFiles = () => fixtureFiles(MODE_DIR.key, (f) => f.filter((x) => x.path !== 'model.sig'));

describe('continuity of model signers under a rule without require', () => {
  let hub: FakeHub;
  let a: TestAirlock;
  const c: Record<string, string> = {};
  const hf = (p: string, method = 'GET') => fetch(`${a.url}/hf/${p}`, { method });

  beforeAll(async () => {
    hub = new FakeHub();
    await hub.start();
    c.signed = hub.commit('model', 'acme/later', fixtureFiles(MODE_DIR.key));
    c.unsigned = hub.commit('model', 'acme/later', unsignedFiles(), ['v2']);
    c.other = hub.commit('model', 'acme/later', fixtureFiles(MODE_DIR.keyless), ['v3']);
    c.warned = hub.commit('model', 'acme/warned', unsignedFiles());
    c.free = hub.commit('model', 'acme/free', unsignedFiles());
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  signing:
    signers:
      acme-key: { key_file: ${join(MODELS, 'keys/signing-key-pub.pem')} }
  hf:
    allow:
      - repo: acme/later
        refs: { main: "${c.signed}", v2: "${c.unsigned}", v3: "${c.other}" }
      - repo: acme/warned
        refs: { main: "${c.warned}" }
        on_change: warn
      - repo: acme/free
        refs: { main: "${c.free}" }
`);
    for (const repo of ['acme/later', 'acme/warned']) {
      const r = await airlockCli(['trust', 'accept', 'hf', repo, '--identity', KEY, '--config', a.configFile]);
      expect([r.code, r.stderr]).toEqual([0, '']);
    }
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await hub?.stop();
  });

  it('refuses the files of a later unsigned commit (GET and HEAD), or of one signed by another identity; serves one signed by the recorded key', async () => {
    const ok = await hf('acme/later/resolve/main/signme-1');
    expect(ok.status, ok.headers.get('x-error-message') ?? '').toBe(200);
    await ok.arrayBuffer();
    const [served] = (await records(a, 'name=acme/later')).filter((r) => r.decision === 'allow');
    expect(JSON.parse(served.signature)).toMatchObject({ ok: true, identity: KEY });

    const res = await hf('acme/later/resolve/v2/signme-1');
    expect(res.status).toBe(403);
    const msg = res.headers.get('x-error-message') ?? '';
    expect(msg).toBe(
      `blocked by mirror policy: signer changed: acme/later ${c.unsigned} is not signed, but earlier versions were signed by ${KEY}; ` +
        `refused (on_change: refuse) under hf.allow[0]; if the change is legitimate after review, accept it: airlock trust accept hf acme/later ` +
        "(and narrow the rule's signers to the new identity)",
    );
    const head = await hf('acme/later/resolve/v2/signme-2', 'HEAD');
    expect([head.status, head.headers.get('x-error-code'), head.headers.get('x-error-message')]).toEqual([404, 'EntryNotFound', msg]);
    const raw = await hf('acme/later/raw/v2/signme-2');
    expect(raw.status).toBe(403);

    const other = await hf('acme/later/resolve/v3/signme-1');
    expect(other.status).toBe(403);
    const otherMsg = other.headers.get('x-error-message') ?? '';
    expect(otherMsg).toContain(`acme/later ${c.other} is signed by ${IBM}, but earlier versions were signed by ${KEY}`);
    expect(otherMsg).toContain(`airlock trust accept hf acme/later --identity '${IBM}'`);

    const refused = (await records(a, 'name=acme/later')).filter((r) => r.decision === 'deny');
    expect(refused.filter((r) => r.version === c.unsigned).map((r) => [r.filename, r.code])).toEqual(
      expect.arrayContaining([
        ['signme-1', 'unsigned'],
        ['signme-2', 'unsigned'],
      ]),
    );
    const [o] = refused.filter((r) => r.version === c.other);
    expect(o).toMatchObject({ code: 'bad_signature', rule: 'hf.allow[0]' });
    expect(JSON.parse(o.signature)).toMatchObject({ ok: true, identity: IBM });
  }, 60_000);

  it('serves a later unsigned commit under on_change: warn, with the reason on its row', async () => {
    const res = await hf('acme/warned/resolve/main/signme-2');
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const [row] = (await records(a, 'name=acme/warned')).filter((r) => r.decision === 'allow');
    expect(row.reason).toMatch(/^signer changed: acme\/warned [0-9a-f]{40} is not signed, .*served with a warning \(on_change: warn\)/);
  }, 60_000);

  it('a repo with no signer on record is served as before, unsigned', async () => {
    const res = await hf('acme/free/resolve/main/signme-1');
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }, 60_000);

  it('a missing or broken trusted root refuses a repo with a signer on record, even under on_change: warn (fail closed); others are served', async () => {
    await a.airlock.meta.putTrustRoot({ sha256: 'f'.repeat(64), root: '{"mediaType": "not a trusted root"}' });
    expect(await a.airlock.reloadTrust()).toBeNull();
    const res = await hf('acme/warned/resolve/main/signme-1');
    expect(res.status).toBe(403);
    expect(res.headers.get('x-error-message')).toBe(
      `blocked by mirror policy: acme/warned has a signer on record (${KEY}), and its signature cannot be checked: no usable Sigstore trusted root (see airlock trust import)`,
    );
    const ok = await hf('acme/free/resolve/main/signme-2');
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
  }, 60_000);
});
