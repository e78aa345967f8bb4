import { describe, expect, it } from 'vitest';
import { buildSbom } from '../../src/audit/sbom.js';
import { approvalFor } from '../../src/console/approval.js';
import { artefactPage } from '../../src/console/artefact.js';
import { overviewPage } from '../../src/console/overview.js';
import { recordsPage } from '../../src/console/records.js';
import { signatureField } from '../../src/signing/record.js';
import type { StoredPullRecord } from '../../src/storage/meta-store.js';

/** Item 7 of issue 26: the signer on the record's pages, in the SBOM, the trusted root's age, and what a signature refusal's approval says. */

const now = Date.UTC(2026, 11, 3, 12);
const sha = 'a'.repeat(64);
const GH = 'https://token.actions.githubusercontent.com';
const signed = signatureField({
  ok: true,
  identity: `${GH} https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1`,
  publisher: { kind: 'github', repository: 'o/r', workflow: 'release.yml', ref: 'refs/tags/v1' },
  bundleDigest: `sha256:${'b'.repeat(64)}`,
  tlogIndex: '123456',
  integratedTime: 1_760_000_000,
  trustVersion: '6494e21ea73f',
})!;
const row = (extra: Partial<StoredPullRecord>): StoredPullRecord => ({
  id: 1,
  ts: now - 3_600_000,
  client: 'ci',
  ecosystem: 'pypi',
  name: 'sampleproject',
  version: '4.0.0',
  filename: 'sampleproject-4.0.0.tar.gz',
  sha256: sha,
  size: 10,
  cache: 'miss',
  decision: 'allow',
  rule: 'pypi.allow[0]',
  ...extra,
});
const compact = (text: string) => {
  expect(text.match(/^[ \t]+\S.*$/m)?.[0], 'an indented line').toBeUndefined();
  expect(text.match(/<[^<>]*\n[^<>]*>/)?.[0], 'a tag broken across lines').toBeUndefined();
};
const overview = {
  blobs: 1,
  bytes: 1,
  refusals: 0,
  pulls: 1,
  advisories: 0,
  recordOk: null,
  policy: { pypi: 1, oci: 0, hf: 0 },
  daily: [],
  now,
  hits: { hits: 0, served: 0 },
  policyVersion: { file: 'p.yaml', sha256: 'c'.repeat(64) },
  scanner: 's',
  reload: null,
  upstreams: [],
};

