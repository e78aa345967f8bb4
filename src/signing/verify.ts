import { MAX_JSON_DEPTH, jsonTooDeep } from './json-bounds.js';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { X509Certificate } from '@sigstore/core';
import { toSignedEntity, Verifier, type SignedEntity, type TrustMaterial } from '@sigstore/verify';
import { crypto as sigstoreCrypto, dsse } from '@sigstore/core';
import type { CompiledSigner } from '../policy/signing.js';
import { certificateFacts, publisherOf, type CertificateFacts, type Publisher } from './identity.js';
import type { LoadedTrustRoot } from './trust.js';

/**
 * One Sigstore bundle verifier for every ecosystem (issue 26): @sigstore/verify does the
 * cryptography offline from pinned trust material (certificate chain at the log's time, SCT,
 * transparency-log inclusion, the signature); Airlock adds the identity check (issuer exact,
 * subject exact or anchored pattern, or a pinned key or CA) and its own subject check (the signed
 * statement, or the message digest, names the exact digest about to be served: the library does
 * not check this). Never throws: every refusal is a one-line reason.
 */

export interface SignatureResult {
  ok: boolean;
  /** One line, when !ok: names the rule and what was found. */
  reason?: string;
  /** "issuer subject" for keyless, "key:<sha256 of SPKI, 12 hex>", or "ca:<subject CN> <SAN>" (either may be absent). */
  identity?: string;
  publisher?: Publisher;
  /** sha256:<hex> of the bundle bytes as fetched. */
  bundleDigest?: string;
  tlogIndex?: string;
  integratedTime?: number;
  trustVersion?: string;
}

/** What Airlock is about to serve: its digest ("sha256:<hex>"), and for a message signature the signed bytes. */
export interface Subject {
  digest: string;
  /** The bytes a message signature signs (cosign's legacy simple-signing payload); unused for DSSE. */
  artifact?: Buffer;
}

/** An in-toto statement as signed in a DSSE envelope. */
export interface Statement {
  _type: string;
  subject: { name?: string; digest: Record<string, string> }[];
  predicateType?: string;
  predicate?: unknown;
}

export interface VerifyOptions {
  /** The rule id named in reasons (e.g. "oci.allow[2]"). */
  rule?: string;
  /** Verification time for the trust root's expiry (ms); certificates are checked at the log's time. */
  now?: number;
}

/** Everything a caller may inspect after a verification: the statement and certificate facts are VERIFIED only when result.ok (on a refusal they are what the bundle claims, for the reason and the console). */
export interface VerifiedBundle {
  result: SignatureResult;
  statement?: Statement;
  facts?: CertificateFacts;
  payloadType?: string;
}

/** A bundle is a few KB (a certificate chain, one or two log entries, a statement): far larger is refused before parsing. */
export const MAX_BUNDLE_BYTES = 4 << 20;
const MAX_TLOG_ENTRIES = 16;
const MAX_CHAIN = 10;
const IN_TOTO = 'application/vnd.in-toto+json';
const DIGEST = /^(sha256|sha384|sha512):([0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/;

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 600);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export { MAX_JSON_DEPTH, jsonTooDeep } from './json-bounds.js';

/** Parse what was fetched into a Bundle, bounded, or a reason. */
export function parseBundle(input: unknown): { ok: true; bundle: Bundle; digest: string } | { ok: false; reason: string; digest?: string } {
  let obj: unknown = input;
  let digest: string | undefined;
  if (typeof input === 'string' || Buffer.isBuffer(input) || input instanceof Uint8Array) {
    const len = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength;
    if (len > MAX_BUNDLE_BYTES) return { ok: false, reason: `the bundle is ${len} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit for a Sigstore bundle` };
    const buf = typeof input === 'string' ? Buffer.from(input) : Buffer.from(input);
    digest = `sha256:${sha256(buf)}`;
    if (jsonTooDeep(buf)) return { ok: false, reason: `the bundle nests deeper than ${MAX_JSON_DEPTH} levels; not a Sigstore bundle`, digest };
    try {
      obj = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      return { ok: false, reason: `the bundle is not JSON (${oneLine((e as Error).message)})`, digest };
    }
  } else {
    let text: string | undefined;
    try {
      text = JSON.stringify(input);
    } catch {
      text = undefined;
    }
    if (text === undefined) return { ok: false, reason: 'the bundle is not a JSON value' };
    if (text.length > MAX_BUNDLE_BYTES)
      return { ok: false, reason: `the bundle is ${text.length} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit for a Sigstore bundle` };
    digest = `sha256:${sha256(text)}`;
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return { ok: false, reason: 'the bundle is not a JSON object', digest };
  const vm = (obj as { verificationMaterial?: { tlogEntries?: unknown; x509CertificateChain?: { certificates?: unknown } } }).verificationMaterial;
  if (Array.isArray(vm?.tlogEntries) && vm.tlogEntries.length > MAX_TLOG_ENTRIES)
    return { ok: false, reason: `the bundle has ${vm.tlogEntries.length} log entries (at most ${MAX_TLOG_ENTRIES})`, digest };
  const chain = vm?.x509CertificateChain?.certificates;
  if (Array.isArray(chain) && chain.length > MAX_CHAIN)
    return { ok: false, reason: `the bundle's certificate chain has ${chain.length} certificates (at most ${MAX_CHAIN})`, digest };
  try {
    return { ok: true, bundle: bundleFromJSON(obj), digest };
  } catch (e) {
    return { ok: false, reason: `not a Sigstore bundle: ${oneLine((e as Error).message)}`, digest };
  }
}

/** "key:<sha256 of the SPKI DER, 12 hex>": a key signer's identity. */
export function keyIdentity(key: KeyObject): string {
  return `key:${sha256(key.export({ type: 'spki', format: 'der' })).slice(0, 12)}`;
}

function cnOf(cert: X509Certificate): string | undefined {
  // The subject's CN, read from the DER without a full name parser: OID 2.5.4.3 then a string.
  const der = cert.subject;
  const i = der.indexOf(Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]));
  if (i < 0) return undefined;
  const len = der[i + 6];
  return der.subarray(i + 7, i + 7 + len).toString('utf8');
}

