import { createHash } from 'node:crypto';
import { normalizeName } from '../names/pypi.js';
import type { CompiledSigner, PublisherRule } from '../policy/signing.js';
import type { Publisher } from './identity.js';
import type { LoadedTrustRoot } from './trust.js';
import { jsonTooDeep, MAX_BUNDLE_BYTES, MAX_JSON_DEPTH, verifyBundleFull, type SignatureResult, type VerifyOptions } from './verify.js';

/**
 * PEP 740 provenance (issue 26): each attestation (a certificate, its transparency-log entries and
 * a DSSE envelope of an in-toto statement) is converted into a Sigstore v0.3 bundle and verified
 * offline, as pypi-attestations does; Airlock then checks that the statement names this file (its
 * name normalised as PyPI does, and its SHA-256) and that the certificate's publisher (GitHub or
 * GitLab repository and workflow, decoded from its Fulcio extensions) is the one the rule names.
 */

const ISSUERS: Record<PublisherRule['kind'], string> = { github: 'https://token.actions.githubusercontent.com', gitlab: 'https://gitlab.com' };
const MAX_ATTESTATIONS = 16;

interface Pep740Attestation {
  version?: number;
  verification_material?: { certificate?: string; transparency_entries?: unknown[] };
  envelope?: { statement?: string; signature?: string };
}

/** One PEP 740 attestation as a Sigstore bundle (v0.3, DSSE, one certificate), or a reason. */
export function attestationToBundle(a: unknown): { ok: true; bundle: object } | { ok: false; reason: string } {
  const att = a as Pep740Attestation;
  if (!att || typeof att !== 'object' || Array.isArray(att)) return { ok: false, reason: 'an attestation is not a JSON object' };
  const vm = att.verification_material;
  const env = att.envelope;
  if (!vm || typeof vm.certificate !== 'string' || !Array.isArray(vm.transparency_entries))
    return { ok: false, reason: 'an attestation has no verification_material (certificate, transparency_entries)' };
  if (!env || typeof env.statement !== 'string' || typeof env.signature !== 'string')
    return { ok: false, reason: 'an attestation has no envelope (statement, signature)' };
  if (vm.transparency_entries.length === 0) return { ok: false, reason: 'an attestation has no transparency log entry' };
  return {
    ok: true,
    bundle: {
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { certificate: { rawBytes: vm.certificate }, tlogEntries: vm.transparency_entries.slice(0, 1) },
      dsseEnvelope: { payload: env.statement, payloadType: 'application/vnd.in-toto+json', signatures: [{ sig: env.signature, keyid: '' }] },
    },
  };
}

/**
 * A distribution file name as PyPI compares them (pypi-attestations' "ultranormalised" form): the
 * project name by PEP 503 with '-' as '_', the version and the rest lowercased.
 */
export function normalizeDistFilename(f: string): string {
  const lower = f.toLowerCase();
  if (lower.endsWith('.whl')) {
    const parts = f.slice(0, -4).split('-');
    if (parts.length < 5) return lower;
    return [normalizeName(parts[0]).replace(/-/g, '_'), ...parts.slice(1).map((p) => p.toLowerCase())].join('-') + '.whl';
  }
  const ext = ['.tar.gz', '.zip'].find((e) => lower.endsWith(e));
  if (!ext) return lower;
  const base = f.slice(0, -ext.length);
  const dash = base.lastIndexOf('-');
  if (dash <= 0) return lower;
  return `${normalizeName(base.slice(0, dash)).replace(/-/g, '_')}-${base.slice(dash + 1).toLowerCase()}${ext}`;
}

/** Why a certificate's publisher is not the rule's, or null when it is. */
export function publisherMismatch(rule: PublisherRule, got: Publisher | undefined, claimedEnvironment?: string | null): string | null {
  if (!got) return `the certificate names no ${rule.kind === 'github' ? 'GitHub' : 'GitLab'} publisher`;
  if (got.kind !== rule.kind) return `published from ${got.kind}, expected ${rule.kind}`;
  if (got.repository.toLowerCase() !== rule.repository.toLowerCase()) return `published from repository ${got.repository}, expected ${rule.repository}`;
  if (got.workflow !== rule.workflow) return `published by workflow ${got.workflow}, expected ${rule.workflow}`;
  // The environment is not in the certificate: it is PyPI's record of the trusted publisher (the provenance's publisher object).
  if (rule.environment !== undefined && claimedEnvironment !== rule.environment)
    return `published from environment ${claimedEnvironment ?? '(none)'}, expected ${rule.environment}`;
  return null;
}

/** Who published, for comparing attestations: the publisher, else the certificate's identity. */
const publisherKey = (r: SignatureResult): string =>
  r.publisher ? `${r.publisher.kind}:${r.publisher.repository.toLowerCase()} ${r.publisher.workflow}` : (r.identity ?? '(none)');