describe('signatures in reports (issue 26, item 7)', () => {
  it('the record and artefact pages show the signer and what verified it', async () => {
    const rows = [
      row({ signature: signed }),
      row({ id: 2, decision: 'deny', code: 'bad_signature', reason: 'wrong signer', signature: signatureField({ ok: false, identity: 'key:0123456789ab' }) }),
    ];
    const rec = String(await recordsPage('csrf', { query: '' }, rows, 50, null));
    compact(rec);
    expect(rec).toContain('<span class="muted signer">signer: github:o/r release.yml@refs/tags/v1</span>');
    expect(rec).toContain('signer: not verified (key:0123456789ab)');
    const art = String(
      await artefactPage('csrf', {
        ecosystem: 'pypi',
        name: 'sampleproject',
        version: '4.0.0',
        sha256: sha,
        size: 10,
        pulls: rows,
        rule: 'pypi.allow[0]',
        scan: null,
        vulnerabilities: [],
        sbom: null,
      }),
    );
    compact(art);
    expect(art).toContain('<tr><th scope="row">Signed by</th><td><strong>github:o/r release.yml@refs/tags/v1</strong><br><span class="muted">identity');
    expect(art).toContain(`bundle sha256:${'b'.repeat(64)} · log index 123456 · logged 2025-10-09T08:53:20.000Z · trusted root 6494e21ea73f`);
    const unsigned = String(
      await artefactPage('csrf', {
        ecosystem: 'pypi',
        name: 'x',
        size: 1,
        pulls: [row({ signature: null })],
        rule: 'r',
        scan: null,
        vulnerabilities: [],
        sbom: null,
      }),
    );
    expect(unsigned).toContain('not checked (no signing rule applied to a served pull)');
  });

  it('SBOM components carry the signer of the newest verified pull', async () => {
    const sbom = JSON.parse(await buildSbom({} as never, { version: 't', rows: [row({ signature: signed }), row({ id: 2, ts: now - 7_200_000 })] }));
    const props = Object.fromEntries(
      (sbom.components[0].properties as { name: string; value: string }[]).filter((p) => /signer|signature/.test(p.name)).map((p) => [p.name, p.value]),
    );
    expect(props).toEqual({
      'airlock:signer': 'github:o/r release.yml@refs/tags/v1',
      'airlock:signer_identity': `${GH} https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1`,
      'airlock:signer_publisher': 'github:o/r release.yml',
      'airlock:signature_bundle': `sha256:${'b'.repeat(64)}`,
      'airlock:signature_tlog_index': '123456',
      'airlock:signature_logged': '2025-10-09T08:53:20.000Z',
      'airlock:signature_trust_root': '6494e21ea73f',
    });
    const none = JSON.parse(await buildSbom({} as never, { version: 't', rows: [row({})] }));
    expect(JSON.stringify(none.components[0].properties)).not.toContain('airlock:signer');
  });

  it("the overview shows the trusted root's age, and warns when it is old or missing", async () => {
    const fresh = String(
      await overviewPage('csrf', { ...overview, trust: { version: '6494e21ea73f', source: 'imported', ageSeconds: 3 * 86_400, problem: null } }),
    );
    compact(fresh);
    expect(fresh).toContain(
      '<div class="card"><span>Trusted root</span><b>3 days old</b><span class="muted">version <code>6494e21ea73f</code> (imported)</span></div>',
    );
    const old = String(
      await overviewPage('csrf', { ...overview, trust: { version: '6494e21ea73f', source: 'shipped', ageSeconds: 400 * 86_400, problem: null } }),
    );
    expect(old).toContain('<span class="deny">400 days old</span>');
    expect(old).toContain('older than 365 days: check for a Sigstore root rotation and import it (airlock trust import FILE)');
    const missing = String(
      await overviewPage('csrf', { ...overview, trust: { version: null, ageSeconds: null, problem: 'imported trusted root abc: expired' } }),
    );
    expect(missing).toContain('<b><span class="deny">missing</span></b>');
    expect(missing).toContain('imported trusted root abc: expired: every signature rule refuses until one is imported (airlock trust import FILE)');
  });

  it("a signature refusal's approval says what to do: accept a changed signer, import a root, add a reviewed signer", () => {
    const changed = approvalFor(
      row({
        decision: 'deny',
        code: 'bad_signature',
        reason:
          "signer changed: sampleproject 5.0 is signed by github:x/y release.yml, but earlier versions (first 4.0.0) were signed by github:o/r release.yml; refused (on_change: refuse) under pypi.allow[0]; if the change is legitimate after review, accept it: airlock trust accept pypi sampleproject --identity 'github:x/y release.yml' (and narrow the rule's signers to the new identity)",
      }),
    );
    expect(changed.command).toBe("airlock trust accept pypi sampleproject --identity 'github:x/y release.yml'");
    expect(changed.note).toContain('hijacked');
    const root = approvalFor(row({ decision: 'deny', code: 'bad_signature', reason: 'pypi.allow[0]: no usable trusted root: expired' }));
    expect(root.command).toBe('airlock trust import FILE');
    const unsigned = approvalFor(row({ decision: 'deny', code: 'unsigned', reason: 'pypi.allow[0]: no provenance' }));
    expect(unsigned.note).toContain('No signature was found');
    const other = approvalFor(
      row({
        ecosystem: 'oci',
        name: 'localhost:5000/app',
        decision: 'deny',
        code: 'bad_signature',
        reason: 'oci.allow[0]: wrong identity',
        signature: signatureField({ ok: false, identity: 'https://accounts.google.com someone@example.com' }),
      }),
    );
    expect(other.note).toContain('signed by https://accounts.google.com someone@example.com, which the rule does not accept');
    expect(other.yaml).toBe(
      'policy:\n  oci:\n    allow:\n      - repository: localhost:5000/app\n        signers:\n          - issuer: https://accounts.google.com\n            subject: someone@example.com',
    );
    const pub = approvalFor(
      row({
        decision: 'deny',
        code: 'bad_signature',
        reason: 'x',
        signature: signatureField({ ok: false, publisher: { kind: 'gitlab', repository: 'g/p', workflow: '.gitlab-ci.yml' } }),
      }),
    );
    expect(pub.yaml).toContain('publisher: { gitlab: g/p, workflow: .gitlab-ci.yml }');
  });
});
