/**
 * The size bound of a keyless model.sig (issue 26): the one Sigstore verifier reads at most 4 MiB
 * (verify.ts MAX_BUNDLE_BYTES), so a larger keyless signature is refused with a reason that says
 * so and what to do; key and certificate modes take up to 32 MiB. Built from the real keyless
 * fixture with whitespace added (the same JSON, only longer).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CompiledSigner } from '../../src/policy/signing.js';
import { verifyModelSignature } from '../../src/signing/model-sig.js';
import { shippedTrustRoot } from '../../src/signing/trust.js';
import { MAX_BUNDLE_BYTES } from '../../src/signing/verify.js';

const DIR = join(import.meta.dirname, '../fixtures/signatures/models/v1.1.0-sigstore');
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const SIG = readFileSync(join(DIR, 'model.sig'));
const files = new Map(readdirSync(DIR).map((f) => [f, sha256(readFileSync(join(DIR, f)))]));
const stefan: CompiledSigner = { kind: 'keyless', name: 'ibm-stefanb', issuer: 'https://sigstore.verify.ibm.com/oauth2', subject: 'stefanb@us.ibm.com' };
/** The fixture grown to `size` bytes by spaces before its last brace: the same JSON value. */
const padded = (size: number) => Buffer.concat([SIG.subarray(0, SIG.lastIndexOf('}')), Buffer.alloc(size - SIG.length, ' '), Buffer.from('}')]);

describe('keyless model.sig: at most 4 MiB', () => {
  it('verifies the fixture grown to exactly the bound', () => {
    const sig = padded(MAX_BUNDLE_BYTES);
    expect(sig.length).toBe(MAX_BUNDLE_BYTES);
    expect(verifyModelSignature(sig, files, stefan, shippedTrustRoot()).ok).toBe(true);
  });

  it('refuses one byte more with a one-line reason naming the bound and what to do, and the bundle digest', () => {
    const sig = padded(MAX_BUNDLE_BYTES + 1);
    const r = verifyModelSignature(sig, files, stefan, shippedTrustRoot(), { rule: 'hf.allow[0]' });
    expect(r).toEqual({
      ok: false,
      bundleDigest: `sha256:${sha256(sig)}`,
      reason:
        `hf.allow[0]: model.sig: it is ${MAX_BUNDLE_BYTES + 1} bytes: a keyless model signature is verified as a Sigstore bundle, ` +
        `at most ${MAX_BUNDLE_BYTES} bytes (4 MiB); sign the model in key or certificate mode (up to 32 MiB), or with fewer files per signature`,
    });
  });
});
