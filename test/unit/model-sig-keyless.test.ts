/**
 * Keyless OpenSSF model signatures (issue 26 item 5) through the one Sigstore verifier (verify.ts), on the real
 * model_signing fixture signed on the public-good Sigstore by stefanb@us.ibm.com (IBM's OIDC issuer), verified
 * offline with the shipped public-good root. The bundle carries an RFC 3161 timestamp from timestamp.sigstore.dev, so
 * the root must list that authority (the shipped one, from @sigstore/tuf 4.0.2's seeds, does).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CompiledSigner } from '../../src/policy/signing.js';
import { verifyModelSignature } from '../../src/signing/model-sig.js';
import { shippedTrustRoot, type LoadedTrustRoot } from '../../src/signing/trust.js';

const BASE = join(import.meta.dirname, '../fixtures/signatures/models');
const DIR = 'v1.1.0-sigstore';
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const SIG = readFileSync(join(BASE, DIR, 'model.sig'));
const files = () => new Map(readdirSync(join(BASE, DIR)).map((f) => [f, sha256(readFileSync(join(BASE, DIR, f)))]));

const TRUST: LoadedTrustRoot = shippedTrustRoot();

const IBM = 'https://sigstore.verify.ibm.com/oauth2';
const stefan: CompiledSigner = { kind: 'keyless', name: 'ibm-stefanb', issuer: IBM, subject: 'stefanb@us.ibm.com' };
const KEY = readFileSync(join(BASE, 'keys/signing-key-pub.pem'), 'utf8');

function edit(bytes: Buffer, f: (b: any) => void): Buffer {
  const b = JSON.parse(bytes.toString('utf8'));
  f(b);
  return Buffer.from(JSON.stringify(b));
}

describe('model.sig, keyless (Sigstore certificate, Rekor entry, timestamp)', () => {
  it('verifies the real signature for its identity, with the log entry and the model digest', () => {
    const r = verifyModelSignature(SIG, files(), stefan, TRUST, { rule: 'hf.allow[0]' });
    expect(r.reason).toBeUndefined();
    expect(r).toMatchObject({
      ok: true,
      identity: `${IBM} stefanb@us.ibm.com`,
      tlogIndex: '598151086',
      integratedTime: 1760062340,
      trustVersion: TRUST.version,
      bundleDigest: `sha256:${sha256(SIG)}`,
      modelDigest: 'sha256:61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226',
      files: { signed: 2, ignored: ['ignore-me', 'model.sig'] },
    });
    const byPattern: CompiledSigner = { kind: 'keyless', name: 'ibm', issuer: IBM, subjectPattern: /^(?:.*@us\.ibm\.com)$/ };
    expect(verifyModelSignature(SIG, files(), byPattern, TRUST).ok).toBe(true);
  });

  it('refuses a wrong subject and a wrong issuer, naming what was found', () => {
    const other: CompiledSigner = { ...stefan, subject: 'someone@us.ibm.com' };
    const r = verifyModelSignature(SIG, files(), other, TRUST, { rule: 'hf.allow[0]' });
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/^hf\.allow\[0\]: model\.sig: no signer matched .*subject is stefanb@us\.ibm\.com, expected someone@us\.ibm\.com$/);
    const github: CompiledSigner = { ...stefan, issuer: 'https://token.actions.githubusercontent.com' };
    expect(verifyModelSignature(SIG, files(), github, TRUST).reason).toMatch(
      /issuer is https:\/\/sigstore\.verify\.ibm\.com\/oauth2, expected https:\/\/token\.actions\.githubusercontent\.com$/,
    );
  });

  it('refuses an extra or missing file after the signature verified, keeping who signed', () => {
    const extra = verifyModelSignature(SIG, files().set('pytorch_model.bin', sha256('pickle')), stefan, TRUST);
    expect(extra).toMatchObject({ ok: false, identity: `${IBM} stefanb@us.ibm.com`, tlogIndex: '598151086' });
    expect(extra.reason).toBe('model.sig: file "pytorch_model.bin" is not in the signed list (an extra file)');
    const missing = files();
    missing.delete('signme-1');
    expect(verifyModelSignature(SIG, missing, stefan, TRUST).reason).toBe('model.sig: signed file "signme-1" is missing from the commit');
  });

  it('refuses a flipped signature byte and an edited statement', () => {
    const flipped = edit(SIG, (b) => {
      const s = Buffer.from(b.dsseEnvelope.signatures[0].sig, 'base64');
      s[12] ^= 1;
      b.dsseEnvelope.signatures[0].sig = s.toString('base64');
    });
    const f = verifyModelSignature(flipped, files(), stefan, TRUST);
    expect(f.ok).toBe(false);
    expect(f.reason).toMatch(/^model\.sig: the signature does not verify/);
    const forged = sha256('forged');
    const edited = edit(SIG, (b) => {
      const st = JSON.parse(Buffer.from(b.dsseEnvelope.payload, 'base64').toString('utf8'));
      st.predicate.resources[0].digest = forged;
      st.subject[0].digest.sha256 = sha256(Buffer.concat(st.predicate.resources.map((r: any) => Buffer.from(r.digest, 'hex'))));
      b.dsseEnvelope.payload = Buffer.from(JSON.stringify(st)).toString('base64');
    });
    const e = verifyModelSignature(edited, files().set('signme-1', forged), stefan, TRUST);
    expect(e.ok).toBe(false);
    expect(e.reason).toMatch(/^model\.sig: the signature does not verify/);
  });

  it('fails closed without a trusted root, and refuses a key rule for a keyless signature', () => {
    expect(verifyModelSignature(SIG, files(), stefan, null).reason).toBe('model.sig: no usable Sigstore trusted root (see airlock trust import)');
    const key: CompiledSigner = { kind: 'key', name: 'acme-key', pem: KEY };
    expect(verifyModelSignature(SIG, files(), key, TRUST).reason).toBe('model.sig: the signature does not verify with key:c1e49d63327f');
  });

  it('accepts any one of a rule signers, and names each when none matches', () => {
    const key: CompiledSigner = { kind: 'key', name: 'acme-key', pem: KEY };
    expect(verifyModelSignature(SIG, files(), [key, stefan], TRUST)).toMatchObject({ ok: true, identity: `${IBM} stefanb@us.ibm.com` });
    const keyMode = readFileSync(join(BASE, 'v1.1.0-elliptic-key/model.sig'));
    const keyFiles = new Map(readdirSync(join(BASE, 'v1.1.0-elliptic-key')).map((f) => [f, sha256(readFileSync(join(BASE, 'v1.1.0-elliptic-key', f)))]));
    expect(verifyModelSignature(keyMode, keyFiles, [stefan, key], TRUST)).toMatchObject({ ok: true, identity: 'key:c1e49d63327f' });
    const r = verifyModelSignature(SIG, files(), [key, { ...stefan, subject: 'x@y' }], TRUST);
    expect(r.reason).toMatch(/^model\.sig: no signer matched: the signature does not verify with key:c1e49d63327f; no signer matched .*expected x@y$/);
  });
});
