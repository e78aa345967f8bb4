import { createHash, generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CompiledSigner } from '../../src/policy/signing.js';
import { parseTrustRoot, shippedTrustRoot } from '../../src/signing/trust.js';
import { keyIdentity, verifyBundle } from '../../src/signing/verify.js';
import { privateSigstore, type PrivateSigstore } from '../helpers/sigstore-mock.js';

/**
 * Keyless identity rules on certificates and log entries minted under a private root by
 * @sigstore/mock (issue 26): the right identity verifies; a wrong identity, a wrong issuer, a
 * certificate expired at log time, a missing log entry, another root's signature are refused.
 */
const DIGEST = `sha256:${'c'.repeat(64)}`;
const SAN = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0';
const GH = 'https://token.actions.githubusercontent.com';
const signer: CompiledSigner = {
  kind: 'keyless',
  name: 'acme',
  issuer: GH,
  subjectPattern: /^(?:https:\/\/github\.com\/acme\/app\/\.github\/workflows\/release\.yml@refs\/tags\/v.*)$/u,
};
let ss: PrivateSigstore;

beforeAll(async () => {
  ss = await privateSigstore();
});

describe('keyless identities under a private root (@sigstore/mock)', () => {
  it('verifies the expected identity, with its log entry and the GitHub publisher from its extensions', async () => {
    const bundle = await ss.dsseBundle(DIGEST, {
      san: SAN,
      issuer: GH,
      extensions: [
        { oid: '1.3.6.1.4.1.57264.1.12', value: 'https://github.com/acme/app' },
        { oid: '1.3.6.1.4.1.57264.1.14', value: 'refs/tags/v1.0.0' },
        { oid: '1.3.6.1.4.1.57264.1.18', value: SAN },
      ],
    });
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, ss.trust, { rule: 'oci.allow[0]' });
    expect(r).toMatchObject({
      ok: true,
      identity: `${GH} ${SAN}`,
      publisher: { kind: 'github', repository: 'acme/app', workflow: 'release.yml', ref: 'refs/tags/v1.0.0' },
      trustVersion: ss.trust.version,
    });
    expect(r.tlogIndex).toMatch(/^\d+$/);
    // The same bundle is refused for another digest.
    expect(verifyBundle(bundle, { digest: `sha256:${'d'.repeat(64)}` }, signer, ss.trust).reason).toContain("the signed statement's subject is");
  });

  it('refuses a wrong identity (subject outside the anchored pattern)', async () => {
    const bundle = await ss.dsseBundle(DIGEST, { san: 'https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main', issuer: GH });
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, ss.trust, { rule: 'oci.allow[0]' });
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(
      /^oci\.allow\[0\]: no signer matched \(signed by https:\/\/token\.actions\.githubusercontent\.com https:\/\/github\.com\/acme\/app\/\.github\/workflows\/ci\.yml@refs\/heads\/main\): signer acme: subject is /,
    );
    // A look-alike that only contains the expected subject is not a match either (anchored).
    const evil = await ss.dsseBundle(DIGEST, { san: `${SAN}x/../evil`, issuer: GH });
    expect(verifyBundle(evil, { digest: DIGEST }, { ...signer, subjectPattern: undefined, subject: SAN } as CompiledSigner, ss.trust).ok).toBe(false);
  });

  it('refuses a wrong issuer', async () => {
    const bundle = await ss.dsseBundle(DIGEST, { san: SAN, issuer: 'https://evil.example.com' });
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, ss.trust);
    expect(r.ok).toBe(false);
    expect(r.reason).toContain(`issuer is https://evil.example.com, expected ${GH}`);
  });

  it('refuses a certificate expired at log time', async () => {
    const certTime = Date.now() + 60_000;
    const bundle = await ss.dsseBundle(DIGEST, { san: SAN, issuer: GH, certTime, logTime: certTime + 20 * 60_000 });
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, ss.trust);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(
      /^the signature does not verify .*certificate: Failed to verify certificate chain \(certificate is not valid or expired at the specified date\)/,
    );
  });

  it('refuses a bundle with no log entry', async () => {
    const bundle = await ss.dsseBundle(DIGEST, { san: SAN, issuer: GH, noLog: true });
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, ss.trust);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/timestamp: expected 1 timestamps, got 0/);
  });

  it("refuses a private root's bundle against the public-good root (another CA)", async () => {
    const bundle = await ss.dsseBundle(DIGEST, { san: SAN, issuer: GH });
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, shippedTrustRoot());
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/^the signature does not verify/);
  });
});