function subjectMatches(s: { subject?: string; subjectPattern?: RegExp }, san: string | undefined): boolean {
  if (s.subject === undefined && !s.subjectPattern) return true;
  if (san === undefined) return false;
  return s.subject !== undefined ? san === s.subject : s.subjectPattern!.test(san);
}

function signerName(s: CompiledSigner): string {
  return s.kind === 'keyless' ? `signer ${s.name}` : `${s.kind} signer ${s.name}`;
}

/** The library's error, as one line: its code's meaning and message. */
function libraryReason(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { message?: string } };
  const cause = err.cause?.message ? ` (${err.cause.message})` : '';
  const what: Record<string, string> = {
    TLOG_ERROR: 'transparency log',
    TLOG_INCLUSION_PROOF_ERROR: 'log inclusion proof',
    TLOG_INCLUSION_PROMISE_ERROR: 'log inclusion promise',
    TLOG_MISSING_INCLUSION_ERROR: 'log inclusion',
    TLOG_BODY_ERROR: 'log entry does not match the signature',
    CERTIFICATE_ERROR: 'certificate',
    PUBLIC_KEY_ERROR: 'public key',
    SIGNATURE_ERROR: 'signature',
    TIMESTAMP_ERROR: 'timestamp',
  };
  return oneLine(`${err.code ? `${what[err.code] ?? err.code}: ` : ''}${err.message ?? String(e)}${cause}`);
}

/** Airlock's own subject check on the verified content. Returns a reason, or null when it names the digest. */
function checkSubject(bundle: Bundle, subject: Subject): { reason: string | null; statement?: Statement; payloadType?: string } {
  const m = DIGEST.exec(subject.digest);
  if (!m) return { reason: `expected subject digest as sha256:<hex>, got ${JSON.stringify(subject.digest.slice(0, 80))}` };
  const [, alg, hex] = m;
  if (bundle.content.$case === 'messageSignature') {
    const md = bundle.content.messageSignature.messageDigest;
    const got = md ? Buffer.from(md.digest).toString('hex') : '';
    const gotAlg = md ? String(md.algorithm) : '';
    const algOk =
      (alg === 'sha256' && (gotAlg === 'SHA2_256' || gotAlg === '1')) ||
      (alg === 'sha384' && (gotAlg === 'SHA2_384' || gotAlg === '2')) ||
      (alg === 'sha512' && (gotAlg === 'SHA2_512' || gotAlg === '3'));
    if (!algOk || got !== hex) return { reason: `the signature is for digest ${got ? `${alg}:${got}` : '(none)'}, not ${subject.digest}` };
    return { reason: null };
  }
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO)
    return { reason: `the DSSE payload is ${JSON.stringify(env.payloadType)}, not an in-toto statement`, payloadType: env.payloadType };
  let st: Statement;
  try {
    st = JSON.parse(Buffer.from(env.payload).toString('utf8')) as Statement;
  } catch {
    return { reason: 'the signed statement is not JSON', payloadType: env.payloadType };
  }
  if (
    !st ||
    typeof st !== 'object' ||
    !Array.isArray(st.subject) ||
    st.subject.some((s) => !s || typeof s !== 'object' || !s.digest || typeof s.digest !== 'object')
  )
    return { reason: 'the signed statement has no subject list', payloadType: env.payloadType };
  const found = st.subject.some((s) => typeof s.digest[alg] === 'string' && s.digest[alg].toLowerCase() === hex);
  if (!found) {
    const named = st.subject
      .slice(0, 3)
      .map((s) => `${alg}:${String(s.digest[alg] ?? '(none)')}`)
      .join(', ');
    return { reason: `the signed statement's subject is ${named || '(empty)'}, not ${subject.digest}`, statement: st, payloadType: env.payloadType };
  }
  return { reason: null, statement: st, payloadType: env.payloadType };
}

