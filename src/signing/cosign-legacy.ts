import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import type { CompiledSigner } from '../policy/signing.js';
import type { CosignResult } from './cosign.js';
import { keyIdentity } from './verify.js';

/**
 * cosign's legacy signature scheme (an image at tag `sha256-<hex>.sig`, one layer per signature:
 * a simple-signing JSON payload naming the manifest digest, the base64 signature in the layer's
 * annotation `dev.cosignproject.cosign/signature`). Airlock verifies these for key signers only,
 * with node:crypto: the payload must name the exact digest and the signature must verify over the
 * payload bytes (SHA-256, as cosign signs them) with the pinned key. Certificates (keyless legacy
 * signatures) need the Rekor bundle annotation converted; they are refused with that reason.
 */
export const SIMPLESIGNING_MT = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const LEGACY_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 600);

export function verifyLegacySignature(
  payload: Buffer,
  signatureB64: string | undefined,
  manifestDigest: string,
  signers: CompiledSigner[],
  opts: { rule?: string } = {},
): CosignResult {
  const rule = opts.rule ? `${opts.rule}: ` : '';
  const bundleDigest = `sha256:${createHash('sha256').update(payload).digest('hex')}`;
  const fail = (reason: string): CosignResult => ({ ok: false, reason: oneLine(`${rule}legacy cosign signature (.sig): ${reason}`), bundleDigest });
  const keys = signers.filter((s): s is Extract<CompiledSigner, { kind: 'key' }> => s.kind === 'key');
  if (keys.length === 0)
    return fail(
      "signed with a certificate: Airlock verifies legacy .sig signatures only against a rule's key signers; re-sign with cosign v3 (the Sigstore bundle format) or name a key",
    );
  let doc: { critical?: { image?: Record<string, unknown>; type?: unknown } };
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    return fail('the payload is not JSON');
  }
  const named = doc?.critical?.image?.['docker-manifest-digest'];
  if (named !== manifestDigest) return fail(`the payload names ${typeof named === 'string' ? named.slice(0, 80) : 'no digest'}, not ${manifestDigest}`);
  if (typeof signatureB64 !== 'string' || !/^[A-Za-z0-9+/=\s]{1,2048}$/.test(signatureB64)) return fail('no signature annotation');
  const sig = Buffer.from(signatureB64, 'base64');
  for (const k of keys) {
    try {
      const key = createPublicKey(k.pem);
      if (cryptoVerify('sha256', payload, key, sig)) return { ok: true, identity: keyIdentity(key), bundleDigest, kind: 'signature' };
    } catch {
      /* an unusable key or a malformed signature: try the next signer */
    }
  }
  return fail(`the signature does not verify with ${keys.map((k) => k.name).join(', ')}`);
}
