import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { CompiledSigner, PublisherRule } from '../../src/policy/signing.js';
import { SignatureCache } from '../../src/signing/cache.js';
import { verifyCosignBundle } from '../../src/signing/cosign.js';
import { normalizeDistFilename, verifyPep740 } from '../../src/signing/pep740.js';
import { shippedTrustRoot } from '../../src/signing/trust.js';
import { jsonTooDeep, verifyBundle } from '../../src/signing/verify.js';

/**
 * The shared signing core (issue 26) on real artefacts made by the real producers
 * (test/fixtures/signatures/SOURCES.md), verified offline against the shipped public-good root,
 * and the negative cases derived from them.
 */
const FIX = new URL('../fixtures/signatures/', import.meta.url).pathname;
const read = (p: string) => readFileSync(FIX + p);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const trust = shippedTrustRoot();

const OCI_SUBJECT = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
const cody: CompiledSigner = { kind: 'keyless', name: 'cody', issuer: 'https://github.com/login/oauth', subject: 'cody@soyland.com' };
const ociBundle = read('oci/oci-attestation.sigstore.json');

const GH_FILE = 'pypi_attestations-0.0.19.tar.gz';
const GH_SHA = sha(read(`pypi/${GH_FILE}`));
const gh: PublisherRule = { kind: 'github', repository: 'trailofbits/pypi-attestations', workflow: 'release.yml' };
const GL_FILE = 'gitlab_oidc_project-0.0.3.tar.gz';
const GL_SHA = sha(read(`pypi/${GL_FILE}`));
const gl: PublisherRule = { kind: 'gitlab', repository: 'facutuesca/gitlab-oidc-project', workflow: '.gitlab-ci.yml' };
/** A single attestation wrapped as a provenance object, as PyPI serves it. */
const provenanceOf = (att: unknown, publisher: object = {}) => ({ version: 1, attestation_bundles: [{ publisher, attestations: [att] }] });
const glAttestation = () => JSON.parse(read(`pypi/${GL_FILE}.publish.attestation`).toString('utf8'));

