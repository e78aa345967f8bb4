import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startAirlock, type TestAirlock } from './airlock.js';
import { FakeHub, hfUpstream, type HubFile } from './fake-hub.js';

/** The real model_signing fixtures (see test/fixtures/signatures/models/SOURCES.md). */
export const MODELS = join(import.meta.dirname, '../fixtures/signatures/models');
export const MODE_DIR = { keyless: 'v1.1.0-sigstore', key: 'v1.1.0-elliptic-key', cert: 'v1.1.0-certificate' } as const;

/** A fixture folder as Hub files: signme-1 in LFS (its SHA-256 from the Hub's metadata), the rest ordinary git files. */
export function fixtureFiles(dir: string, edit: (files: HubFile[]) => HubFile[] = (f) => f): HubFile[] {
  const files = readdirSync(join(MODELS, dir)).map((name) => ({ path: name, bytes: readFileSync(join(MODELS, dir, name)), lfs: name === 'signme-1' }));
  return edit(files);
}

/**
 * A local Hub holding each fixture as the pinned commit of acme/<case>, and an Airlock whose rules require it
 * signed: keyless, key and cert (each mode, served), moved (the signature at sigs/model.sig, named by the rule),
 * and the negative cases derived from them: extra (a file not in the signed list), missing (a signed file
 * absent), changed (a file whose digest upstream differs from the signed one), unsigned (no model.sig), wrong-key,
 * wrong-ca and wrong-identity; lfs-sig (model.sig stored in LFS); tampered (the Hub sends
 * other bytes than the commit lists, for every file); acme/plain has no signing rule. Rules are hf.allow[i] in this order.
 */
export async function startSignedModels(): Promise<{ hub: FakeHub; a: TestAirlock; commits: Record<string, string> }> {
  const hub = new FakeHub();
  await hub.start();
  const key = MODE_DIR.key;
  const repos: [string, string, ((f: HubFile[]) => HubFile[])?][] = [
    ['keyless', MODE_DIR.keyless],
    ['key', key],
    ['cert', MODE_DIR.cert],
    ['extra', key, (f) => [...f, { path: 'extra.txt', bytes: Buffer.from('not signed\n') }]],
    ['missing', key, (f) => f.filter((x) => x.path !== 'signme-2')],
    ['changed', key, (f) => f.map((x) => (x.path === 'signme-1' ? { ...x, bytes: Buffer.from('changed!\n') } : x))],
    ['unsigned', key, (f) => f.filter((x) => x.path !== 'model.sig')],
    ['wrong-key', key],
    ['wrong-ca', MODE_DIR.cert],
    ['wrong-identity', MODE_DIR.keyless],
    ['moved', key, (f) => f.map((x) => (x.path === 'model.sig' ? { ...x, path: 'sigs/model.sig' } : x))],
    ['lfs-sig', key, (f) => f.map((x) => (x.path === 'model.sig' ? { ...x, lfs: true } : x))],
    ['tampered', key, (f) => [...f.filter((x) => x.path !== 'signme-1'), { path: 'notes.txt', bytes: Buffer.from('only in acme/tampered\n') }]],
  ];
  const commits: Record<string, string> = {};
  for (const [name, dir, edit] of repos) commits[name] = hub.commit('model', `acme/${name}`, fixtureFiles(dir, edit));
  commits.plain = hub.commit(
    'model',
    'acme/plain',
    fixtureFiles(key, (f) => f.filter((x) => x.path !== 'model.sig')),
  );
  hub.tamperRepo = 'acme/tampered';
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const signers: Record<string, string> = {
    keyless: '[ibm]',
    cert: '[acme-ca]',
    'wrong-key': `[{ key: ${JSON.stringify(otherKey)} }]`,
    'wrong-ca': '[other-ca]',
    'wrong-identity': '[{ issuer: "https://sigstore.verify.ibm.com/oauth2", subject: mallory@example.com }]',
  };
  const rules = repos
    .map(([name]) => {
      const extra = name === 'moved' ? '        signature: sigs/model.sig\n' : '';
      return `      - repo: acme/${name}\n        refs: { main: "${commits[name]}" }\n        require: signed\n        signers: ${signers[name] ?? '[acme-key]'}\n${extra}`;
    })
    .join('');
  const a = await startAirlock(`
${hfUpstream(hub)}policy:
  signing:
    signers:
      ibm: { issuer: "https://sigstore.verify.ibm.com/oauth2", subject: stefanb@us.ibm.com }
      acme-key: { key_file: ${join(MODELS, 'keys/signing-key-pub.pem')} }
      acme-ca: { ca_file: ${join(MODELS, 'keys/ca-cert.pem')} }
      other-ca: { ca_file: ${join(MODELS, 'keys/other-ca-cert.pem')} }
  hf:
    allow:
${rules}      - repo: acme/plain
        refs: { main: "${commits.plain}" }
`);
  return { hub, a, commits };
}