describe('key mode', () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = key.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const keySigner: CompiledSigner = { kind: 'key', name: 'acme-key', pem };

  it('verifies a bundle signed by the pinned key, logged or not, and names the key', async () => {
    for (const noLog of [false, true]) {
      const bundle = await ss.keyBundle(DIGEST, key, { noLog });
      expect(verifyBundle(bundle, { digest: DIGEST }, keySigner, ss.trust)).toMatchObject({ ok: true, identity: keyIdentity(key.publicKey) });
    }
    expect(keyIdentity(key.publicKey)).toMatch(/^key:[0-9a-f]{12}$/);
  });

  it('refuses another key, and a certificate where a key is expected', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const bundle = await ss.keyBundle(DIGEST, other, { noLog: true });
    const r = verifyBundle(bundle, { digest: DIGEST }, keySigner, ss.trust);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/^the signature does not verify: key signer acme-key: signature: signature verification failed/);
    const keyless = await ss.dsseBundle(DIGEST, { san: SAN, issuer: GH });
    expect(verifyBundle(keyless, { digest: DIGEST }, keySigner, ss.trust).reason).toContain(
      'the bundle carries a certificate, not a signature by a pinned key',
    );
  });
});

describe('certificate mode, message signatures, an expired root', () => {
  it('verifies a certificate chaining to the policy CA (with its subject), and refuses another CA', async () => {
    const bundle = await ss.dsseBundle(DIGEST, { san: SAN, issuer: GH });
    const caSigner: CompiledSigner = { kind: 'ca', name: 'acme-ca', pem: ss.caPem, subject: SAN };
    expect(verifyBundle(bundle, { digest: DIGEST }, caSigner, ss.trust)).toMatchObject({ ok: true, identity: `ca:${SAN}` });
    expect(verifyBundle(bundle, { digest: DIGEST }, { ...caSigner, subject: 'someone@else' }, ss.trust).reason).toContain(
      `subject is ${SAN}, expected someone@else`,
    );
    const other = await privateSigstore();
    const r = verifyBundle(bundle, { digest: DIGEST }, { ...caSigner, pem: other.caPem }, ss.trust);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/^the signature does not verify .*ca signer acme-ca: certificate: Failed to verify certificate chain/);
  });

  it('verifies a message signature over the signed bytes: the digest must be the one served, the bytes must be given', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const signer: CompiledSigner = { kind: 'key', name: 'k', pem: key.publicKey.export({ type: 'spki', format: 'pem' }) as string };
    const payload = Buffer.from('{"critical":{"image":{"docker-manifest-digest":"sha256:...."}}}');
    const digest = `sha256:${createHash('sha256').update(payload).digest('hex')}`;
    const bundle = await ss.keyMessageBundle(payload, key);
    expect(verifyBundle(bundle, { digest, artifact: payload }, signer, ss.trust)).toMatchObject({ ok: true, identity: keyIdentity(key.publicKey) });
    expect(verifyBundle(bundle, { digest: `sha256:${'e'.repeat(64)}`, artifact: payload }, signer, ss.trust).reason).toBe(
      `the signature is for digest ${digest}, not sha256:${'e'.repeat(64)}`,
    );
    expect(verifyBundle(bundle, { digest }, signer, ss.trust).reason).toBe('a message signature needs the signed bytes to verify');
    const tampered = Buffer.from(payload);
    tampered[3] ^= 1;
    expect(verifyBundle(bundle, { digest, artifact: tampered }, signer, ss.trust).ok).toBe(false);
  });

  it('refuses everything once the trusted root has expired (fail closed)', async () => {
    const root = JSON.parse(ss.rootJson);
    for (const c of root.certificateAuthorities) c.validFor.end = '2030-01-01T00:00:00Z';
    const parsed = parseTrustRoot(JSON.stringify(root), Date.now(), { source: 'imported', importedAt: Date.now() });
    if (!parsed.ok) throw new Error(parsed.reason);
    const bundle = await ss.dsseBundle(DIGEST, { san: SAN, issuer: GH });
    expect(verifyBundle(bundle, { digest: DIGEST }, signer, parsed.root).ok).toBe(true);
    const r = verifyBundle(bundle, { digest: DIGEST }, signer, parsed.root, { now: Date.parse('2031-01-01T00:00:00Z'), rule: 'oci.allow[1]' });
    expect(r).toEqual({
      ok: false,
      reason: `oci.allow[1]: the trusted root ${parsed.root.version} has expired (import a current one: airlock trust import FILE)`,
    });
  });
});
