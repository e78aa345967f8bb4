import { describe, expect, it } from 'vitest';
import { Authenticator, newToken, presentedSecret, tokenHash } from '../../src/auth/tokens.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

describe('client tokens', () => {
  it('reads the secret as each client sends it', () => {
    const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
    expect(presentedSecret('Bearer hf_abc')).toBe('hf_abc');
    expect(presentedSecret('bearer   hf_abc')).toBe('hf_abc');
    expect(presentedSecret(basic('ci-runner:hf_abc'))).toBe('hf_abc');
    expect(presentedSecret(basic('hf_abc:'))).toBe('hf_abc');
    expect(presentedSecret(basic('hf_abc'))).toBe('hf_abc');
    expect(presentedSecret('Digest x')).toBeUndefined();
    expect(presentedSecret(undefined)).toBeUndefined();
  });
  it('issues distinct hf_ tokens, stores hashes only, and refuses revoked ones', async () => {
    const a = newToken();
    expect(a).toMatch(/^hf_[0-9A-Za-z]{40}$/);
    expect(newToken()).not.toBe(a);
    const meta = new SqliteMetaStore(':memory:');
    const auth = new Authenticator(meta);
    const secret = await auth.create('ci', false);
    const [row] = await meta.listTokens();
    expect(row.hash).toBe(tokenHash(secret));
    expect(JSON.stringify(row)).not.toContain(secret);
    expect(await auth.identify(secret)).toEqual({ name: 'ci', admin: false });
    expect(await auth.identify(secret.slice(0, -1) + (secret.endsWith('a') ? 'b' : 'a'))).toBeNull();
    expect(await meta.revokeToken('ci')).toBe(true);
    expect(await auth.identify(secret)).toBeNull();
    await meta.close();
  });
});
