import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openMeta } from '../../src/backends.js';
import { appendPulls } from '../../src/core/chain.js';
import { loadConfig } from '../../src/config/load.js';
import { SHIPPED_ROOT_FILE, SHIPPED_ROOT_SHA256, shippedTrustRoot } from '../../src/signing/trust.js';
import { startAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';

/**
 * `airlock trust import FILE` and `airlock trust show` (issue 26), through the built CLI: a bad file
 * is one line on stderr with exit 2 and changes nothing; a valid root is stored and then in use.
 */
describe('airlock trust', () => {
  it('shows the shipped root, refuses a bad file in one line, imports a valid root that then wins', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-trust-cli-'));
    const config = join(dir, 'airlock.yaml');
    writeFileSync(config, `data_dir: ${join(dir, 'data')}\n`);
    const shown = await airlockCli(['trust', 'show', '--config', config]);
    expect(shown.stderr).toBe('');
    expect(shown.stdout).toMatch(new RegExp(`^trusted root ${SHIPPED_ROOT_SHA256.slice(0, 12)} \\(shipped\\), age \\d+ days\n$`));

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [] }));
    const refused = await airlockCli(['trust', 'import', bad, '--config', config]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`airlock: trust import: ${bad}: trusted root has no certificate authority\n`);
    expect((await airlockCli(['trust', 'import', join(dir, 'missing.json'), '--config', config])).stderr).toBe(
      `airlock: trust import: ${join(dir, 'missing.json')}: cannot read: ENOENT\n`,
    );

    // A rotation, stood in for by the same root re-serialised (another sha256, so another version).
    const rotated = join(dir, 'rotated.json');
    writeFileSync(rotated, JSON.stringify(JSON.parse(readFileSync(SHIPPED_ROOT_FILE, 'utf8')), null, 1));
    const imp = await airlockCli(['trust', 'import', rotated, '--config', config]);
    expect(imp.stderr).toBe('');
    expect(imp.stdout).toMatch(/^imported trusted root [0-9a-f]{12} \(2 certificate authorities, 2 transparency logs\)/);
    const version = imp.stdout.split(' ')[3];
    expect(version).not.toBe(SHIPPED_ROOT_SHA256.slice(0, 12));
    expect((await airlockCli(['trust', 'show', '--config', config])).stdout).toMatch(new RegExp(`^trusted root ${version} \\(imported, imported \\d{4}-`));
    expect((await airlockCli(['trust', 'frob', '--config', config])).stderr).toBe(
      'airlock: usage: airlock trust import FILE | airlock trust show | airlock trust accept pypi|oci|hf PROJECT [--identity ID]\n',
    );
  });

  it("accepts a project's new signer after review (continuity): records the identity given, or forgets the recorded one", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-trust-accept-'));
    const config = join(dir, 'airlock.yaml');
    writeFileSync(config, `data_dir: ${join(dir, 'data')}\n`);
    const meta = await openMeta(loadConfig(config), { create: true });
    await meta.recordSigner('pypi', 'sample-project', { identity: 'github:o/r release.yml', version: '1.0' });
    await meta.close();
    const acc = await airlockCli(['trust', 'accept', 'pypi', 'Sample_Project', '--identity', 'github:new/r release.yml', '--config', config]);
    expect([acc.code, acc.stderr]).toEqual([0, '']);
    expect(acc.stdout).toBe(
      'pypi sample-project: signer github:new/r release.yml accepted (was github:o/r release.yml, first verified on 1.0); replicas use it within 10 s (at once on SIGHUP)\n',
    );
    const m2 = await openMeta(loadConfig(config), { create: false });
    expect(await m2.getSigner('pypi', 'sample-project')).toMatchObject({ identity: 'github:new/r release.yml', version: null });
    await m2.close();
    const forgot = await airlockCli(['trust', 'accept', 'pypi', 'sample-project', '--config', config]);
    expect(forgot.stdout).toBe('pypi sample-project: recorded signer forgotten (was github:new/r release.yml); the next verified pull records its signer\n');
    const m3 = await openMeta(loadConfig(config), { create: false });
    expect(await m3.getSigner('pypi', 'sample-project')).toBeNull();
    await m3.close();
    const bad = await airlockCli(['trust', 'accept', 'npm', 'x', '--config', config]);
    expect([bad.code, bad.stderr]).toEqual([2, 'airlock: usage: airlock trust accept pypi|oci|hf PROJECT [--identity ID]\n']);
  });

  it('airlock records shows the signer of a signature-checked row (TSV: at the end; JSON: the parsed record)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-records-signer-'));
    const config = join(dir, 'airlock.yaml');
    writeFileSync(config, `data_dir: ${join(dir, 'data')}\n`);
    const meta = await openMeta(loadConfig(config), { create: true });
    const signature = JSON.stringify({ ok: true, identity: 'x y', publisher: { kind: 'github', repository: 'o/r', workflow: 'release.yml' }, tlogIndex: '7' });
    await appendPulls(meta, [
      { ts: 1000, client: 'c', ecosystem: 'pypi', name: 'plain', cache: 'miss', decision: 'allow' },
      { ts: 2000, client: 'c', ecosystem: 'pypi', name: 'signed', version: '1', cache: 'miss', decision: 'allow', signature },
    ]);
    await meta.close();
    const tsv = (await airlockCli(['records', '--config', config])).stdout.trim().split('\n');
    expect(tsv[0].split('\t').slice(3)).toEqual(['signed', '1', '-', 'miss', 'allow', '', 'signer: github:o/r release.yml']);
    expect(tsv[1].split('\t').slice(3)).toEqual(['plain', '-', '-', 'miss', 'allow']);
    const json = JSON.parse((await airlockCli(['records', '--config', config, '--json'])).stdout);
    expect(json[0].signature).toEqual(JSON.parse(signature));
    expect(json[1]).not.toHaveProperty('signature');
  });

  it('a running server reports the root in use and its age, and picks up an import on reload (SIGHUP)', async () => {
    const a = await startAirlock('');
    try {
      const metric = async () => Number(/^airlock_trust_root_age_seconds (\S+)$/m.exec(await (await fetch(`${a.url}/-/metrics`)).text())?.[1]);
      const shippedAge = (Date.now() - shippedTrustRoot().newestKeyStart) / 1000;
      expect(Math.abs((await metric()) - shippedAge)).toBeLessThan(60);
      const rotated = join(a.dir, 'rotated.json');
      writeFileSync(rotated, JSON.stringify(JSON.parse(readFileSync(SHIPPED_ROOT_FILE, 'utf8'))));
      const imp = await airlockCli(['trust', 'import', rotated, '--config', a.configFile]);
      expect(imp.code).toBe(0);
      expect(await a.airlock.reloadTrust()).toBe(imp.stdout.split(' ')[3]);
      expect(await metric()).toBeLessThan(60);
    } finally {
      await a.stop();
    }
  });
});
