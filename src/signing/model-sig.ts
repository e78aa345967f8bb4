/**
 * Verification of an OpenSSF model signature (`model.sig`, sigstore/model-transparency): a Sigstore bundle v0.3
 * whose DSSE envelope carries an in-toto statement listing every file of the model with its SHA-256.
 *
 * verifyModelSignature checks, in this order, and refuses at the first failure with a one-line reason:
 * 1. the bytes: at most MAX_MODEL_SIG_BYTES, JSON, a Sigstore bundle with a DSSE envelope of one in-toto signature;
 * 2. the signature, by the signer's kind: keyless through the one Sigstore verifier (verify.ts: certificate, log
 *    entry, timestamps, issuer and subject, from the pinned trusted root); key and CA with node:crypto
 *    (model-keys.ts: P-384 signs over SHA-384, the certificate mode carries a chain and no log entry);
 * 3. the statement (model-manifest.ts) and its file list against the SHA-256s Airlock already verified for the
 *    commit: the same files after ignored paths, every digest equal, the root digest recomputed. Nothing is hashed
 *    again.
 */
import { createHash } from 'node:crypto';
import type { CompiledSigner } from '../policy/signing.js';
import { compareManifest, MAX_MODEL_RESOURCES, parseModelStatement, shown, type ManifestMatch, type Parsed } from './model-manifest.js';
import { verifyWithCertificates, verifyWithKey, type DsseParts } from './model-keys.js';
import type { LoadedTrustRoot } from './trust.js';
import { jsonBeyond } from './json-bounds.js';
import { MAX_BUNDLE_BYTES, verifyBundleFull, type SignatureResult, type VerifyOptions } from './verify.js';

/** A bound on model.sig: a signed list of 100,000 files is about 20 MiB of base64 JSON; larger is refused unread. */
export const MAX_MODEL_SIG_BYTES = 32 * 1024 * 1024;
export const DEFAULT_MODEL_SIGNATURE = 'model.sig';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** The bundle media type model_signing writes (and its key and certificate verifiers require). */
export const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';

export interface ModelSignatureResult extends SignatureResult {
  /** sha256:<root digest>: the statement's subject (model_signing's model digest), recomputed from the signed list. */
  modelDigest?: string;
  /** When ok: how many of the commit's files the signature covers, and which it leaves out on purpose. */
  files?: ManifestMatch;
}

export interface ModelVerifyOptions extends VerifyOptions {
  /** The signature's repository path (the rule's `signature`), itself ignored in the file list. Default model.sig. */
  signaturePath?: string;
}

/**
 * V8's JSON.parse takes seconds and hundreds of MB on megabytes of small values ("[[[[", "{},{},{}": ~20 s and
 * 700 MB for 32 MiB of "{},"), so JSON is bounded before parsing, in one linear pass over the bytes: its nesting,
 * and its count of values (openers and separators outside strings). A bundle is a few dozen values around one
 * long base64 string; a statement about 7 per signed file.
 */
const MAX_BUNDLE_VALUES = 10_000;
const MAX_STATEMENT_VALUES = 8 * MAX_MODEL_RESOURCES + 10_000;

interface Bundle {
  json: Record<string, unknown>;
  envelope: DsseParts;
  material: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** Reads the bundle's shape (no trust yet): media type, one DSSE signature over an in-toto payload. */
export function readModelBundle(bytes: Buffer): Parsed<Bundle> {
  if (bytes.length > MAX_MODEL_SIG_BYTES) return fail(`it is ${bytes.length} bytes (more than ${MAX_MODEL_SIG_BYTES})`);
  const beyond = jsonBeyond(bytes, MAX_BUNDLE_VALUES);
  if (beyond) return fail(`it ${beyond}; not a Sigstore bundle`);
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return fail('it is not JSON');
  }
  if (!isObject(json)) return fail('it is not a Sigstore bundle (not a JSON object)');
  const media = json.mediaType;
  if (typeof media !== 'string' || !media.startsWith('application/vnd.dev.sigstore.bundle'))
    return fail(`it is not a Sigstore bundle (mediaType ${shown(media)})`);
  const env = json.dsseEnvelope;
  if (!isObject(env)) return fail('the bundle has no DSSE envelope (a model signature signs an in-toto statement)');
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) return fail(`the DSSE payload type is ${shown(env.payloadType)}, not ${IN_TOTO_PAYLOAD_TYPE}`);
  const sigs = env.signatures;
  if (!Array.isArray(sigs) || sigs.length !== 1)
    return fail(`the DSSE envelope must carry exactly one signature (found ${Array.isArray(sigs) ? sigs.length : 'none'})`);
  const sig = isObject(sigs[0]) ? sigs[0].sig : undefined;
  if (typeof env.payload !== 'string' || typeof sig !== 'string' || sig.length === 0) return fail('the DSSE envelope has no payload or signature');
  const material = isObject(json.verificationMaterial) ? json.verificationMaterial : {};
  const envelope = { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: Buffer.from(env.payload, 'base64'), signature: Buffer.from(sig, 'base64') };
  return { ok: true, value: { json, material, envelope } };
}

/** The DER certificates the bundle carries: model_signing's x509CertificateChain, or a single certificate. */
function bundleCertificates(material: Record<string, unknown>): Buffer[] {
  const chain = isObject(material.x509CertificateChain) ? material.x509CertificateChain.certificates : undefined;
  const list = Array.isArray(chain) ? chain : isObject(material.certificate) ? [material.certificate] : [];
  return list.map((c) => (isObject(c) && typeof c.rawBytes === 'string' ? Buffer.from(c.rawBytes, 'base64') : Buffer.alloc(0)));
}

