import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { appendPulls, link, verifyChain } from '../../src/core/chain.js';
import { parseSignature, signatureField, signerLabel } from '../../src/signing/record.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { SQLITE_MIGRATIONS } from '../../src/storage/sqlite-schema.js';

describe('the record of a signature (issue 26)', () => {
  it('keeps what verified the artefact as compact JSON, and reads it back', () => {
    const text = signatureField({
      ok: true,
      identity: 'https://token.actions.githubusercontent.com https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1',
      publisher: { kind: 'github', repository: 'o/r', workflow: 'release.yml', ref: 'refs/tags/v1' },
      bundleDigest: `sha256:${'b'.repeat(64)}`,
      tlogIndex: '123',
      integratedTime: 1_700_000_000,
      trustVersion: 'sha256:abc',
    });
    expect(text).not.toContain('undefined');
    expect(text).not.toContain('\n');
    const back = parseSignature(text)!;
    expect(back).toEqual({
      ok: true,
      identity: 'https://token.actions.githubusercontent.com https://github.com/o/r/.github/workflows/release.yml@refs/tags/v1',
      publisher: { kind: 'github', repository: 'o/r', workflow: 'release.yml', ref: 'refs/tags/v1' },
      bundleDigest: `sha256:${'b'.repeat(64)}`,
      tlogIndex: '123',
      integratedTime: 1_700_000_000,
      trustVersion: 'sha256:abc',
    });
    expect(signerLabel(back)).toBe('github:o/r release.yml@refs/tags/v1');
    expect(signerLabel({ ok: true, identity: 'key:0123456789ab' })).toBe('key:0123456789ab');
    expect(signerLabel({ ok: false, identity: 'https://issuer x@y' })).toBe('not verified (https://issuer x@y)');
  });

  it('keeps nothing for no result or a refusal that found no signer, bounds long fields, and ignores text it did not write', () => {
    expect(signatureField(undefined)).toBeNull();
    expect(signatureField({ ok: false, reason: 'no signature' })).toBeNull();
    expect(parseSignature(signatureField({ ok: true, identity: 'x'.repeat(5000) }))!.identity).toHaveLength(300);
    expect(parseSignature(null)).toBeNull();
    expect(parseSignature('{not json')).toBeNull();
    expect(parseSignature('{"identity":"x"}')).toBeNull();
  });

  it('adds the column to an SQLite record written before it: old rows still verify, signed rows chain after them', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'airlock-sigcol-')), 'airlock.db');
    const before = SQLITE_MIGRATIONS.findIndex((m) => m.includes('ADD COLUMN signature'));
    expect(before).toBeGreaterThan(0);
    const db = new Database(path);
    for (let v = 0; v < before; v++) db.exec(SQLITE_MIGRATIONS[v]);
    db.pragma(`user_version = ${before}`);
    const old = {
      ts: 1000,
      client: 'a',
      ecosystem: 'pypi' as const,
      name: 'x',
      version: '1',
      cache: 'miss' as const,
      decision: 'deny' as const,
      code: 'unsigned',
    };
    const { prevHash, hash } = link(null, old);
    db.prepare(
      "INSERT INTO pulls (ts, client, ecosystem, name, version, cache, decision, code, prev_hash, hash) VALUES (1000, 'a', 'pypi', 'x', '1', 'miss', 'deny', 'unsigned', ?, ?)",
    ).run(prevHash, hash);
    db.close();
    const meta = new SqliteMetaStore(path);
    const sig = signatureField({ ok: true, identity: 'key:0123456789ab' })!;
    await appendPulls(meta, [{ ts: 2000, client: 'a', ecosystem: 'pypi', name: 'x', version: '2', cache: 'miss', decision: 'allow', signature: sig }]);
    expect((await meta.listPulls({})).map((r) => r.signature ?? null)).toEqual([sig, null]);
    const rep = await verifyChain(meta);
    expect(rep).toMatchObject({ rows: 2, unchained: 0 });
    expect(rep.problem).toBeUndefined();
    // Tampering with the signer of the new row is found.
    await meta.close();
    const raw = new Database(path);
    raw.prepare('UPDATE pulls SET signature = ? WHERE ts = 2000').run(signatureField({ ok: true, identity: 'key:ffffffffffff' }));
    raw.close();
    const again = new SqliteMetaStore(path);
    expect((await verifyChain(again)).problem).toMatchObject({ kind: 'altered' });
    await again.close();
  });
});
