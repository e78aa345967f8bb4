import { describe, expect, it } from 'vitest';
import { Continuity, checkContinuity, continuityDecision, continuityIdentity, type ContinuityInput } from '../../src/signing/continuity.js';
import type { SignatureResult } from '../../src/signing/verify.js';
import { SigningPolicy, type RuleSigningInput } from '../../src/policy/signing.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

const GH = 'https://token.actions.githubusercontent.com';
const keyless = (repo: string, tag: string): SignatureResult => ({
  ok: true,
  identity: `${GH} https://github.com/${repo}/.github/workflows/release.yml@refs/tags/${tag}`,
});
const published = (repo: string, workflow = 'release.yml'): SignatureResult => ({
  ok: true,
  identity: `${GH} https://github.com/${repo}/.github/workflows/${workflow}@refs/tags/v1`,
  publisher: { kind: 'github', repository: repo, workflow, ref: 'refs/tags/v1' },
});
const input = (version: string, result: SignatureResult | null, onChange: 'refuse' | 'warn' = 'refuse'): ContinuityInput => ({
  ecosystem: 'pypi',
  project: 'sampleproject',
  version,
  rule: 'pypi.allow[0]',
  onChange,
  result,
});

describe('continuity of signers (issue 26, item 6)', () => {
  it('compares the publisher, or the identity without its per-release ref; nothing for an unverified result', () => {
    expect(continuityIdentity(published('Org/Proj'))).toBe('github:org/proj release.yml');
    expect(continuityIdentity(keyless('o/r', 'v1.2'))).toBe(`${GH} https://github.com/o/r/.github/workflows/release.yml`);
    expect(continuityIdentity(keyless('o/r', 'v1.2'))).toBe(continuityIdentity(keyless('o/r', 'v2.0')));
    expect(continuityIdentity({ ok: true, identity: 'key:0123456789ab' })).toBe('key:0123456789ab');
    expect(continuityIdentity({ ok: false, identity: 'key:0123456789ab' })).toBeNull();
    expect(continuityIdentity(null)).toBeNull();
  });

  it('records the first verified signer, passes later versions by the same one, and never records an unsigned first', () => {
    expect(continuityDecision(input('1.0', published('o/r')), null)).toEqual({
      action: 'pass',
      record: { identity: 'github:o/r release.yml', version: '1.0' },
    });
    expect(continuityDecision(input('1.0', null), null)).toEqual({ action: 'pass' });
    expect(continuityDecision(input('1.1', keyless('o/r', 'v1.1')), { identity: continuityIdentity(keyless('o/r', 'v1.0'))!, version: '1.0' })).toEqual({
      action: 'pass',
    });
  });

  it('refuses a later version signed by another identity, naming both and how to accept it after review', () => {
    const d = continuityDecision(input('2.0', published('attacker/r')), { identity: 'github:o/r release.yml', version: '1.0' });
    expect(d).toMatchObject({ action: 'refuse', code: 'bad_signature', earlier: 'github:o/r release.yml', now: 'github:attacker/r release.yml' });
    if (d.action === 'pass') throw new Error('unreachable');
    expect(d.reason).toContain(
      'sampleproject 2.0 is signed by github:attacker/r release.yml, but earlier versions (first 1.0) were signed by github:o/r release.yml',
    );
    expect(d.reason).toContain('pypi.allow[0]');
    expect(d.reason).toContain("airlock trust accept pypi sampleproject --identity 'github:attacker/r release.yml'");
    // Another workflow of the same repository is another signer too.
    expect(continuityDecision(input('2.0', published('o/r', 'other.yml')), { identity: 'github:o/r release.yml', version: '1.0' }).action).toBe('refuse');
  });

  it('refuses a later version that is unsigned where the earlier ones were signed; warns instead under on_change: warn', () => {
    const earlier = { identity: 'key:0123456789ab', version: 'sha256:aaa' };
    const d = continuityDecision(input('sha256:bbb', null), earlier);
    expect(d).toMatchObject({ action: 'refuse', code: 'unsigned', now: null });
    if (d.action === 'pass') throw new Error('unreachable');
    expect(d.reason).toContain('is not signed, but earlier versions (first sha256:aaa) were signed by key:0123456789ab');
    expect(continuityDecision(input('sha256:bbb', { ok: false, reason: 'bad' }), earlier)).toMatchObject({ action: 'refuse', code: 'unsigned' });
    const w = continuityDecision(input('sha256:bbb', { ok: true, identity: 'key:ffffffffffff' }, 'warn'), earlier);
    expect(w).toMatchObject({ action: 'warn', code: 'bad_signature' });
    if (w.action === 'pass') throw new Error('unreachable');
    expect(w.reason).toContain('served with a warning (on_change: warn)');
  });

  it('keeps the first signer in the metadata store (read once, then from memory), and sees an acceptance after its time-to-live', async () => {
    const meta = new SqliteMetaStore(':memory:');
    let reads = 0;
    const store = {
      getSigner: (e: string, p: string) => (reads++, meta.getSigner(e, p)),
      recordSigner: meta.recordSigner.bind(meta),
      setSigner: meta.setSigner.bind(meta),
    };
    let t = 0;
    const c = new Continuity(store, 1000, () => t);
    expect(await checkContinuity(c, input('1.0', published('o/r')))).toMatchObject({ action: 'pass' });
    expect(await meta.getSigner('pypi', 'sampleproject')).toMatchObject({ identity: 'github:o/r release.yml', version: '1.0' });
    expect(await checkContinuity(c, input('1.1', published('o/r')))).toEqual({ action: 'pass' });
    expect(await checkContinuity(c, input('2.0', published('x/y')))).toMatchObject({ action: 'refuse' });
    expect(reads).toBe(1);
    // Accepted after review (airlock trust accept): seen once the cached entry is older than its time-to-live.
    await meta.setSigner('pypi', 'sampleproject', { identity: 'github:x/y release.yml', version: '2.0' });
    expect(await checkContinuity(c, input('2.0', published('x/y')))).toMatchObject({ action: 'refuse' });
    t = 1000;
    expect(await checkContinuity(c, input('2.0', published('x/y')))).toEqual({ action: 'pass' });
    // Forgotten: the next verified pull records its signer afresh.
    await meta.setSigner('pypi', 'sampleproject', null);
    t = 2000;
    expect(await checkContinuity(c, input('3.0', published('z/z')))).toEqual({ action: 'pass' });
    expect((await meta.getSigner('pypi', 'sampleproject'))!.identity).toBe('github:z/z release.yml');
    await meta.close();
  });

  it('takes on_change from the rule, else signing.on_change, else refuse; anything else is a policy error', () => {
    const rule = (on_change?: string): RuleSigningInput =>
      ({ require: 'attested', publisher: { github: 'o/r', workflow: 'release.yml' }, ...(on_change ? { on_change } : {}) }) as RuleSigningInput;
    const compile = (sp: SigningPolicy, r: RuleSigningInput) => sp.compileRule(r, ['pypi', 'allow', 0], ['none', 'attested'], { publisher: true })!.onChange;
    expect(compile(new SigningPolicy({}), rule())).toBe('refuse');
    expect(compile(new SigningPolicy({ on_change: 'warn' }), rule())).toBe('warn');
    expect(compile(new SigningPolicy({ on_change: 'warn' }), rule('refuse'))).toBe('refuse');
    expect(compile(new SigningPolicy({}), rule('warn'))).toBe('warn');
    expect(() => compile(new SigningPolicy({}), rule('ignore'))).toThrow(/expected refuse or warn, got "ignore"/);
  });

  it('under a rule that requires nothing: a signature that does not verify is bad_signature, naming why; recorded() reads the store once per time-to-live', async () => {
    const earlier = { identity: 'key:aaaaaaaaaaaa', version: 'sha256:aaa' };
    const d = continuityDecision({ ...input('sha256:bbb', { ok: false, reason: 'x' }), failure: 'found 1: the signature does not verify' }, earlier);
    expect(d).toMatchObject({ action: 'refuse', code: 'bad_signature', now: null });
    expect(d.action !== 'pass' && d.reason).toContain(
      'sampleproject sha256:bbb carries no signature that verifies (found 1: the signature does not verify), but earlier versions (first sha256:aaa) were signed by key:aaaaaaaaaaaa',
    );
    const meta = new SqliteMetaStore(':memory:');
    let reads = 0;
    const store = {
      getSigner: (e: string, p: string) => (reads++, meta.getSigner(e, p)),
      recordSigner: meta.recordSigner.bind(meta),
      setSigner: meta.setSigner.bind(meta),
    };
    let t = 0;
    const c = new Continuity(store, 1000, () => t);
    expect(await c.recorded('pypi', 'SampleProject')).toBeNull();
    expect(await c.recorded('pypi', 'sampleproject')).toBeNull();
    expect(reads).toBe(1);
    await meta.setSigner('pypi', 'sampleproject', earlier);
    t = 1000;
    expect(await c.recorded('pypi', 'sampleproject')).toMatchObject(earlier);
    await meta.close();
  });

  it("the continuity requirement of a rule that requires nothing: any keyless signer, every key and CA of the policy (without identity constraints), the rule's on_change", () => {
    const KEY = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----';
    const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
    const sp = new SigningPolicy({ signers: { k: { key: KEY }, ca: { ca: CA, subject: 'a@b.c' }, kl: { issuer: 'https://i', subject: 'x' } } });
    const inline = sp.compileRule({ require: 'signed', signers: [{ key: KEY.replace('MFkw', 'MFkx') }] }, ['oci', 'allow', 0], ['none', 'signed'], {
      signers: true,
    });
    expect(inline?.signers[0].kind).toBe('key');
    // A rule with only on_change keeps it (it applies to continuity).
    const own = sp.compileRule({ on_change: 'warn' }, ['oci', 'allow', 1], ['none', 'signed'], { signers: true });
    expect(own).toMatchObject({ require: 'none', onChange: 'warn' });
    expect(sp.compileRule({}, ['oci', 'allow', 2], ['none', 'signed'], { signers: true })).toBeNull();
    const req = sp.continuityRequirement('oci.allow[1]', own, 'signed');
    expect(req).toMatchObject({ rule: 'oci.allow[1]', require: 'signed', onChange: 'warn', signature: 'model.sig' });
    expect(req.signers).toEqual([
      { kind: 'keyless', name: 'any keyless signer' },
      { kind: 'key', name: 'k', pem: KEY },
      { kind: 'ca', name: 'ca', pem: CA },
      { kind: 'key', name: 'oci.allow[0].signers[0]', pem: KEY.replace('MFkw', 'MFkx') },
    ]);
    expect(sp.continuityRequirement('oci.allow[2]', null, 'signed').onChange).toBe('refuse');
    expect(req.cacheKey).not.toBe(sp.continuityRequirement('oci.allow[2]', null, 'signed').cacheKey);
  });
});
