/**
 * OpenSSF model signatures (issue 26 item 5) on the real model_signing fixtures (test/fixtures/signatures/models,
 * see its SOURCES.md): each mode verifies, and each negative case derived from them is refused with a reason.
 * The files' SHA-256s are computed from the fixture files themselves, as Airlock would have verified them.
 */
import { X509Certificate, createHash, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dsse } from '@sigstore/core';
import { initializeCA } from '@sigstore/mock';
import type { CompiledSigner } from '../../src/policy/signing.js';
import { verifyModelSignature, type ModelVerifyOptions } from '../../src/signing/model-sig.js';

const BASE = join(import.meta.dirname, '../fixtures/signatures/models');
const KEY = readFileSync(join(BASE, 'keys/signing-key-pub.pem'), 'utf8');
const CA = readFileSync(join(BASE, 'keys/ca-cert.pem'), 'utf8');
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The commit as Airlock would know it: every file of the folder with its SHA-256. */
function commit(dir: string): Map<string, string> {
  return new Map(readdirSync(join(BASE, dir)).map((f) => [f, sha256(readFileSync(join(BASE, dir, f)))]));
}
/** Key and CA signers do not consult the trusted root. */
const verify = (bytes: Buffer, files: Map<string, string>, signer: CompiledSigner, opts?: ModelVerifyOptions) =>
  verifyModelSignature(bytes, files, signer, null, opts);
const keySigner = (pem: string): CompiledSigner => ({ kind: 'key', name: 'acme-key', pem });
const caSigner = (pem: string, id: { subject?: string; subjectPattern?: RegExp; issuer?: string } = {}): CompiledSigner => ({
  kind: 'ca',
  name: 'acme-ca',
  pem,
  ...id,
});
const sig = (dir: string) => readFileSync(join(BASE, dir, 'model.sig'));

/** model.sig with its JSON edited (the bundle's parts, not what is signed unless `edit` touches the payload). */
function editBundle(bytes: Buffer, edit: (b: any) => void): Buffer {
  const b = JSON.parse(bytes.toString('utf8'));
  edit(b);
  return Buffer.from(JSON.stringify(b));
}
function editStatement(bytes: Buffer, edit: (s: any) => void): Buffer {
  return editBundle(bytes, (b) => {
    const s = JSON.parse(Buffer.from(b.dsseEnvelope.payload, 'base64').toString('utf8'));
    edit(s);
    b.dsseEnvelope.payload = Buffer.from(JSON.stringify(s)).toString('base64');
  });
}

