import type { CompiledSigner } from '../policy/signing.js';
import type { LoadedTrustRoot } from './trust.js';
import { verifyBundleFull, type SignatureResult, type VerifyOptions } from './verify.js';

/**
 * A cosign v3 bundle for an image (issue 26): a Sigstore bundle whose DSSE envelope holds an
 * in-toto statement naming the image's manifest digest, either a signature (predicate
 * https://sigstore.dev/cosign/sign/v1) or an attestation (any other predicate: SLSA provenance,
 * an SBOM...). The caller fetched it (referrers API or tag fallback) and passes its bytes.
 */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

export interface CosignResult extends SignatureResult {
  /** signature (cosign sign) or attestation (cosign attest), when verified. */
  kind?: 'signature' | 'attestation';
  predicateType?: string;
}

export function verifyCosignBundle(
  bundleJson: unknown,
  manifestDigest: string,
  signer: CompiledSigner | CompiledSigner[],
  trust: LoadedTrustRoot | null,
  opts: VerifyOptions = {},
): CosignResult {
  const v = verifyBundleFull(bundleJson, { digest: manifestDigest }, signer, trust, opts);
  if (!v.result.ok) return v.result;
  if (!v.statement) {
    return {
      ...v.result,
      ok: false,
      reason: `${opts.rule ? `${opts.rule}: ` : ''}a cosign bundle for an image must carry an in-toto statement (DSSE), found a message signature`,
    };
  }
  const predicateType = typeof v.statement.predicateType === 'string' ? v.statement.predicateType : '';
  return { ...v.result, kind: predicateType === COSIGN_SIGN_PREDICATE ? 'signature' : 'attestation', predicateType };
}
