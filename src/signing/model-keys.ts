/**
 * The two traditional modes of OpenSSF model signing, verified with node:crypto (the Sigstore library cannot:
 * these bundles carry no log entry, the key mode signs P-384 over SHA-384, the certificate mode carries a chain):
 * - key: the DSSE signature over the PAE verifies with the configured EC public key, hashed as model_signing hashes
 *   for the curve (P-256 SHA-256, P-384 SHA-384, P-521 SHA-512); the bundle's key hint, when present, must be the
 *   SHA-256 of that key's PEM (model_signing's check);
 * - certificate: the bundle's chain leaf → intermediates → a configured CA certificate, every link's signature
 *   verified, intermediates CA certificates, the leaf usable for signing (digitalSignature or codeSigning, as
 *   model_signing asks), every certificate valid at the verification time, then the DSSE signature with the leaf's key.
 *
 * Validity time: these bundles carry no trusted timestamp, so the signing time is unknown; Airlock checks every
 * certificate against the time of verification (`now`), failing closed on an expired certificate, as cosign does
 * without a timestamp. (model_signing itself checks the chain at the leaf's notBefore, which never expires.)
 */
import { X509Certificate, createHash, createPublicKey, verify as verifySig, type KeyObject } from 'node:crypto';
import { X509Certificate as CoreCertificate, dsse } from '@sigstore/core';
import type { CompiledSigner } from '../policy/signing.js';
import { certificateFacts, type CertificateFacts } from './identity.js';
import { shown, type Parsed } from './model-manifest.js';
import { keyIdentity } from './verify.js';

export interface DsseParts {
  payloadType: string;
  payload: Buffer;
  signature: Buffer;
}

export interface Verified {
  identity: string;
}

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const MAX_CHAIN = 10;
const HASH_FOR_CURVE: Record<string, string> = { prime256v1: 'sha256', secp384r1: 'sha384', secp521r1: 'sha512' };

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

function ecHash(key: KeyObject): string | undefined {
  return key.asymmetricKeyType === 'ec' ? HASH_FOR_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''] : undefined;
}

function dsseVerifies(env: DsseParts, key: KeyObject, hash: string): boolean {
  try {
    return verifySig(hash, dsse.preAuthEncoding(env.payloadType, env.payload), { key, dsaEncoding: 'der' }, env.signature);
  } catch {
    return false;
  }
}

/** Key mode: the envelope verifies with the configured PEM public key. */
export function verifyWithKey(env: DsseParts, keyPem: string, hint: string | undefined): Parsed<Verified> {
  let key: KeyObject;
  try {
    key = createPublicKey(keyPem);
  } catch {
    return fail('the configured signing key is not a PEM public key');
  }
  const identity = keyIdentity(key);
  const hash = ecHash(key);
  if (!hash) return fail(`the configured key ${identity} is not an EC P-256, P-384 or P-521 key (model signing's key mode)`);
  if (hint) {
    const expected = createHash('sha256')
      .update(key.export({ type: 'spki', format: 'pem' }))
      .digest('hex');
    if (hint !== expected) return fail(`the bundle names another public key (hint ${shown(hint, 64)}), not ${identity}`);
  }
  if (!dsseVerifies(env, key, hash)) return fail(`the signature does not verify with ${identity}`);
  return { ok: true, value: { identity } };
}