describe('model.sig, key mode (P-384 over SHA-384)', () => {
  const dir = 'v1.1.0-elliptic-key';

  it('verifies the real signature against the files, naming the key and the root digest', () => {
    const r = verify(sig(dir), commit(dir), keySigner(KEY));
    expect(r.reason).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.identity).toBe('key:c1e49d63327f');
    expect(r.modelDigest).toBe('sha256:92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4');
    expect(r.bundleDigest).toBe(`sha256:${sha256(sig(dir))}`);
    expect(r.files).toEqual({ signed: 2, ignored: ['ignore-me', 'model.sig'] });
  });

  it('leaves git files and the signature under another name out of the comparison', () => {
    const files = commit(dir);
    files.set('.gitattributes', sha256('*.bin filter=lfs'));
    files.set('.github/workflows/x.yml', sha256('x'));
    files.set('sigs/model.sig', files.get('model.sig')!);
    files.delete('model.sig');
    const r = verify(sig(dir), files, keySigner(KEY), { signaturePath: 'sigs/model.sig' });
    expect(r.ok).toBe(true);
    expect(r.files?.ignored.sort()).toEqual(['.gitattributes', '.github/workflows/x.yml', 'ignore-me', 'sigs/model.sig']);
  });

  it('refuses an extra file', () => {
    const files = commit(dir).set('extra.safetensors', sha256('weights'));
    const r = verify(sig(dir), files, keySigner(KEY));
    expect(r.ok).toBe(false);
    expect(r.reason).toBe('model.sig: file "extra.safetensors" is not in the signed list (an extra file)');
  });

  it('refuses a missing file', () => {
    const files = commit(dir);
    files.delete('signme-2');
    expect(verify(sig(dir), files, keySigner(KEY)).reason).toBe('model.sig: signed file "signme-2" is missing from the commit');
  });

  it('refuses a file whose bytes differ (a flipped byte gives another SHA-256)', () => {
    const bytes = readFileSync(join(BASE, dir, 'signme-1'));
    bytes[0] ^= 1;
    const files = commit(dir).set('signme-1', sha256(bytes));
    const r = verify(sig(dir), files, keySigner(KEY));
    expect(r.ok).toBe(false);
    expect(r.reason).toBe(
      `model.sig: file "signme-1" has sha256 ${sha256(bytes)} but the signature says bc9a717db6064a32cbe9eae6fc40651dd6d36ef1757183f590eff2b1765d7ebc`,
    );
  });

  it('counts the other differences after the first', () => {
    const files = commit(dir).set('a', sha256('a')).set('b', sha256('b'));
    files.delete('signme-2');
    expect(verify(sig(dir), files, keySigner(KEY)).reason).toMatch(
      /^model\.sig: file "a" is not in the signed list \(an extra file\) \(and 2 more differences\)$/,
    );
  });

  it('refuses a statement edited after signing (a digest changed, the root digest fixed up to match)', () => {
    const forged = sha256('forged');
    const edited = editStatement(sig(dir), (s) => {
      s.predicate.resources[0].digest = forged;
      s.subject[0].digest.sha256 = sha256(Buffer.concat(s.predicate.resources.map((r: any) => Buffer.from(r.digest, 'hex'))));
    });
    const files = commit(dir).set('signme-1', forged);
    const r = verify(edited, files, keySigner(KEY));
    expect(r.ok).toBe(false);
    expect(r.reason).toBe('model.sig: the signature does not verify with key:c1e49d63327f');
  });

  it('refuses a flipped signature byte', () => {
    const flipped = editBundle(sig(dir), (b) => {
      const s = Buffer.from(b.dsseEnvelope.signatures[0].sig, 'base64');
      s[s.length - 5] ^= 1;
      b.dsseEnvelope.signatures[0].sig = s.toString('base64');
    });
    expect(verify(flipped, commit(dir), keySigner(KEY)).reason).toBe('model.sig: the signature does not verify with key:c1e49d63327f');
  });

  it('refuses another key: by the bundle hint, and by the signature when there is no hint', () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const r = verify(sig(dir), commit(dir), keySigner(other));
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(
      /^model\.sig: the bundle names another public key \(hint "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"\), not key:[0-9a-f]{12}$/,
    );
    const noHint = editBundle(sig(dir), (b) => delete b.verificationMaterial.publicKey.hint);
    expect(verify(noHint, commit(dir), keySigner(KEY)).ok).toBe(true);
    expect(verify(noHint, commit(dir), keySigner(other)).reason).toMatch(/^model\.sig: the signature does not verify with key:[0-9a-f]{12}$/);
  });

  it('refuses a key that is not EC and a key that is not PEM', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(verify(sig(dir), commit(dir), keySigner(rsa)).reason).toMatch(/is not an EC P-256, P-384 or P-521 key/);
    expect(verify(sig(dir), commit(dir), keySigner('not a key')).reason).toBe('model.sig: the configured signing key is not a PEM public key');
  });

  it('refuses a certificate-mode rule for a key-mode signature (no certificate to check)', () => {
    expect(verify(sig(dir), commit(dir), caSigner(CA)).reason).toBe('model.sig: the bundle carries no certificate (the rule expects certificate mode)');
  });
});

describe('model.sig, certificate mode (leaf → intermediate → CA)', () => {
  const dir = 'v1.1.0-certificate';

  it('verifies the real signature through the chain to ca-cert.pem, naming the leaf', () => {
    const r = verify(sig(dir), commit(dir), caSigner(CA));
    expect(r.reason).toBeUndefined();
    expect(r).toMatchObject({
      ok: true,
      identity: 'ca:intermediate-ca',
      modelDigest: 'sha256:61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226',
    });
    expect(r.files).toEqual({ signed: 2, ignored: ['ignore-me', 'model.sig'] });
  });

  it('checks the optional leaf subject', () => {
    expect(verify(sig(dir), commit(dir), caSigner(CA, { subject: 'intermediate-ca' })).ok).toBe(true);
    expect(verify(sig(dir), commit(dir), caSigner(CA, { subject: 'release-bot' })).reason).toBe(
      'model.sig: the signing certificate is "ca:intermediate-ca", not subject "release-bot"',
    );
  });

  it('refuses another CA, even one with the same name', () => {
    const other = readFileSync(join(BASE, 'keys/other-ca-cert.pem'), 'utf8');
    const r = verify(sig(dir), commit(dir), caSigner(other));
    expect(r.ok).toBe(false);
    expect(r.reason).toBe('model.sig: chain certificate 1 ("intermediate-ca") (issuer "CN=root-ca") does not chain to the configured CA');
  });

  it('refuses a chain without its intermediate', () => {
    const cut = editBundle(sig(dir), (b) => b.verificationMaterial.x509CertificateChain.certificates.splice(1));
    expect(verify(cut, commit(dir), caSigner(CA)).reason).toBe(
      'model.sig: the signing certificate (issuer "CN=intermediate-ca") does not chain to the configured CA',
    );
  });

  it('checks validity at the verification time: expired and not yet valid are refused', () => {
    expect(verify(sig(dir), commit(dir), caSigner(CA), { now: Date.parse('2036-01-01T00:00:00Z') }).reason).toBe(
      'model.sig: the signing certificate is not valid at 2036-01-01T00:00:00.000Z (valid May  2 23:36:28 2025 GMT to Apr 30 23:36:28 2035 GMT)',
    );
    expect(verify(sig(dir), commit(dir), caSigner(CA), { now: Date.parse('2025-05-01T00:00:00Z') }).ok).toBe(false);
  });

  it('refuses a flipped signature byte and an extra file', () => {
    const flipped = editBundle(sig(dir), (b) => {
      const s = Buffer.from(b.dsseEnvelope.signatures[0].sig, 'base64');
      s[10] ^= 0x40;
      b.dsseEnvelope.signatures[0].sig = s.toString('base64');
    });
    expect(verify(flipped, commit(dir), caSigner(CA)).reason).toBe('model.sig: the signature does not verify with the key of "ca:intermediate-ca"');
    expect(verify(sig(dir), commit(dir).set('x.bin', sha256('x')), caSigner(CA)).reason).toBe(
      'model.sig: file "x.bin" is not in the signed list (an extra file)',
    );
  });

  it('refuses a statement edited after signing', () => {
    const edited = editStatement(sig(dir), (s) => s.predicate.serialization.ignore_paths.push('weights'));
    expect(verify(edited, commit(dir), caSigner(CA)).reason).toBe('model.sig: the signature does not verify with the key of "ca:intermediate-ca"');
  });

  it('accepts a key rule whose key is the leaf key (the key signed it; the certificate is not consulted)', () => {
    expect(verify(sig(dir), commit(dir), keySigner(KEY))).toMatchObject({ ok: true, identity: 'key:c1e49d63327f' });
  });
});

