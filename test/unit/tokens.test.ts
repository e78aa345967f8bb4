import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { Authenticator, newToken, presentedSecret, tokenHash } from '../../src/auth/tokens.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite-schema.js';

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
  it("issues a revoked token's name again; the old secret stays refused", async () => {
    const meta = new SqliteMetaStore(':memory:');
    const auth = new Authenticator(meta);
    const old = await auth.create('ci', false);
    await expect(auth.create('ci', false)).rejects.toThrow();
    expect(await meta.revokeToken('ci')).toBe(true);
    const reissued = await auth.create('ci', true);
    expect(await auth.identify(old)).toBeNull();
    expect(await auth.identify(reissued)).toEqual({ name: 'ci', admin: true });
    expect((await meta.listTokens()).map((t) => t.revokedAt === null)).toEqual([false, true]);
    await meta.close();
  });
  it('migrates a database made before names could be reissued, keeping every token as it was', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'airlock-tokens-')), 'airlock.db');
    // The schema as it stood before the tokens table kept history (name was its primary key).
    const before = SQLITE_MIGRATIONS.findIndex((m) => m.includes('tokens_live_name'));
    expect(before).toBeGreaterThan(0);
    const db = new Database(path);
    for (let v = 0; v < before; v++) db.exec(SQLITE_MIGRATIONS[v]);
    db.pragma(`user_version = ${before}`);
    const ins = db.prepare('INSERT INTO tokens (name, hash, admin, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)');
    ins.run('ci', tokenHash('old-ci'), 0, 1_000, 2_000);
    ins.run('sec', tokenHash('sec'), 1, 1_500, null);
    db.close();
    const meta = new SqliteMetaStore(path);
    const auth = new Authenticator(meta);
    expect(await meta.listTokens()).toEqual([
      { name: 'ci', hash: tokenHash('old-ci'), admin: false, createdAt: 1_000, revokedAt: 2_000 },
      { name: 'sec', hash: tokenHash('sec'), admin: true, createdAt: 1_500, revokedAt: null },
    ]);
    expect(await auth.identify('sec')).toEqual({ name: 'sec', admin: true });
    const ci = await auth.create('ci', false);
    expect(await auth.identify(ci)).toEqual({ name: 'ci', admin: false });
    expect(await auth.identify('old-ci')).toBeNull();
    await expect(auth.create('sec', false)).rejects.toThrow();
    await meta.close();
  });
});
