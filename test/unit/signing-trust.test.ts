import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importTrustRoot, parseTrustRoot, SHIPPED_ROOT_FILE, SHIPPED_ROOT_SHA256, shippedTrustRoot, TrustRoots } from '../../src/signing/trust.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/** Trust material (issue 26): the shipped public-good root, imported roots, validation, version and age. */
const shippedText = readFileSync(SHIPPED_ROOT_FILE, 'utf8');
const opened: SqliteMetaStore[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});
const store = () => {
  const s = new SqliteMetaStore(join(mkdtempSync(join(tmpdir(), 'airlock-trust-')), 'meta.db'));
  opened.push(s);
  return s;
};
const NOW = Date.parse('2026-06-01T00:00:00Z');

describe('trusted roots', () => {
  it('ships the pinned public-good root: its sha256 is the one recorded, its version 12 hex of it', () => {
    expect(createHash('sha256').update(readFileSync(SHIPPED_ROOT_FILE)).digest('hex')).toBe(SHIPPED_ROOT_SHA256);
    const r = shippedTrustRoot();
    expect(r).toMatchObject({ source: 'shipped', version: SHIPPED_ROOT_SHA256.slice(0, 12), cas: 2, tlogs: 2 });
    // Its newest key (the Rekor v2 log, log2025-1) starts on 2025-09-23.
    expect(new Date(r.newestKeyStart).toISOString()).toBe('2025-09-23T00:00:00.000Z');
  });

  it('refuses what is not a usable trusted root, with one line', () => {
    const root = JSON.parse(shippedText);
    const bad: [string, string][] = [
      ['{', 'trusted root is not JSON'],
      ['[]', 'trusted root is not a JSON object'],
      [JSON.stringify({ ...root, mediaType: 'application/json' }), 'trusted root has mediaType "application/json"'],
      [JSON.stringify({ ...root, tlogs: {} }), "trusted root's tlogs is not a list"],
      [JSON.stringify({ ...root, certificateAuthorities: [] }), 'trusted root has no certificate authority'],
      [JSON.stringify({ ...root, tlogs: [] }), 'trusted root has no transparency log'],
      [
        JSON.stringify({
          ...root,
          tlogs: [{ ...root.tlogs[0], publicKey: { ...root.tlogs[0].publicKey, validFor: { start: '2021-01-01T00:00:00Z', end: '2023-01-01T00:00:00Z' } } }],
        }),
        'trusted root has expired',
      ],
      [' '.repeat(2 << 20), 'bytes; expected a Sigstore trusted_root.json'],
    ];
    for (const [text, reason] of bad) {
      const r = parseTrustRoot(text, NOW, { source: 'imported' });
      expect(r.ok).toBe(false);
      expect(!r.ok && r.reason).toContain(reason);
    }
  });

  it('the newest imported root wins over the shipped one, on every store reader; its age counts from its import', async () => {
    const s = store();
    const roots = new TrustRoots(s);
    expect((await roots.refresh())!.source).toBe('shipped');
    const age = roots.ageSeconds(NOW)!;
    expect(age).toBe(Math.floor((NOW - shippedTrustRoot().newestKeyStart) / 1000));

    // A rotation: the same root re-serialised stands for a new one (another sha256, another version).
    const rotated = JSON.stringify(JSON.parse(shippedText));
    const imp = await importTrustRoot(s, rotated, NOW);
    expect(imp.ok).toBe(true);
    const other = new TrustRoots(s);
    const cur = (await other.refresh())!;
    expect(cur).toMatchObject({ source: 'imported', version: createHash('sha256').update(rotated).digest('hex').slice(0, 12) });
    expect(cur.version).not.toBe(shippedTrustRoot().version);
    expect(other.version).toBe(cur.version);
    expect(other.ageSeconds(cur.importedAt! + 90_000)).toBe(90);

    const refused = await importTrustRoot(s, '{"mediaType":"x"}', NOW);
    expect(refused.ok).toBe(false);
    expect((await s.latestTrustRoot())!.root).toBe(rotated);
  });

  it('a stored root that no longer loads fails closed (no fallback to the shipped one)', async () => {
    const s = store();
    await s.putTrustRoot({ sha256: 'f'.repeat(64), root: '{"broken": true' });
    const roots = new TrustRoots(s);
    expect(await roots.refresh()).toBeNull();
    expect(roots.current()).toBeNull();
    expect(roots.problem).toMatch(/^imported trusted root ffffffffffff: trusted root is not JSON/);
    expect(roots.ageSeconds()).toBeNull();
  });
});