/** Step 2 for one key or CA signer. */
function verifyTraditional(b: Bundle, signer: Extract<CompiledSigner, { kind: 'key' | 'ca' }>, now: Date): Parsed<SignatureResult> {
  if (b.json.mediaType !== BUNDLE_V03) return fail(`bundle media type ${shown(b.json.mediaType)} is not ${BUNDLE_V03}`);
  let v: Parsed<{ identity: string }>;
  if (signer.kind === 'key') {
    const pk = b.material.publicKey;
    v = verifyWithKey(b.envelope, signer.pem, isObject(pk) && typeof pk.hint === 'string' ? pk.hint : undefined);
  } else {
    const certs = bundleCertificates(b.material);
    v =
      certs.length === 0
        ? fail('the bundle carries no certificate (the rule expects certificate mode)')
        : verifyWithCertificates(b.envelope, certs, signer, now);
  }
  return v.ok ? { ok: true, value: { ok: true, identity: v.value.identity } } : v;
}

/**
 * Step 2 against a rule's signers (any one may match): keyless signers share one verification through verify.ts,
 * for the digest the statement names as its subject (that it is the right one is step 3's work).
 */
function verifySignature(sigBytes: Buffer, b: Bundle, statement: unknown, signers: CompiledSigner[], trust: LoadedTrustRoot | null, now: number) {
  const misses: string[] = [];
  let last: SignatureResult | undefined;
  for (const s of signers) {
    if (s.kind === 'keyless') continue;
    const v = verifyTraditional(b, s, new Date(now));
    if (v.ok) return v;
    misses.push(v.reason);
  }
  const keyless = signers.filter((s) => s.kind === 'keyless');
  if (keyless.length > 0) {
    const m = statement === undefined ? fail('the signed payload is not JSON') : parseModelStatement(statement);
    if (!m.ok) return m;
    if (sigBytes.length > MAX_BUNDLE_BYTES) {
      // The one Sigstore verifier reads at most MAX_BUNDLE_BYTES (verify.ts); a keyless model.sig is refused above it, saying so.
      const mib = MAX_BUNDLE_BYTES / (1 << 20);
      misses.push(
        `it is ${sigBytes.length} bytes: a keyless model signature is verified as a Sigstore bundle, at most ${MAX_BUNDLE_BYTES} bytes (${mib} MiB); ` +
          `sign the model in key or certificate mode (up to ${MAX_MODEL_SIG_BYTES / (1 << 20)} MiB), or with fewer files per signature`,
      );
      return fail(misses.length === 1 ? misses[0] : `no signer matched: ${misses.slice(0, 3).join('; ')}`);
    }
    const v = verifyBundleFull(sigBytes, { digest: `sha256:${m.value.rootDigest}` }, keyless, trust, { now });
    if (v.result.ok) return { ok: true as const, value: v.result };
    misses.push(v.result.reason ?? 'the signature does not verify');
    last = v.result;
  }
  if (misses.length === 0) return fail('the rule names no signer');
  const reason = misses.length === 1 ? misses[0] : `no signer matched: ${misses.slice(0, 3).join('; ')}`;
  return { ok: false as const, reason, result: last };
}

/**
 * Verifies `model.sig` (its bytes as fetched) against a rule's signers and the files Airlock verified for the
 * commit (repository path → SHA-256 hex; the signature file itself may be among them). Key and CA signers do not
 * consult the trusted root; keyless signers need it. Never throws on bad input.
 */
export function verifyModelSignature(
  sigBytes: Buffer,
  files: ReadonlyMap<string, string>,
  signers: CompiledSigner | CompiledSigner[],
  trust: LoadedTrustRoot | null,
  opts: ModelVerifyOptions = {},
): ModelSignatureResult {
  const sigPath = opts.signaturePath ?? DEFAULT_MODEL_SIGNATURE;
  const prefix = `${opts.rule ? `${opts.rule}: ` : ''}${sigPath}: `;
  if (sigBytes.length > MAX_MODEL_SIG_BYTES) return { ok: false, reason: `${prefix}it is ${sigBytes.length} bytes (more than ${MAX_MODEL_SIG_BYTES})` };
  const bundleDigest = `sha256:${createHash('sha256').update(sigBytes).digest('hex')}`;
  const refuse = (reason: string, r: SignatureResult = { ok: false }): ModelSignatureResult => ({
    ...r,
    ok: false,
    reason: `${prefix}${reason}`,
    bundleDigest,
  });
  const bundle = readModelBundle(sigBytes);
  if (!bundle.ok) return refuse(bundle.reason);
  const payload = bundle.value.envelope.payload;
  const beyond = jsonBeyond(payload, MAX_STATEMENT_VALUES);
  if (beyond) return refuse(`the signed payload ${beyond}; not a model signature`);
  let statement: unknown;
  try {
    statement = JSON.parse(payload.toString('utf8'));
  } catch {
    statement = undefined;
  }
  const list = Array.isArray(signers) ? signers : [signers];
  const signed = verifySignature(sigBytes, bundle.value, statement, list, trust, opts.now ?? Date.now());
  if (!signed.ok) return refuse(signed.reason, 'result' in signed ? signed.result : undefined);
  if (statement === undefined) return refuse('the signed payload is not JSON', signed.value);
  const manifest = parseModelStatement(statement);
  if (!manifest.ok) return refuse(manifest.reason, signed.value);
  const match = compareManifest(manifest.value, files, sigPath);
  if (!match.ok) return refuse(match.reason, signed.value);
  return { ...signed.value, ok: true, bundleDigest, modelDigest: `sha256:${manifest.value.rootDigest}`, files: match.value };
}
