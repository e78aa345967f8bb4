import type { SignatureResult } from './verify.js';

/**
 * What the record keeps of a signature verification (issue 26): the pull row's `signature`
 * column, compact JSON covered by the hash chain when present. Front-ends pass
 * `signatureField(result)` as `signature` to serveBlob / serveSmall / a Refusal's row; the
 * console, `airlock records` and the SBOM read it back with `parseSignature`.
 */
export type RecordSignature = Omit<SignatureResult, 'reason'> & {
  /** Continuity (signing/continuity.ts): the identity earlier versions were verified under, when this one differs and the rule warns. */
  changedFrom?: string;
};

/** Longest text kept per string field: identities and digests are short; this bounds a hostile certificate's SAN. */
const MAX_FIELD = 300;
const cut = (s: string | undefined) => (s === undefined ? undefined : s.length > MAX_FIELD ? `${s.slice(0, MAX_FIELD - 1)}…` : s);

/** A verification result as the row's `signature` text (undefined fields dropped); null when there is nothing to keep. */
export function signatureField(r: SignatureResult | null | undefined, extra: { changedFrom?: string } = {}): string | null {
  if (!r) return null;
  const p = r.publisher;
  const out: RecordSignature = {
    ok: r.ok,
    identity: cut(r.identity),
    publisher: p
      ? {
          kind: p.kind,
          repository: cut(p.repository)!,
          workflow: cut(p.workflow)!,
          ...(p.ref ? { ref: cut(p.ref) } : {}),
          ...(p.environment ? { environment: cut(p.environment) } : {}),
        }
      : undefined,
    bundleDigest: cut(r.bundleDigest),
    tlogIndex: cut(r.tlogIndex),
    integratedTime: r.integratedTime,
    trustVersion: cut(r.trustVersion),
    changedFrom: cut(extra.changedFrom),
  };
  if (!out.identity && !out.publisher && !out.bundleDigest && r.ok === false) return null;
  return JSON.stringify(out);
}

/** A row's `signature` text read back; null when absent or not a record Airlock wrote. */
export function parseSignature(text: string | null | undefined): RecordSignature | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text) as RecordSignature;
    return v && typeof v === 'object' && typeof v.ok === 'boolean' ? v : null;
  } catch {
    return null;
  }
}

/** One line naming the signer: the publisher (repository, workflow) when there is one, else the identity. */
export function signerLabel(s: RecordSignature): string {
  const who = s.publisher
    ? `${s.publisher.kind}:${s.publisher.repository} ${s.publisher.workflow}${s.publisher.ref ? `@${s.publisher.ref}` : ''}`
    : (s.identity ?? 'unknown signer');
  return s.ok ? who : `not verified (${who})`;
}
