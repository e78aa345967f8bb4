/**
 * Verification of an OpenSSF model signature (`model.sig`, sigstore/model-transparency): a Sigstore bundle v0.3
 * whose DSSE envelope carries an in-toto statement listing every file of the model with its SHA-256.
 *
 * verifyModelSignature checks, in this order, and refuses at the first failure with a one-line reason:
 * 1. the bytes: at most MAX_MODEL_SIG_BYTES, JSON, a Sigstore bundle with a DSSE envelope of one in-toto signature;
 * 2. the signature, by the signer's mode: keyless (Sigstore certificate + log entry, identity), key, or certificate
 *    chain to a CA (model-keys.ts);
 * 3. the statement (model-manifest.ts) and its file list against the SHA-256s Airlock already verified for the
 *    commit: the same files after ignored paths, every digest equal, the root digest recomputed. Nothing is hashed
 *    again.
 */
import { createHash } from 'node:crypto';
import { compareManifest, parseModelStatement, shown, type ManifestMatch, type Parsed } from './model-manifest.js';
import { verifyWithCertificates, verifyWithKey, type DsseParts } from './model-keys.js';

/** A bound on model.sig: a signed list of 100,000 files is about 20 MiB of base64 JSON; larger is refused unread. */
export const MAX_MODEL_SIG_BYTES = 32 * 1024 * 1024;
export const DEFAULT_MODEL_SIGNATURE = 'model.sig';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** The bundle media type model_signing writes (and its key and certificate verifiers require). */
export const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';

/** The result shape of issue 26 (SIGNING-DESIGN.md). */
export interface SignatureResult {
  ok: boolean;
  reason?: string;
  identity?: string;
  bundleDigest?: string;
  tlogIndex?: string;
  integratedTime?: number;
  trustVersion?: string;
}

export interface ModelSignatureResult extends SignatureResult {
  /** sha256:<root digest>, the statement's subject, recomputed from the signed list. */
  modelDigest?: string;
  /** When ok: how many of the commit's files the signature covers, and which it leaves out on purpose. */
  files?: ManifestMatch;
}

/** Who must have signed: a key (PEM), a CA (PEM, optional leaf subject), or a keyless identity. */
export type ModelSigner = { key: string } | { ca: string; subject?: string } | { issuer: string; subject?: string; subjectPattern?: string };

export interface ModelSignatureOptions {
  /** The signature's repository path (the rule's `signature`), ignored in the file list. Default model.sig. */
  signaturePath?: string;
  /** The verification time for certificate validity (certificate mode). Default now. */
  now?: Date;
}

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
  return {
    ok: true,
    value: {
      json,
      material,
      envelope: { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: Buffer.from(env.payload, 'base64'), signature: Buffer.from(sig, 'base64') },
    },
  };
}

/** The DER certificates the bundle carries: model_signing's x509CertificateChain, or a single certificate. */
function bundleCertificates(material: Record<string, unknown>): Buffer[] {
  const chain = isObject(material.x509CertificateChain) ? material.x509CertificateChain.certificates : undefined;
  const list = Array.isArray(chain) ? chain : isObject(material.certificate) ? [material.certificate] : [];
  return list.map((c) => (isObject(c) && typeof c.rawBytes === 'string' ? Buffer.from(c.rawBytes, 'base64') : Buffer.alloc(0)));
}

/** Step 2 for key and certificate modes (keyless goes through the Sigstore verifier). */
function verifySignature(b: Bundle, signer: ModelSigner, now: Date): Parsed<SignatureResult> {
  if ('key' in signer || 'ca' in signer) {
    if (b.json.mediaType !== BUNDLE_V03) return fail(`bundle media type ${shown(b.json.mediaType)} is not ${BUNDLE_V03}`);
  }
  if ('key' in signer) {
    const hint = isObject(b.material.publicKey) && typeof b.material.publicKey.hint === 'string' ? b.material.publicKey.hint : undefined;
    const v = verifyWithKey(b.envelope, signer.key, hint);
    return v.ok ? { ok: true, value: { ok: true, identity: v.value.identity } } : v;
  }
  if ('ca' in signer) {
    const certs = bundleCertificates(b.material);
    if (certs.length === 0) return fail('the bundle carries no certificate (the rule expects certificate mode)');
    const v = verifyWithCertificates(b.envelope, certs, signer.ca, { now, subject: signer.subject });
    return v.ok ? { ok: true, value: { ok: true, identity: v.value.identity } } : v;
  }
  return fail('keyless model signatures need the Sigstore verifier (not wired yet)');
}

/**
 * Verifies `model.sig` (its bytes as fetched) against the signer a rule names and the files Airlock verified for
 * the commit (repository path → SHA-256 hex, model.sig itself included or not). Never throws on bad input.
 */
export function verifyModelSignature(
  sigBytes: Buffer,
  files: ReadonlyMap<string, string>,
  signer: ModelSigner,
  options: ModelSignatureOptions = {},
): ModelSignatureResult {
  const sigPath = options.signaturePath ?? DEFAULT_MODEL_SIGNATURE;
  if (sigBytes.length > MAX_MODEL_SIG_BYTES) return { ok: false, reason: `${sigPath}: it is ${sigBytes.length} bytes (more than ${MAX_MODEL_SIG_BYTES})` };
  const bundleDigest = `sha256:${createHash('sha256').update(sigBytes).digest('hex')}`;
  const refuse = (reason: string, r: SignatureResult = { ok: false }): ModelSignatureResult => ({
    ...r,
    ok: false,
    reason: `${sigPath}: ${reason}`,
    bundleDigest,
  });
  const bundle = readModelBundle(sigBytes);
  if (!bundle.ok) return refuse(bundle.reason);
  const signed = verifySignature(bundle.value, signer, options.now ?? new Date());
  if (!signed.ok) return refuse(signed.reason);
  let statement: unknown;
  try {
    statement = JSON.parse(bundle.value.envelope.payload.toString('utf8'));
  } catch {
    return refuse('the signed payload is not JSON', signed.value);
  }
  const manifest = parseModelStatement(statement);
  if (!manifest.ok) return refuse(manifest.reason, signed.value);
  const match = compareManifest(manifest.value, files, sigPath);
  if (!match.ok) return refuse(match.reason, signed.value);
  return { ...signed.value, ok: true, bundleDigest, modelDigest: `sha256:${manifest.value.rootDigest}`, files: match.value };
}
