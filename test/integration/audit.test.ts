import { prunePulls, verifyChain } from '../../src/core/chain.js';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import * as CDX from '@cyclonedx/cyclonedx-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';

describe('who pulled what: advisories, affected, SBOM and the hash-chained record', () => {
  const pub = new FakeIndex();
  let a: TestAirlock;
  const v10 = randomBytes(2000);
  const v11 = randomBytes(2000);
  const wheel = (v: string) => `tinylib-${v}-py3-none-any.whl`;
  /** Flip one bit of a cached blob's file behind Airlock's back (disk rot). */
  const rot = (hex: string, bytes: Buffer, at: number) => {
    const rotted = Buffer.from(bytes);
    rotted[at] ^= 0x01;
    writeFileSync(join(a.dir, 'data', 'blobs', 'sha256', hex.slice(0, 2), hex), rotted);
  };

  beforeAll(async () => {
    await pub.start();
    pub.add('tinylib', { filename: wheel('1.0'), bytes: v10 }).add('tinylib', { filename: wheel('1.1'), bytes: v11 });
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
policy:
  advisories: { refuse: high }
  pypi:
    allow:
      - { name: tinylib }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  const file = (v: string) => `${a.url}/pypi/files/tinylib/${wheel(v)}`;

  it('refuses new pulls of a version an imported advisory affects, and names every earlier pull', async () => {
    expect((await rawGet(file('1.0'))).status).toBe(200);
    expect((await rawGet(file('1.1'))).status).toBe(200);
    const dir = mkdtempSync(join(tmpdir(), 'airlock-osv-'));
    writeFileSync(
      join(dir, 'GHSA-aaaa-bbbb-cccc.json'),
      JSON.stringify({
        id: 'GHSA-aaaa-bbbb-cccc',
        modified: '2026-11-20T00:00:00Z',
        aliases: ['CVE-2099-0042'],
        summary: 'tinylib deserialises untrusted input',
        severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
        affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] }] }],
      }),
    );
    writeFileSync(
      join(dir, 'GHSA-gone.json'),
      JSON.stringify({
        id: 'GHSA-gone',
        withdrawn: '2026-11-01T00:00:00Z',
        affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, versions: ['1.1'] }],
      }),
    );
    const imp = await airlockCli(['advisories', 'import', dir, '--config', a.configFile]);
    expect(imp.stderr).toBe('');
    expect(imp.stdout).toContain('read 2 OSV records');
    expect(await a.airlock.reloadAdvisories()).toBe(1);

    const refused = await rawGet(file('1.0'));
    expect(refused.status).toBe(403);
    expect(refused.body.toString()).toMatch(/tinylib 1\.0 is affected by GHSA-aaaa-bbbb-cccc \(CVE-2099-0042\), severity CRITICAL 9\.8/);
    expect((await rawGet(file('1.1'))).status).toBe(200);
    const page = await (await fetch(`${a.url}/pypi/simple/tinylib/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })).json();
    expect(page.versions).toEqual(['1.1']);

    await records(a);
    const byId = await airlockCli(['affected', 'CVE-2099-0042', '--config', a.configFile, '--json']);
    const rep = JSON.parse(byId.stdout);
    expect(rep.advisory.id).toBe('GHSA-aaaa-bbbb-cccc');
    expect(rep.pulls.map((p: { decision: string; version: string }) => `${p.decision}:${p.version}`)).toEqual(['deny:1.0', 'allow:1.0']);
    expect(rep.pulls[1]).toMatchObject({ client: '127.0.0.1', filename: wheel('1.0'), sha256: sha256(v10), cache: 'miss' });
    const table = await airlockCli(['affected', 'GHSA-aaaa-bbbb-cccc', '--config', a.configFile]);
    expect(table.stdout).toContain('2 pulls (1 served, 1 refused), 1 clients served');
    const byPurl = await airlockCli(['affected', 'pkg:pypi/tinylib@1.1', '--config', a.configFile, '--json']);
    expect(JSON.parse(byPurl.stdout).pulls).toHaveLength(2);
  });

  it('writes a CycloneDX 1.6 SBOM that validates against the schema', async () => {
    await records(a);
    const res = await fetch(`${a.url}/-/sbom?ecosystem=pypi`);
    expect(res.headers.get('content-type')).toContain('application/vnd.cyclonedx+json');
    const text = await res.text();
    const errors = await new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6).validate(text);
    expect(errors).toBeNull();
    const bom = JSON.parse(text);
    expect(bom.specVersion).toBe('1.6');
    const c = bom.components.find((x: { purl: string }) => x.purl.startsWith('pkg:pypi/tinylib@1.0'));
    expect(c.hashes).toEqual([{ alg: 'SHA-256', content: sha256(v10) }]);
    expect(c.properties.some((p: { name: string; value: string }) => p.name === 'airlock:client' && p.value === '127.0.0.1')).toBe(true);
    const out = join(a.dir, 'sbom.json');
    const viaCli = await airlockCli(['sbom', '--config', a.configFile, '--output', out]);
    expect(viaCli.code).toBe(0);
  });

  it('detects an edited, a deleted and an inserted record; pruning stays verifiable', async () => {
    await records(a);
    const ok = await airlockCli(['audit', 'verify', '--config', a.configFile]);
    expect(ok.stdout).toMatch(/^OK: \d+ records, chain intact/);
    const live = join(a.dir, 'data', 'airlock.db');
    const copy = async (tamper: (db: Database.Database) => void) => {
      const f = join(mkdtempSync(join(tmpdir(), 'airlock-chain-')), 'airlock.db');
      const src = new Database(live, { readonly: true });
      await src.backup(f);
      src.close();
      const db = new Database(f);
      tamper(db);
      db.close();
      const m = new SqliteMetaStore(f);
      const r = await verifyChain(m);
      await m.close();
      return r;
    };
    const edited = await copy((db) => db.prepare("UPDATE pulls SET client = '10.6.6.6' WHERE id = 2").run());
    expect(edited.problem).toMatchObject({ id: 2, kind: 'altered' });
    const deleted = await copy((db) => db.prepare('DELETE FROM pulls WHERE id = 2').run());
    expect(deleted.problem).toMatchObject({ id: 3, kind: 'deleted' });
    expect(deleted.problem!.message).toContain('row 2 deleted');
    const inserted = await copy((db) =>
      db.prepare("INSERT INTO pulls (ts, client, ecosystem, name, cache, decision) VALUES (1, 'x', 'pypi', 'tinylib', 'hit', 'allow')").run(),
    );
    expect(inserted.problem).toMatchObject({ kind: 'inserted' });
    // Retention: the oldest rows go, a chained prune event anchors the rest.
    const f = join(mkdtempSync(join(tmpdir(), 'airlock-chain-')), 'airlock.db');
    const src = new Database(live, { readonly: true });
    await src.backup(f);
    src.close();
    const m = new SqliteMetaStore(f);
    const rows = await m.listPulls({ limit: 1000 });
    const cutoff = rows[rows.length - 2].ts + 1; // everything up to the second-oldest row
    expect(await prunePulls(m, cutoff, 'test')).toBeGreaterThan(0);
    const after = await verifyChain(m);
    expect(after.problem).toBeUndefined();
    const events = await m.listPulls({ ecosystem: 'audit' });
    expect(events[0].reason).toMatch(/retention: \d+ records before/);
    await m.close();
  });

  it('fails closed when the record cannot be written: the file is cut before its end, and served again once it can', async () => {
    const file = `${a.url}/pypi/files/tinylib/${wheel('1.1')}`;
    expect((await rawGet(file)).status).toBe(200); // cached now
    const meta = a.airlock.meta;
    const append = meta.appendPulls.bind(meta);
    meta.appendPulls = async () => {
      throw new Error('SQLITE_FULL: database or disk is full');
    };
    try {
      const cut = await rawGet(file);
      // Headers went out, the last chunk waited for the record, which failed: the client never has the whole file.
      expect(cut.complete).toBe(false);
      expect(cut.body.length).toBeLessThan(v11.length);
    } finally {
      meta.appendPulls = append;
    }
    const again = await rawGet(file);
    expect(again.complete).toBe(true);
    expect(again.body.equals(v11)).toBe(true);
  });

  it('airlock store verify finds a cached file rotted on disk, and --repair makes the next pull fetch it again', async () => {
    const file = `${a.url}/pypi/files/tinylib/${wheel('1.1')}`;
    expect((await rawGet(file)).status).toBe(200);
    await a.airlock.cache.idle();
    const hex = sha256(v11);
    rot(hex, v11, 100);
    const found = await airlockCli(['store', 'verify', '--config', a.configFile]);
    expect(found.code).toBe(1);
    expect(found.stdout).toContain(`CORRUPT sha256:${hex}`);
    const repaired = await airlockCli(['store', 'verify', '--repair', '--config', a.configFile]);
    expect(repaired.stdout).toMatch(/forgotten: they are fetched and verified again/);
    const clean = await airlockCli(['store', 'verify', '--config', a.configFile]);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/0 do not match their digest, 0 missing/);
    const again = await rawGet(file);
    expect(again.headers['x-airlock-cache']).toBe('miss');
    expect(again.body.equals(v11)).toBe(true);
  });

  it('re-checks a cached file as it is served: bytes rotted on disk are cut before their end, forgotten, and fetched again', async () => {
    const file = `${a.url}/pypi/files/tinylib/${wheel('1.1')}`;
    expect((await rawGet(file)).status).toBe(200);
    await a.airlock.cache.idle();
    const hex = sha256(v11);
    rot(hex, v11, v11.length - 10);
    const cut = await rawGet(file);
    expect(cut.headers['x-airlock-cache']).toBe('hit');
    expect(cut.complete).toBe(false);
    expect(cut.body.length).toBeLessThan(v11.length);
    const recs = await records(a, 'name=tinylib&decision=deny');
    expect(recs[0]).toMatchObject({ cache: 'hit', sha256: hex });
    // Checked chunk by chunk against the blob's chunk list as it is sent (core/hit-body.ts): the rotted chunk is named.
    expect(recs[0].reason).toMatch(/cached copy of sha256:[0-9a-f]{64} has a chunk at byte \d+ that hashes to sha256:[0-9a-f]{64}, not its recorded digest/);
    expect(recs[0].reason).not.toMatch(/nothing cached/);
    const again = await rawGet(file);
    expect(again.headers['x-airlock-cache']).toBe('miss');
    expect(again.body.equals(v11)).toBe(true);
  });
});