describe('cosign v3 bundle (real, keyless)', () => {
  it('verifies for its subject digest with SAN cody@soyland.com and issuer https://github.com/login/oauth', () => {
    const r = verifyCosignBundle(ociBundle, OCI_SUBJECT, cody, trust);
    expect(r).toMatchObject({
      ok: true,
      identity: 'https://github.com/login/oauth cody@soyland.com',
      kind: 'attestation',
      bundleDigest: `sha256:${sha(ociBundle)}`,
      trustVersion: trust.version,
      tlogIndex: '175508996',
      integratedTime: 1740770291,
    });
    expect(r.reason).toBeUndefined();
  });

  it('refuses another digest, naming the digest the statement signs', () => {
    const other = `sha256:${'0'.repeat(64)}`;
    const r = verifyCosignBundle(ociBundle, other, cody, trust, { rule: 'oci.allow[0]' });
    expect(r.ok).toBe(false);
    expect(r.reason).toBe(`oci.allow[0]: the signed statement's subject is ${OCI_SUBJECT}, not ${other}`);
  });

  it('refuses another identity or another issuer, saying who signed', () => {
    const wrongSubject = verifyCosignBundle(ociBundle, OCI_SUBJECT, { ...cody, subject: 'mallory@example.com' }, trust);
    expect(wrongSubject.ok).toBe(false);
    expect(wrongSubject.reason).toContain('subject is cody@soyland.com, expected mallory@example.com');
    const wrongIssuer = verifyCosignBundle(ociBundle, OCI_SUBJECT, { ...cody, issuer: 'https://accounts.google.com' }, trust);
    expect(wrongIssuer.ok).toBe(false);
    expect(wrongIssuer.reason).toContain('issuer is https://github.com/login/oauth, expected https://accounts.google.com');
  });

  it('matches a subject pattern only anchored at both ends', () => {
    expect(
      verifyCosignBundle(ociBundle, OCI_SUBJECT, { kind: 'keyless', name: 'p', issuer: cody.issuer, subjectPattern: /^(?:.*@soyland\.com)$/u }, trust).ok,
    ).toBe(true);
    expect(verifyCosignBundle(ociBundle, OCI_SUBJECT, { kind: 'keyless', name: 'p', issuer: cody.issuer, subjectPattern: /^(?:cody)$/u }, trust).ok).toBe(
      false,
    );
  });

  it('accepts when any one of several signers matches, and verifies once for all keyless signers', () => {
    const r = verifyCosignBundle(ociBundle, OCI_SUBJECT, [{ ...cody, name: 'other', subject: 'x@y' }, cody], trust);
    expect(r.ok).toBe(true);
  });

  it('refuses an edited statement (the subject changed after signing) and a changed signature', () => {
    const j = JSON.parse(ociBundle.toString('utf8'));
    const st = JSON.parse(Buffer.from(j.dsseEnvelope.payload, 'base64').toString('utf8'));
    st.subject[0].digest.sha256 = '1'.repeat(64);
    j.dsseEnvelope.payload = Buffer.from(JSON.stringify(st)).toString('base64');
    const edited = verifyCosignBundle(JSON.stringify(j), `sha256:${'1'.repeat(64)}`, cody, trust);
    expect(edited.ok).toBe(false);
    expect(edited.reason).toMatch(/log entry does not match|signature/);
    const k = JSON.parse(ociBundle.toString('utf8'));
    const sig = Buffer.from(k.dsseEnvelope.signatures[0].sig, 'base64');
    sig[sig.length - 1] ^= 1;
    k.dsseEnvelope.signatures[0].sig = sig.toString('base64');
    expect(verifyCosignBundle(JSON.stringify(k), OCI_SUBJECT, cody, trust).ok).toBe(false);
  });

  it('refuses with no trusted root (fail closed)', () => {
    expect(verifyCosignBundle(ociBundle, OCI_SUBJECT, cody, null).reason).toContain('no usable Sigstore trusted root');
  });
});