/** The PEM certificates in a text (a CA file may hold several). */
export function pemCertificates(text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

function commonName(cert: X509Certificate): string | undefined {
  return /^CN=(.*)$/m.exec(cert.subject)?.[1];
}

function validAt(cert: X509Certificate, at: Date): boolean {
  return Date.parse(cert.validFrom) <= at.getTime() && at.getTime() <= Date.parse(cert.validTo);
}

/** node: `child.checkIssued(issuer)` is "child was issued by issuer" (names, key identifiers, key usage). */
const issues = (issuer: X509Certificate, child: X509Certificate): boolean => child.checkIssued(issuer) && child.verify(issuer.publicKey);

function usableForSigning(leaf: X509Certificate): boolean {
  if (leaf.keyUsage?.includes(CODE_SIGNING)) return true;
  try {
    return CoreCertificate.parse(leaf.raw).extKeyUsage?.digitalSignature === true;
  } catch {
    return false;
  }
}

/** The leaf's Fulcio-style facts (issuer extension, SAN), or none when they do not parse. */
function leafFacts(leaf: X509Certificate): CertificateFacts {
  try {
    return certificateFacts(CoreCertificate.parse(leaf.raw));
  } catch {
    return {};
  }
}

type CaSigner = Extract<CompiledSigner, { kind: 'ca' }>;

/** A CA signer's optional identity: issuer exact (Fulcio's extension), subject exact or anchored pattern on the leaf's SAN or CN. */
function identityMiss(
  signer: Pick<CaSigner, 'issuer' | 'subject' | 'subjectPattern'>,
  facts: CertificateFacts,
  cn: string | undefined,
  identity: string,
): string | null {
  if (signer.issuer !== undefined && facts.issuer !== signer.issuer)
    return `the signing certificate's issuer is ${shown(facts.issuer ?? '(none)')}, not ${shown(signer.issuer)}`;
  const names = [facts.san, cn].filter((n): n is string => n !== undefined);
  if (signer.subject !== undefined && !names.includes(signer.subject))
    return `the signing certificate is ${shown(identity)}, not subject ${shown(signer.subject)}`;
  if (signer.subjectPattern && !names.some((n) => signer.subjectPattern!.test(n)))
    return `the signing certificate is ${shown(identity)}, which does not match /${signer.subjectPattern.source.slice(4, -2)}/`;
  return null;
}

/**
 * Walks leaf → intermediates until a configured CA issued the current certificate. Returns the reason when the
 * chain breaks, or undefined when it reaches a CA.
 */
function chainReason(chain: X509Certificate[], cas: X509Certificate[], now: Date): string | undefined {
  for (const [i, cert] of chain.entries()) {
    const what = i === 0 ? 'the signing certificate' : `chain certificate ${i} (${shown(commonName(cert) ?? cert.subject, 60)})`;
    if (!validAt(cert, now)) return `${what} is not valid at ${now.toISOString()} (valid ${cert.validFrom} to ${cert.validTo})`;
    if (i > 0 && !cert.ca) return `${what} is not a CA certificate`;
    if (cas.some((ca) => ca.fingerprint256 === cert.fingerprint256)) return undefined;
    const anchor = cas.find((ca) => issues(ca, cert));
    if (anchor) return validAt(anchor, now) ? undefined : `the CA certificate ${shown(commonName(anchor), 60)} is not valid at ${now.toISOString()}`;
    const next = chain[i + 1];
    if (!next) return `${what} (issuer ${shown(cert.issuer.replace(/\n/g, ', '), 80)}) does not chain to the configured CA`;
    if (!issues(next, cert)) return `${what} is not issued by the next certificate in the chain`;
  }
  return 'the certificate chain is empty';
}

/** Certificate mode: the chain reaches the signer's CA, the leaf matches its optional identity, the envelope verifies with the leaf's key. */
export function verifyWithCertificates(
  env: DsseParts,
  chainDer: Buffer[],
  signer: Pick<CaSigner, 'pem' | 'issuer' | 'subject' | 'subjectPattern'>,
  now: Date,
): Parsed<Verified> {
  let cas: X509Certificate[];
  try {
    cas = pemCertificates(signer.pem);
  } catch {
    return fail('the configured CA file holds an unreadable certificate');
  }
  if (cas.length === 0) return fail('the configured CA file holds no certificate');
  if (chainDer.length === 0 || chainDer.length > MAX_CHAIN) return fail(`the bundle carries ${chainDer.length} certificates (1 to ${MAX_CHAIN} expected)`);
  let chain: X509Certificate[];
  try {
    chain = chainDer.map((der) => new X509Certificate(der));
  } catch {
    return fail('the bundle carries an unreadable certificate');
  }
  const leaf = chain[0];
  const facts = leafFacts(leaf);
  const cn = commonName(leaf);
  // The same form as verify.ts gives a CA signer's identity: "ca:<CN> <SAN>".
  const identity = `ca:${cn ?? '?'}${facts.san ? ` ${facts.san}` : ''}`;
  const broken = chainReason(chain, cas, now);
  if (broken) return fail(broken);
  if (!usableForSigning(leaf)) return fail(`the signing certificate ${shown(identity)} is not for signing (no digitalSignature or codeSigning usage)`);
  const miss = identityMiss(signer, facts, cn, identity);
  if (miss) return fail(miss);
  const key = leaf.publicKey;
  const hash = ecHash(key);
  if (!hash) return fail(`the signing certificate ${shown(identity)} has no EC P-256, P-384 or P-521 key`);
  if (!dsseVerifies(env, key, hash)) return fail(`the signature does not verify with the key of ${shown(identity)}`);
  return { ok: true, value: { identity } };
}