function logFacts(bundle: Bundle): Pick<SignatureResult, 'tlogIndex' | 'integratedTime'> {
  const e = bundle.verificationMaterial.tlogEntries[0];
  if (!e) return {};
  const t = Number(e.integratedTime);
  return { tlogIndex: String(e.logIndex), ...(Number.isFinite(t) && t > 0 ? { integratedTime: t } : {}) };
}

function leafOf(bundle: Bundle): X509Certificate | null {
  const c = bundle.verificationMaterial.content;
  const raw =
    c.$case === 'certificate' ? c.certificate.rawBytes : c.$case === 'x509CertificateChain' ? c.x509CertificateChain.certificates[0]?.rawBytes : undefined;
  return raw ? X509Certificate.parse(Buffer.from(raw)) : null;
}

/** The hash an EC key signs over, by its curve, as Sigstore clients choose it (sigstore-go, cosign); undefined for other keys. */
const HASH_FOR_CURVE: Record<string, string> = { prime256v1: 'sha256', secp384r1: 'sha384', secp521r1: 'sha512' };
export function curveHash(key: KeyObject): string | undefined {
  return key.asymmetricKeyType === 'ec' ? HASH_FOR_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''] : undefined;
}

/**
 * The entity with its DSSE signature checked over the hash of the signing key's curve (P-256
 * SHA-256, P-384 SHA-384, P-521 SHA-512). @sigstore/verify 3.1 verifies a DSSE signature with
 * node's default digest for the key, SHA-256 for every EC curve, so a P-384 or P-521 bundle would
 * never verify. Message signatures keep the library's check (the hash their digest declares).
 */
function withCurveHash(entity: SignedEntity, bundle: Bundle): SignedEntity {
  if (bundle.content.$case !== 'dsseEnvelope') return entity;
  const env = bundle.content.dsseEnvelope;
  const content = entity.signature;
  const verifySignature = (key: KeyObject): boolean => {
    const hash = curveHash(key);
    if (!hash) return content.verifySignature(key);
    return sigstoreCrypto.verify(dsse.preAuthEncoding(env.payloadType, env.payload), key, content.signature, hash);
  };
  return {
    ...entity,
    signature: {
      get signature() {
        return content.signature;
      },
      compareSignature: (s: Buffer) => content.compareSignature(s),
      compareDigest: (d: Buffer) => content.compareDigest(d),
      verifySignature,
    },
  };
}

/** Certificate mode: the policy's CA instead of the root's; no SCT is required, but one present must verify against the root's CT logs. */
function caMaterial(base: TrustMaterial, pem: string): TrustMaterial {
  const certs = [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => X509Certificate.parse(m[0]));
  return { ...base, certificateAuthorities: [{ certChain: certs, validFor: { start: new Date(0), end: new Date(8.64e15) } }] };
}

/** Run the library for one signer kind. Returns the signer's identity facts, or throws the library's error. */
function runVerifier(entity: SignedEntity, signer: CompiledSigner, trust: LoadedTrustRoot, bundle: Bundle): { identity: string; facts?: CertificateFacts } {
  if (signer.kind === 'key') {
    const key = createPublicKey(signer.pem);
    const material: TrustMaterial = { ...trust.material, publicKey: () => ({ publicKey: key, validFor: () => true }) };
    if (entity.key.$case !== 'public-key')
      throw Object.assign(new Error('the bundle carries a certificate, not a signature by a pinned key'), { code: 'PUBLIC_KEY_ERROR' });
    const logged = bundle.verificationMaterial.tlogEntries.length > 0;
    new Verifier(material, { tlogThreshold: logged ? 1 : 0, ctlogThreshold: 0, timestampThreshold: logged ? 1 : 0 }).verify(entity);
    return { identity: keyIdentity(key) };
  }
  if (entity.key.$case !== 'certificate')
    throw Object.assign(new Error('the bundle is signed by a bare key, not a certificate'), { code: 'CERTIFICATE_ERROR' });
  if (signer.kind === 'ca') {
    new Verifier(caMaterial(trust.material, signer.pem), { ctlogThreshold: 0 }).verify(entity);
  } else {
    new Verifier(trust.material).verify(entity);
  }
  const facts = certificateFacts(entity.key.certificate);
  const identity =
    signer.kind === 'ca'
      ? `ca:${[cnOf(entity.key.certificate), facts.san].filter(Boolean).join(' ') || '(no subject)'}`
      : `${facts.issuer ?? '(no issuer)'} ${facts.san ?? '(no subject)'}`;
  return { identity, facts };
}

