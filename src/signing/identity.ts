import { ASN1Obj, type X509Certificate } from '@sigstore/core';

/**
 * Fulcio certificate extensions (OIDs 1.3.6.1.4.1.57264.1.*, see sigstore/fulcio docs/oid-info.md)
 * decoded into the publisher a rule names: GitHub or GitLab repository, workflow, ref. Version 1
 * extensions (.1 to .6) hold raw strings; version 2 (.8 onwards) hold a DER UTF8String.
 */
export const FULCIO_OID = {
  issuerV1: '1.3.6.1.4.1.57264.1.1',
  issuer: '1.3.6.1.4.1.57264.1.8',
  buildSignerUri: '1.3.6.1.4.1.57264.1.9',
  buildSignerDigest: '1.3.6.1.4.1.57264.1.10',
  runnerEnvironment: '1.3.6.1.4.1.57264.1.11',
  sourceRepositoryUri: '1.3.6.1.4.1.57264.1.12',
  sourceRepositoryDigest: '1.3.6.1.4.1.57264.1.13',
  sourceRepositoryRef: '1.3.6.1.4.1.57264.1.14',
  buildConfigUri: '1.3.6.1.4.1.57264.1.18',
  buildTrigger: '1.3.6.1.4.1.57264.1.20',
  runInvocationUri: '1.3.6.1.4.1.57264.1.21',
} as const;

export interface Publisher {
  kind: 'github' | 'gitlab';
  /** owner/name or namespace/project, as in the certificate. */
  repository: string;
  /** GitHub: the path under .github/workflows/ (release.yml); GitLab: the CI config path (.gitlab-ci.yml). */
  workflow: string;
  ref?: string;
  environment?: string;
}

export interface CertificateFacts {
  issuer?: string;
  san?: string;
  buildSignerUri?: string;
  buildConfigUri?: string;
  sourceRepositoryUri?: string;
  sourceRepositoryRef?: string;
  runInvocationUri?: string;
}

function v2(cert: X509Certificate, oid: string): string | undefined {
  const ext = cert.extension(oid);
  if (!ext) return undefined;
  try {
    // A v2 extension is a DER UTF8String (tag 12): its contents are the text.
    const o = ASN1Obj.parseBuffer(ext.value as Buffer<ArrayBuffer>);
    return (o.tag.number === 12 && !o.tag.constructed ? o.value : ext.value).toString('utf8');
  } catch {
    return ext.value.toString('utf8');
  }
}

/** The certificate's identity facts, each undefined when absent. */
export function certificateFacts(cert: X509Certificate): CertificateFacts {
  const v1Issuer = cert.extension(FULCIO_OID.issuerV1)?.value.toString('utf8');
  return {
    issuer: v2(cert, FULCIO_OID.issuer) ?? v1Issuer,
    san: cert.subjectAltName,
    buildSignerUri: v2(cert, FULCIO_OID.buildSignerUri),
    buildConfigUri: v2(cert, FULCIO_OID.buildConfigUri),
    sourceRepositoryUri: v2(cert, FULCIO_OID.sourceRepositoryUri),
    sourceRepositoryRef: v2(cert, FULCIO_OID.sourceRepositoryRef),
    runInvocationUri: v2(cert, FULCIO_OID.runInvocationUri),
  };
}

const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';
const GITLAB_ISSUER = 'https://gitlab.com';

/**
 * The publisher from a CI certificate, or null for a person's certificate (or an unknown CI).
 * The workflow comes from the build config URI (the top-level workflow that ran, which is what a
 * PyPI trusted publisher names, as pypi-attestations checks), else the build signer URI.
 */
export function publisherOf(facts: CertificateFacts): Publisher | null {
  const uri = facts.buildConfigUri ?? facts.buildSignerUri;
  const repoUri = facts.sourceRepositoryUri;
  if (!uri || !repoUri) return null;
  const ref = facts.sourceRepositoryRef;
  if (facts.issuer === GITHUB_ISSUER) {
    const m = /^https:\/\/github\.com\/([^/]+\/[^/]+)$/.exec(repoUri);
    const w = /^https:\/\/github\.com\/([^/]+\/[^/]+)\/\.github\/workflows\/([^@]+)@(.+)$/.exec(uri);
    if (!m || !w || w[1].toLowerCase() !== m[1].toLowerCase()) return null;
    return { kind: 'github', repository: m[1], workflow: w[2], ...(ref ? { ref } : {}) };
  }
  if (facts.issuer === GITLAB_ISSUER) {
    const m = /^https:\/\/gitlab\.com\/(.+)$/.exec(repoUri);
    // https://gitlab.com/NAMESPACE/PROJECT//PATH/TO/.gitlab-ci.yml@REF
    const w = /^https:\/\/gitlab\.com\/(.+?)\/\/(.+)@([^@]+)$/.exec(uri);
    if (!m || !w || w[1].toLowerCase() !== m[1].toLowerCase()) return null;
    return { kind: 'gitlab', repository: m[1], workflow: w[2], ...(ref ? { ref } : {}) };
  }
  return null;
}
