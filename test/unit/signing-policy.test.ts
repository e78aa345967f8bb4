import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { Policy } from '../../src/policy/index.js';

/** policy.signing and the per-rule signature fields (issue 26): compiled, with one-line errors at file:line. */
const KEY = `-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE0m9ZuiBgzKFjxdmwJsSe4OUZ7jfbe3Cd
-----END PUBLIC KEY-----
`;
const CERT = `-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUW
-----END CERTIFICATE-----
`;

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-sig-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

function errorOf(file: string): string {
  try {
    loadConfig(file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const DIGEST = `sha256:${'a'.repeat(64)}`;
const COMMIT = 'b'.repeat(40);

describe('signing policy', () => {
  it('compiles named and inline signers and each ecosystem rule requirement', () => {
    const p = new Policy({
      signing: {
        signers: {
          tob: { issuer: 'https://token.actions.githubusercontent.com', subject_pattern: 'https://github\\.com/trailofbits/.*' },
          cody: { issuer: 'https://github.com/login/oauth', subject: 'cody@soyland.com' },
          acme: { key: KEY },
          ca: { ca: CERT },
        },
      },
      pypi: {
        allow: [
          { name: 'requests' },
          { name: 'pypi-attestations', require: 'attested', publisher: { github: 'trailofbits/pypi-attestations', workflow: 'release.yml' } },
        ],
      },
      oci: {
        allow: [
          { repository: 'localhost:5000/cosign/subject', digests: [DIGEST], require: 'signed', signers: ['cody', { issuer: 'https://x', subject: 'y' }] },
        ],
      },
      hf: { allow: [{ repo: 'org/model', commits: [COMMIT], require: 'signed', signers: ['acme'], signature: 'sigs/model.sig' }] },
    });
    expect(p.pypi.requirement('pypi.allow[0]')).toBeNull();
    expect(p.pypi.requirement('pypi.allow[1]')).toMatchObject({
      rule: 'pypi.allow[1]',
      require: 'attested',
      signers: [],
      publisher: { kind: 'github', repository: 'trailofbits/pypi-attestations', workflow: 'release.yml' },
      signature: 'model.sig',
    });
    const oci = p.oci.requirement('oci.allow[0]')!;
    expect(oci.require).toBe('signed');
    expect(oci.signers.map((s) => [s.kind, s.name])).toEqual([
      ['keyless', 'cody'],
      ['keyless', 'oci.allow[0].signers[1]'],
    ]);
    const hf = p.hf.requirement('hf.allow[0]')!;
    expect([hf.require, hf.signature, hf.signers[0].kind]).toEqual(['signed', 'sigs/model.sig', 'key']);
    const tob = p.signing.signer('tob')!;
    expect(tob.kind === 'keyless' && tob.subjectPattern!.test('https://github.com/trailofbits/x')).toBe(true);
    // Anchored: a prefix or a suffix match is not a match.
    expect(tob.kind === 'keyless' && tob.subjectPattern!.test('xhttps://github.com/trailofbits/x')).toBe(false);
    expect(p.signing.signer('ca')!.kind).toBe('ca');
    expect(p.signing.onChange).toBe('refuse');
    // The cache key changes with what the rule checks, not only with its id.
    const again = new Policy({
      signing: { signers: { cody: { issuer: 'https://github.com/login/oauth', subject: 'someone@else' } } },
      oci: {
        allow: [
          { repository: 'localhost:5000/cosign/subject', digests: [DIGEST], require: 'signed', signers: ['cody', { issuer: 'https://x', subject: 'y' }] },
        ],
      },
    });
    expect(again.oci.requirement('oci.allow[0]')!.rule).toBe(oci.rule);
    expect(again.oci.requirement('oci.allow[0]')!.cacheKey).not.toBe(oci.cacheKey);
    expect(oci.cacheKey.startsWith('oci.allow[0] ')).toBe(true);
  });

  it('refuses, with the rule path, what cannot be checked', () => {
    const err = (input: ConstructorParameters<typeof Policy>[0]) => {
      try {
        new Policy(input);
      } catch (e) {
        return `${(e as { path: (string | number)[] }).path.join('.')}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    expect(err({ oci: { allow: [{ repository: 'localhost:5000/a', digests: [DIGEST], require: 'signed' }] } })).toBe(
      'oci.allow.0.require: require: signed needs signers (names from signing.signers, or inline) to check the signature against',
    );
    expect(err({ pypi: { allow: [{ name: 'x', require: 'attested' }] } })).toBe(
      'pypi.allow.0.require: require: attested needs a publisher ({github: owner/repo, workflow: FILE}) to check the signature against',
    );
    expect(err({ oci: { allow: [{ repository: 'localhost:5000/a', digests: [DIGEST], require: 'signed', signers: ['nobody'] }] } })).toBe(
      'oci.allow.0.signers.0: unknown signer "nobody" (policy signing.signers is empty)',
    );
    expect(err({ signing: { signers: { a: { issuer: 'https://x' } } } })).toMatch(/^signing\.signers\.a: a keyless signer needs subject/);
    expect(err({ signing: { signers: { a: { issuer: 'https://x', subject_pattern: '(' } } } })).toMatch(
      /^signing\.signers\.a\.subject_pattern: bad regular expression "\("/,
    );
    expect(err({ signing: { signers: { a: { key: 'not a key' } } } })).toBe('signing.signers.a.key: expected a PEM public key ("-----BEGIN PUBLIC KEY-----")');
    expect(err({ signing: { signers: { a: { key: KEY, ca: CERT } } } })).toBe(
      'signing.signers.a: a signer is a key (key/key_file) or a CA (ca/ca_file), not both',
    );
    expect(err({ hf: { allow: [{ repo: 'o/m', commits: [COMMIT], require: 'attested' as never }] } })).toBe(
      'hf.allow.0.require: expected one of none, signed, got "attested"',
    );
    expect(err({ pypi: { allow: [{ name: 'x', require: 'attested', publisher: { github: 'a/b', gitlab: 'c/d', workflow: 'w' } }] } })).toBe(
      'pypi.allow.0.publisher: give exactly one of github: owner/repo or gitlab: namespace/project',
    );
    expect(err({ hf: { allow: [{ repo: 'o/m', commits: [COMMIT], signature: '../x' }] } })).toBe(
      'hf.allow.0.signature: expected a path inside the repository, got "../x"',
    );
  });

  it('reads key_file and ca_file relative to the policy file, and names the file and line of a problem', () => {
    const dir = dirWith({
      'airlock.yaml': 'policy_file: policy/policy.yaml\n',
      'policy/keys/pub.pem': KEY,
      'policy/keys/ca.pem': CERT,
      'policy/policy.yaml': [
        'signing:',
        '  signers:',
        '    acme: { key_file: keys/pub.pem }',
        '    acme-ca: { ca_file: keys/ca.pem, subject: a@b }',
        'hf:',
        '  allow:',
        '    - repo: org/model',
        `      commits: ["${COMMIT}"]`,
        '      require: signed',
        '      signers: [acme, { key_file: keys/pub.pem }]',
        '',
      ].join('\n'),
    });
    const loaded = loadConfig(join(dir, 'airlock.yaml'));
    const req = loaded.policy.hf.requirement('hf.allow[0]')!;
    expect(req.signers.map((s) => s.kind === 'key' && s.pem.trim())).toEqual([KEY.trim(), KEY.trim()]);
    expect(loaded.policy.signing.signer('acme-ca')).toMatchObject({ kind: 'ca', subject: 'a@b' });

    writeFileSync(join(dir, 'policy/policy.yaml'), 'signing:\n  signers:\n    acme:\n      key_file: keys/missing.pem\n');
    expect(errorOf(join(dir, 'airlock.yaml'))).toMatch(/policy\.yaml:4: signing\.signers\.acme\.key_file: cannot read .*keys\/missing\.pem: ENOENT$/);
    writeFileSync(join(dir, 'policy/policy.yaml'), 'signing:\n  signers:\n    acme:\n      key_file: keys/ca.pem\n');
    expect(errorOf(join(dir, 'airlock.yaml'))).toMatch(/policy\.yaml:4: signing\.signers\.acme\.key_file: expected a PEM public key/);
    writeFileSync(
      join(dir, 'policy/policy.yaml'),
      `oci:\n  allow:\n    - repository: docker.io/library/x\n      digests: ["${DIGEST}"]\n      require: signed\n      signers: [nobody]\n`,
    );
    expect(errorOf(join(dir, 'airlock.yaml'))).toMatch(/policy\.yaml:6: oci\.allow\[0\]\.signers\[0\]: unknown signer "nobody"/);
    writeFileSync(join(dir, 'policy/policy.yaml'), `pypi:\n  allow:\n    - name: x\n      require: signed\n`);
    expect(errorOf(join(dir, 'airlock.yaml'))).toMatch(/policy\.yaml:4: pypi\.allow\[0\]\.require: /);
  });
});