describe('malformed bundles: refused with a clear one-line reason, in bounded time, never thrown', () => {
  const cases: [string, unknown, RegExp][] = [
    ['bad JSON', Buffer.from('{"mediaType": '), /^the bundle is not JSON/],
    ['a JSON array', '[1,2]', /^the bundle is not a JSON object/],
    ['null', 'null', /^the bundle is not a JSON object/],
    ['no verification material', JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json' }), /^not a Sigstore bundle/],
    ['wrong field types', JSON.stringify({ mediaType: 3, verificationMaterial: 'x', dsseEnvelope: [] }), /^not a Sigstore bundle/],
    ['an unknown media type', JSON.stringify({ ...JSON.parse(ociBundle.toString()), mediaType: 'text/plain' }), /^not a Sigstore bundle/],
    [
      'a thousand log entries',
      JSON.stringify({ ...JSON.parse(ociBundle.toString()), verificationMaterial: { tlogEntries: new Array(1000).fill({}) } }),
      /1000 log entries/,
    ],
  ];
  for (const [what, input, reason] of cases) {
    it(`${what}`, () => {
      const r = verifyBundle(input, { digest: OCI_SUBJECT }, cody, trust);
      expect(r.ok).toBe(false);
      expect(r.reason).toMatch(reason);
      expect(r.reason).not.toContain('\n');
    });
  }

  it('a 50 MB bundle is refused by its size, before parsing', () => {
    const huge = Buffer.alloc(50 << 20, 0x20);
    const t0 = performance.now();
    const r = verifyBundle(huge, { digest: OCI_SUBJECT }, cody, trust);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(r).toEqual({ ok: false, reason: `the bundle is ${50 << 20} bytes, over the ${4 << 20}-byte limit for a Sigstore bundle` });
  });

  it('megabytes of nesting are refused by a linear depth check, not handed to JSON.parse (seconds in V8)', () => {
    for (const text of ['['.repeat(4_000_000), '{"a":'.repeat(800_000)]) {
      const t0 = performance.now();
      const r = verifyBundle(text, { digest: OCI_SUBJECT }, cody, trust);
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(r.reason).toBe('the bundle nests deeper than 64 levels; not a Sigstore bundle');
    }
    const t0 = performance.now();
    expect(verifyPep740('['.repeat(4_000_000), GL_FILE, GL_SHA, gl, trust).reason).toContain('the provenance nests deeper than 64 levels');
    expect(performance.now() - t0).toBeLessThan(2_000);
    // Brackets inside strings (escaped quotes too) do not count.
    expect(jsonTooDeep(Buffer.from(JSON.stringify({ a: '['.repeat(100) + '\\"' + '{'.repeat(100) })))).toBe(false);
    expect(jsonTooDeep(Buffer.from('['.repeat(65) + ']'.repeat(65)))).toBe(true);
  });

  it('a subject digest that is not sha256:<hex> is refused', () => {
    expect(verifyBundle(ociBundle, { digest: 'latest' }, cody, trust).reason).toContain('expected subject digest as sha256:<hex>');
  });
});

describe('PEP 740 provenance (real: GitHub and GitLab trusted publishers)', () => {
  it('verifies the GitHub provenance object for its file and publisher', () => {
    const r = verifyPep740(read(`pypi/${GH_FILE}.provenance`), GH_FILE, GH_SHA, gh, trust, { rule: 'pypi.allow[0]' });
    expect(r).toMatchObject({
      ok: true,
      attestations: 1,
      publisher: { kind: 'github', repository: 'trailofbits/pypi-attestations', workflow: 'release.yml', ref: 'refs/tags/v0.0.19' },
      identity: 'https://token.actions.githubusercontent.com https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@refs/tags/v0.0.19',
      trustVersion: trust.version,
      tlogIndex: '153454663',
    });
  });

  it('verifies the single publish and SLSA attestations', () => {
    for (const f of ['publish', 'slsa']) {
      const att = JSON.parse(read(`pypi/${GH_FILE}.${f}.attestation`).toString('utf8'));
      expect(verifyPep740(provenanceOf(att), GH_FILE, GH_SHA, gh, trust)).toMatchObject({ ok: true });
    }
  });

  it('verifies the GitLab attestation for its file and publisher', () => {
    expect(verifyPep740(provenanceOf(glAttestation()), GL_FILE, GL_SHA, gl, trust)).toMatchObject({
      ok: true,
      publisher: { kind: 'gitlab', repository: 'facutuesca/gitlab-oidc-project', workflow: '.gitlab-ci.yml', ref: 'refs/heads/main' },
    });
  });

  it('refuses a dist with a flipped byte (its sha256 is not the one signed)', () => {
    const dist = Buffer.from(read(`pypi/${GH_FILE}`));
    dist[100] ^= 1;
    const r = verifyPep740(read(`pypi/${GH_FILE}.provenance`), GH_FILE, sha(dist), gh, trust, { rule: 'pypi.allow[0]' });
    expect(r.ok).toBe(false);
    expect(r.reason).toContain(`pypi.allow[0]: ${GH_FILE}: attestation 1: the signed statement's subject is sha256:${GH_SHA}, not sha256:${sha(dist)}`);
  });

  it('refuses an edited statement (a byte changed after signing)', () => {
    const att = glAttestation();
    const st = Buffer.from(att.envelope.statement, 'base64').toString('utf8').replace('"predicate":null', '"predicate":{}');
    att.envelope.statement = Buffer.from(st).toString('base64');
    const r = verifyPep740(provenanceOf(att), GL_FILE, GL_SHA, gl, trust);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/attestation 1: .*(log entry does not match|signature)/);
  });

  it('refuses a wrong publisher repository, workflow, kind or environment', () => {
    const prov = read(`pypi/${GH_FILE}.provenance`);
    expect(verifyPep740(prov, GH_FILE, GH_SHA, { ...gh, repository: 'evil/pypi-attestations' }, trust).reason).toContain(
      'published from repository trailofbits/pypi-attestations, expected evil/pypi-attestations',
    );
    expect(verifyPep740(prov, GH_FILE, GH_SHA, { ...gh, workflow: 'ci.yml' }, trust).reason).toContain('published by workflow release.yml, expected ci.yml');
    expect(
      verifyPep740(prov, GH_FILE, GH_SHA, { kind: 'gitlab', repository: 'trailofbits/pypi-attestations', workflow: 'release.yml' }, trust).reason,
    ).toContain('issuer is https://token.actions.githubusercontent.com, expected https://gitlab.com');
    expect(verifyPep740(prov, GH_FILE, GH_SHA, { ...gh, environment: 'pypi' }, trust).reason).toContain('published from environment (none), expected pypi');
    expect(verifyPep740(provenanceOf(glAttestation()), GL_FILE, GL_SHA, { ...gl, workflow: 'ci/release.yml' }, trust).reason).toContain(
      'published by workflow .gitlab-ci.yml, expected ci/release.yml',
    );
  });

  it("refuses provenance for another file with the same bytes' digest but another name", () => {
    const r = verifyPep740(read(`pypi/${GH_FILE}.provenance`), 'other-0.0.19.tar.gz', GH_SHA, gh, trust);
    expect(r.reason).toContain(`the statement names "${GH_FILE}", not this file`);
  });

  it('compares file names as PyPI normalises them', () => {
    expect(normalizeDistFilename('Pypi.Attestations-0.0.19.tar.gz')).toBe('pypi_attestations-0.0.19.tar.gz');
    expect(normalizeDistFilename('rfc8785-0.1.2-py3-none-any.whl')).toBe('rfc8785-0.1.2-py3-none-any.whl');
    expect(normalizeDistFilename('Foo.Bar-1.0-PY3-none-any.whl')).toBe('foo_bar-1.0-py3-none-any.whl');
    expect(verifyPep740(read(`pypi/${GH_FILE}.provenance`), 'pypi-attestations-0.0.19.tar.gz', GH_SHA, gh, trust).ok).toBe(true);
  });

  it('refuses malformed provenance with a clear reason', () => {
    const bad: [unknown, string][] = [
      ['{', 'the provenance is not JSON'],
      [{}, 'the provenance has no attestation_bundles'],
      [{ attestation_bundles: [{}] }, 'an attestation bundle has no attestations list'],
      [provenanceOf({ envelope: {} }), 'an attestation has no verification_material'],
      [provenanceOf({ ...glAttestation(), envelope: { statement: 1 } }), 'an attestation has no envelope'],
      [{ attestation_bundles: [{ attestations: [] }] }, 'the provenance has no attestations'],
      [Buffer.alloc(50 << 20, 0x20), 'over the'],
    ];
    for (const [p, reason] of bad) {
      const r = verifyPep740(p, GL_FILE, GL_SHA, gl, trust);
      expect(r.ok).toBe(false);
      expect(r.reason).toContain(reason);
    }
  });
});

describe('results cache', () => {
  it('keys by subject, bundle, trust version and rule; bounded, least recently used first', () => {
    const c = new SignatureCache(2);
    let calls = 0;
    const compute = () => (calls++, { ok: true });
    c.through('s1', 'b1', 't1', 'r1', compute);
    c.through('s1', 'b1', 't1', 'r1', compute);
    expect(calls).toBe(1);
    c.through('s1', 'b1', 't2', 'r1', compute);
    expect(calls).toBe(2);
    c.get('s1', 'b1', 't1', 'r1');
    c.through('s1', 'b1', 't1', 'r2', compute);
    expect(c.size).toBe(2);
    expect(c.get('s1', 'b1', 't2', 'r1')).toBeUndefined();
    expect(c.get('s1', 'b1', 't1', 'r1')).toEqual({ ok: true });
  });
});