describe('model.sig, certificate mode under a private CA (@sigstore/mock: P-256 leaf issued by the root, valid 10 minutes)', () => {
  const dir = 'v1.1.0-certificate';
  const SAN = 'https://github.com/acme/models/.github/workflows/sign.yml@refs/heads/main';

  const der = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

  /** The fixture's statement re-signed by a fresh P-256 key whose certificate the mock CA issued at `clock`. */
  async function mockSigned(clock: Date) {
    const ca = await initializeCA(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }), undefined, clock);
    const leafKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const leaf = await ca.issueCertificate({ publicKey: leafKeys.publicKey.export({ type: 'spki', format: 'der' }), subjectAltName: SAN });
    const bytes = editBundle(sig(dir), (b) => {
      const payload = Buffer.from(b.dsseEnvelope.payload, 'base64');
      b.dsseEnvelope.signatures[0].sig = sign('sha256', dsse.preAuthEncoding(b.dsseEnvelope.payloadType, payload), leafKeys.privateKey).toString('base64');
      b.verificationMaterial.x509CertificateChain.certificates = [{ rawBytes: der(leaf).toString('base64') }];
    });
    return { bytes, root: new X509Certificate(der(ca.rootCertificate)).toString() };
  }

  it('verifies a P-256 leaf (SHA-256) straight under the CA, named by its SAN URI', async () => {
    const { bytes, root } = await mockSigned(new Date());
    const r = verify(bytes, commit(dir), caSigner(root, { subject: SAN }));
    expect(r.reason).toBeUndefined();
    expect(r).toMatchObject({ ok: true, identity: `ca:? ${SAN}` });
    expect(verify(bytes, commit(dir), caSigner(root, { subjectPattern: /^(?:https:\/\/github\.com\/acme\/.*)$/ })).ok).toBe(true);
    expect(verify(bytes, commit(dir), caSigner(root, { subjectPattern: /^(?:https:\/\/github\.com\/acme)$/ })).reason).toBe(
      `model.sig: the signing certificate is "ca:? ${SAN}", which does not match /https:\\/\\/github\\.com\\/acme/`,
    );
    expect(verify(bytes, commit(dir), caSigner(root, { issuer: 'https://token.actions.githubusercontent.com' })).reason).toBe(
      `model.sig: the signing certificate's issuer is "(none)", not "https://token.actions.githubusercontent.com"`,
    );
    expect(verify(bytes, commit(dir), caSigner(root, { subject: 'https://github.com/acme/other' })).reason).toBe(
      `model.sig: the signing certificate is "ca:? ${SAN}", not subject "https://github.com/acme/other"`,
    );
  });

  it('refuses a leaf that expired before the verification time, and the real CA for a mock leaf', async () => {
    const { bytes, root } = await mockSigned(new Date(Date.now() - 3600_000));
    expect(verify(bytes, commit(dir), caSigner(root)).reason).toMatch(/^model\.sig: the signing certificate is not valid at \S+ \(valid .+ to .+\)$/);
    const fresh = await mockSigned(new Date());
    expect(verify(fresh.bytes, commit(dir), caSigner(CA)).reason).toBe(
      'model.sig: the signing certificate (issuer "CN=sigstore, O=sigstore.mock") does not chain to the configured CA',
    );
  });
});