/** Whether verified certificate facts satisfy a keyless or CA signer: issuer exact, subject exact or anchored pattern. */
function identityMismatch(signer: CompiledSigner, facts: CertificateFacts | undefined): string | null {
  if (signer.kind === 'key') return null;
  if (signer.issuer !== undefined && facts?.issuer !== signer.issuer) return `issuer is ${facts?.issuer ?? '(none)'}, expected ${signer.issuer}`;
  if (!subjectMatches(signer, facts?.san))
    return `subject is ${facts?.san ?? '(none)'}, expected ${signer.subject ?? `a match of /${signer.subjectPattern!.source.slice(4, -2)}/`}`;
  return null;
}

/**
 * Verify one bundle for one subject against signers (any one may match), with full details.
 * Signers of the same kind share one cryptographic verification.
 */
export function verifyBundleFull(
  bundle: unknown,
  subject: Subject,
  signers: CompiledSigner | CompiledSigner[],
  trust: LoadedTrustRoot | null,
  opts: VerifyOptions = {},
): VerifiedBundle {
  const rule = opts.rule ? `${opts.rule}: ` : '';
  const list = Array.isArray(signers) ? signers : [signers];
  const fail = (reason: string, extra: Partial<SignatureResult> = {}): VerifiedBundle => ({
    result: { ok: false, reason: oneLine(`${rule}${reason}`), ...extra },
  });
  try {
    if (!trust) return fail('no usable Sigstore trusted root (see airlock trust import)');
    if (!trust.usableAt(opts.now ?? Date.now())) return fail(`the trusted root ${trust.version} has expired (import a current one: airlock trust import FILE)`);
    if (list.length === 0) return fail('no signer to verify against');
    const parsed = parseBundle(bundle);
    if (!parsed.ok) return fail(parsed.reason, parsed.digest ? { bundleDigest: parsed.digest } : {});
    const b = parsed.bundle;
    const base = { bundleDigest: parsed.digest, trustVersion: trust.version, ...logFacts(b) };
    const subj = checkSubject(b, subject);
    if (subj.reason) return { ...fail(subj.reason, base), statement: subj.statement, payloadType: subj.payloadType };
    if (b.content.$case === 'messageSignature' && !subject.artifact) return fail('a message signature needs the signed bytes to verify', base);
    const entity = withCurveHash(toSignedEntity(b, subject.artifact), b);
    const mismatches: string[] = [];
    let identityMisses = 0;
    const done = new Map<string, { identity: string; facts?: CertificateFacts } | Error>();
    for (const s of list) {
      // keyless signers share one verification (same trust material); keys and CAs each have their own.
      const k = s.kind === 'keyless' ? 'keyless' : `${s.kind}:${s.pem}`;
      let r = done.get(k);
      if (!r) {
        try {
          r = runVerifier(entity, s, trust, b);
        } catch (e) {
          r = Object.assign(new Error(libraryReason(e)), { signer: s });
        }
        done.set(k, r);
      }
      if (r instanceof Error) {
        mismatches.push(`${signerName(s)}: ${r.message}`);
        continue;
      }
      const miss = identityMismatch(s, r.facts);
      if (miss) {
        identityMisses++;
        mismatches.push(`${signerName(s)}: ${miss}`);
        continue;
      }
      const publisher = r.facts ? publisherOf(r.facts) : null;
      return {
        result: { ok: true, identity: r.identity, ...(publisher ? { publisher } : {}), ...base },
        statement: subj.statement,
        facts: r.facts,
        payloadType: subj.payloadType,
      };
    }
    const leaf = (() => {
      try {
        const c = leafOf(b);
        return c ? certificateFacts(c) : undefined;
      } catch {
        return undefined;
      }
    })();
    const found = leaf ? ` (signed by ${leaf.issuer ?? '(no issuer)'} ${leaf.san ?? '(no subject)'})` : '';
    return {
      ...fail(`${identityMisses ? 'no signer matched' : 'the signature does not verify'}${found}: ${mismatches.slice(0, 3).join('; ')}`, base),
      statement: subj.statement,
      facts: leaf,
      payloadType: subj.payloadType,
    };
  } catch (e) {
    // A shape the checks above did not foresee: refused, never thrown to the caller.
    return fail(`the bundle could not be verified: ${oneLine((e as Error).message ?? String(e))}`);
  }
}

/** Verify one bundle for one subject against a signer (or any of several). Never throws. */
export function verifyBundle(
  bundle: unknown,
  subject: Subject,
  signer: CompiledSigner | CompiledSigner[],
  trust: LoadedTrustRoot | null,
  opts: VerifyOptions = {},
): SignatureResult {
  return verifyBundleFull(bundle, subject, signer, trust, opts).result;
}
