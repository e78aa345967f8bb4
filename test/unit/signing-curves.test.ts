import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CompiledSigner } from '../../src/policy/signing.js';
import { keyIdentity, verifyBundle } from '../../src/signing/verify.js';
import { privateSigstore, type PrivateSigstore } from '../helpers/sigstore-mock.js';

/**
 * Key mode picks the hash from the key's curve (P-256 SHA-256, P-384 SHA-384, P-521 SHA-512), as
 * Sigstore clients sign: keys made by node:crypto, bundles built here (unlogged) and by the mock
 * (with a log entry). A signature over another hash than the curve's is refused.
 */
const DIGEST = `sha256:${'d'.repeat(64)}`;
const TYPE = 'application/vnd.in-toto+json';
let ss: PrivateSigstore;

beforeAll(async () => {
  ss = await privateSigstore();
});

const statement = Buffer.from(
  JSON.stringify({
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: 'x', digest: { sha256: DIGEST.slice(7) } }],
    predicateType: 'https://airlock.test/v1',
    predicate: {},
  }),
);
const pae = (payload: Buffer) => Buffer.concat([Buffer.from(`DSSEv1 ${TYPE.length} ${TYPE} ${payload.length} `), payload]);

/** An unlogged key-mode DSSE bundle, signed over `hash`. */
function bundle(privateKey: KeyObject, hash: string): string {
  const sig = sign(hash, pae(statement), privateKey);
  return JSON.stringify({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { publicKey: { hint: '' }, tlogEntries: [] },
    dsseEnvelope: { payload: statement.toString('base64'), payloadType: TYPE, signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
  });
}

const signerOf = (k: KeyObject): CompiledSigner => ({ kind: 'key', name: 'acme-key', pem: k.export({ type: 'spki', format: 'pem' }) as string });

describe('key mode: the hash follows the curve', () => {
  for (const [curve, hash, wrong] of [
    ['P-256', 'sha256', 'sha384'],
    ['P-384', 'sha384', 'sha256'],
    ['P-521', 'sha512', 'sha256'],
  ] as const) {
    it(`${curve}: verifies a bundle signed over ${hash} (unlogged and logged), refuses one over ${wrong}`, async () => {
      const key = generateKeyPairSync('ec', { namedCurve: curve });
      const signer = signerOf(key.publicKey);
      expect(verifyBundle(bundle(key.privateKey, hash), { digest: DIGEST }, signer, ss.trust)).toMatchObject({
        ok: true,
        identity: keyIdentity(key.publicKey),
      });
      const logged = await ss.keyBundle(DIGEST, key);
      expect(verifyBundle(logged, { digest: DIGEST }, signer, ss.trust)).toMatchObject({
        ok: true,
        identity: keyIdentity(key.publicKey),
        tlogIndex: expect.any(String),
      });
      const r = verifyBundle(bundle(key.privateKey, wrong), { digest: DIGEST }, signer, ss.trust);
      expect(r.ok).toBe(false);
      expect(r.reason).toMatch(/^the signature does not verify: key signer acme-key: signature: signature verification failed/);
    });
  }

  it('refuses a P-384 bundle checked against another P-384 key', () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    expect(verifyBundle(bundle(key.privateKey, 'sha384'), { digest: DIGEST }, signerOf(other.publicKey), ss.trust).ok).toBe(false);
  });
});