export interface Pep740Result extends SignatureResult {
  /** How many attestations were verified (all of them, when ok). */
  attestations?: number;
}

/**
 * Verify a file's PEP 740 provenance object (bytes as fetched, or parsed): every attestation must
 * verify, name this file and its SHA-256, and come from the rule's publisher. With `publisher` null
 * (continuity under a rule that names none) any certificate the trusted root verifies is accepted, and
 * the result's publisher is the one found (the caller compares it with the recorded one).
 */
export function verifyPep740(
  provenance: unknown,
  filename: string,
  sha256: string,
  publisher: PublisherRule | null,
  trust: LoadedTrustRoot | null,
  opts: VerifyOptions = {},
): Pep740Result {
  const rule = opts.rule ? `${opts.rule}: ` : '';
  const fail = (reason: string, extra: Partial<SignatureResult> = {}): Pep740Result => ({
    ok: false,
    reason: `${rule}${filename}: ${reason}`.replace(/\s+/g, ' ').slice(0, 600),
    ...extra,
  });
  let obj: unknown = provenance;
  let bundleDigest: string | undefined;
  try {
    if (typeof provenance === 'string' || Buffer.isBuffer(provenance)) {
      const buf = Buffer.from(provenance);
      if (buf.length > MAX_BUNDLE_BYTES) return fail(`the provenance is ${buf.length} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
      bundleDigest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
      if (jsonTooDeep(buf)) return fail(`the provenance nests deeper than ${MAX_JSON_DEPTH} levels`, { bundleDigest });
      try {
        obj = JSON.parse(buf.toString('utf8'));
      } catch {
        return fail('the provenance is not JSON', { bundleDigest });
      }
    } else {
      const text = JSON.stringify(provenance) ?? '';
      if (text.length > MAX_BUNDLE_BYTES) return fail(`the provenance is ${text.length} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
      bundleDigest = `sha256:${createHash('sha256').update(text).digest('hex')}`;
    }
    if (!/^[0-9a-f]{64}$/.test(sha256)) return fail(`expected the file's sha256 as 64 hex digits, got ${JSON.stringify(sha256.slice(0, 80))}`);
    const bundles = (obj as { attestation_bundles?: unknown })?.attestation_bundles;
    if (!Array.isArray(bundles) || bundles.length === 0) return fail('the provenance has no attestation_bundles', { bundleDigest });
    const signer: CompiledSigner = publisher
      ? { kind: 'keyless', name: `publisher ${publisher.kind}:${publisher.repository}`, issuer: ISSUERS[publisher.kind] }
      : { kind: 'keyless', name: 'any publisher' };
    const want = normalizeDistFilename(filename);
    let first: SignatureResult | undefined;
    let count = 0;
    for (const b of bundles as { publisher?: { environment?: string | null }; attestations?: unknown }[]) {
      if (!b || typeof b !== 'object' || !Array.isArray(b.attestations)) return fail('an attestation bundle has no attestations list', { bundleDigest });
      for (const a of b.attestations) {
        if (++count > MAX_ATTESTATIONS) return fail(`the provenance has more than ${MAX_ATTESTATIONS} attestations`, { bundleDigest });
        const conv = attestationToBundle(a);
        if (!conv.ok) return fail(conv.reason, { bundleDigest });
        const v = verifyBundleFull(conv.bundle, { digest: `sha256:${sha256}` }, signer, trust, { now: opts.now });
        if (!v.result.ok) return fail(`attestation ${count}: ${v.result.reason}`, { bundleDigest });
        const named = v.statement!.subject.filter((s) => typeof s.digest.sha256 === 'string' && s.digest.sha256.toLowerCase() === sha256);
        if (!named.some((s) => typeof s.name === 'string' && (s.name === filename || normalizeDistFilename(s.name) === want)))
          return fail(`attestation ${count}: the statement names ${named.map((s) => JSON.stringify(s.name)).join(', ')}, not this file`, { bundleDigest });
        const miss = publisher ? publisherMismatch(publisher, v.result.publisher, b.publisher?.environment) : null;
        if (miss) return fail(`attestation ${count}: ${miss}`, { bundleDigest, identity: v.result.identity });
        // With no publisher to check against, every attestation must come from the same one (the result names one).
        if (!publisher && first && publisherKey(first) !== publisherKey(v.result))
          return fail(`attestation ${count}: published by ${publisherKey(v.result)}, attestation 1 by ${publisherKey(first)}`, { bundleDigest });
        first ??= v.result;
      }
    }
    if (!first) return fail('the provenance has no attestations', { bundleDigest });
    return { ...first, bundleDigest, attestations: count };
  } catch (e) {
    return fail(`the provenance could not be verified: ${(e as Error).message ?? String(e)}`, bundleDigest ? { bundleDigest } : {});
  }
}
