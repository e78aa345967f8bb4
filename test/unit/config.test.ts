import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, changedSettings, loadConfig } from '../../src/config/load.js';

function write(text: string, name = 'airlock.yaml'): string {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-cfg-'));
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
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

describe('configuration loading', () => {
  it('loads the shipped example', () => {
    const c = loadConfig('config/airlock.yaml');
    expect(c.config.listen).toBe('127.0.0.1:8080');
    expect(c.config.pypi.upstream).toBe('https://pypi.org/simple/');
    expect(c.policy.pypi.size).toBeGreaterThan(0);
  });
  it('shares upstream connections as transfers.host_* says, and refuses host_large not below host_connections', () => {
    const t = loadConfig(write('')).config.transfers;
    expect([t.host_connections, t.host_large, t.small_bytes, t.host_queue_wait]).toEqual([64, 48, 1 << 20, 120]);
    expect(errorOf(write('transfers:\n  host_connections: 8\n  host_large: 8\n'))).toMatch(
      /:3: transfers\.host_large: must be below transfers\.host_connections: small requests \(pages, manifests, tokens\) need connections of their own$/,
    );
  });
  it('applies defaults to an empty file', () => {
    const c = loadConfig(write(''));
    expect(c.config.data_dir).toBe('./data');
    expect(c.config.pypi.file_hosts).toEqual(['files.pythonhosted.org']);
  });
  it('scrubs, caps the quarantine and keeps large files out of the cache by default; names a bad share', () => {
    const c = loadConfig(write('')).config.cache;
    expect(c).toMatchObject({ scrub_rate: 20, max_file_share: 0.5, quarantine_max_bytes: 2 ** 30, quarantine_max_days: 7 });
    expect(errorOf(write('cache:\n  max_file_share: 0\n'))).toMatch(/:2: cache\.max_file_share: /);
    expect(errorOf(write('cache:\n  max_file_share: 1.5\n'))).toMatch(/:2: cache\.max_file_share: /);
    expect(errorOf(write('cache:\n  quarantine_max_bytes: -1\n'))).toMatch(/cache\.quarantine_max_bytes: /);
  });
  it('takes records.max_bytes in bytes: a size under 1 MiB is refused as a likely slip of units, 0 is no budget', () => {
    expect(loadConfig(write('')).config.records.max_bytes).toBe(16 * 1024 ** 3);
    expect(loadConfig(write('records:\n  max_bytes: 0\n')).config.records.max_bytes).toBe(0);
    expect(loadConfig(write('records:\n  max_bytes: 1048576\n')).config.records.max_bytes).toBe(1048576);
    expect(errorOf(write('records:\n  max_bytes: 16\n'))).toMatch(
      /:2: records\.max_bytes: is a number of bytes; under 1 MiB \(1048576\).*16 GiB is 17179869184/,
    );
  });
  it('names the file, line and field of an unknown key', () => {
    const f = write('listen: 127.0.0.1:8080\npypi:\n  upstream: https://pypi.org/simple/\n  uptream: x\n');
    expect(errorOf(f)).toBe(`${f}:4: pypi.uptream: unknown key "uptream" (expected one of the documented keys; see docs/configuration.md)`);
  });
  it('names a bad specifier with its line', () => {
    const f = write('policy:\n  pypi:\n    allow:\n      - { name: requests }\n      - { name: torch, versions: ">=2;<3" }\n');
    const m = errorOf(f);
    expect(m).toContain(`${f}:5: policy.pypi.allow[1].versions: bad version specifier ">=2;<3"`);
    expect(m).toContain('expected a PEP 440 specifier set');
  });
  it('names a bad glob', () => {
    const f = write('policy:\n  pypi:\n    internal: ["acme/*"]\n');
    expect(errorOf(f)).toContain('policy.pypi.internal[0]: bad glob "acme/*"');
  });
  it('names a bad value type and a bad URL', () => {
    expect(errorOf(write('pypi:\n  index_ttl: soon\n'))).toMatch(/:2: pypi\.index_ttl: .*number/);
    expect(errorOf(write('pypi:\n  upstream: ftp://x/simple/\n'))).toContain('pypi.upstream: expected an http(s) URL');
    expect(errorOf(write('listen: localhost\n'))).toContain('listen: expected host:port');
    expect(errorOf(write('listen: 8080\n'))).toContain('listen: Invalid input: expected string, received number');
  });
  it('names a missing policy file and validates a separate one', () => {
    const f = write('policy_file: nope.yaml\n');
    expect(errorOf(f)).toMatch(/nope\.yaml: cannot read file: ENOENT/);
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cfg-'));
    writeFileSync(join(dir, 'policy.yaml'), 'pypi:\n  allow:\n    - { name: x, version: "1" }\n');
    writeFileSync(join(dir, 'airlock.yaml'), 'policy_file: policy.yaml\n');
    expect(errorOf(join(dir, 'airlock.yaml'))).toBe(
      `${join(dir, 'policy.yaml')}:3: pypi.allow[0].version: unknown key "version" (expected one of the documented keys; see docs/configuration.md)`,
    );
  });
  it('refuses an empty or comments-only policy file (it would refuse every pull), and accepts {} said on purpose', () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cfg-'));
    writeFileSync(join(dir, 'airlock.yaml'), 'policy_file: policy.yaml\n');
    // A document that is only a start or end marker, or null, holds no value either (a truncated write).
    for (const text of ['', '\n\n', '# all pins moved elsewhere\n  # indented\n', '---\n', '---\n...\n', '...\n', 'null\n', '~\n', '--- # cut here\n']) {
      writeFileSync(join(dir, 'policy.yaml'), text);
      expect(errorOf(join(dir, 'airlock.yaml'))).toBe(
        `${join(dir, 'policy.yaml')}: the policy file is empty (or only comments, or a null document): it would refuse every pull; write {} to mean that on purpose`,
      );
    }
    writeFileSync(join(dir, 'policy.yaml'), '# nothing is allowed, on purpose\n{}\n');
    expect(loadConfig(join(dir, 'airlock.yaml')).policy.pypi.size).toBe(0);
  });
  it('names the settings outside the policy that differ (what a reload cannot apply)', () => {
    const a = loadConfig(write('auth:\n  admin: token\npolicy:\n  pypi:\n    allow: [{ name: x }]\n')).config;
    const b = loadConfig(write('auth:\n  admin: open\npypi:\n  index_ttl: 60\npolicy:\n  pypi:\n    allow: [{ name: y }]\n')).config;
    expect(changedSettings(a, b)).toEqual(['auth.admin', 'pypi.index_ttl']);
    expect(changedSettings(a, a)).toEqual([]);
  });
  it('reports invalid YAML and duplicate keys with a position', () => {
    expect(errorOf(write('listen: [\n'))).toMatch(/:\d+:\d+: invalid YAML/);
    expect(errorOf(write('listen: a:1\nlisten: b:2\n'))).toMatch(/invalid YAML/);
  });
});

describe('OCI configuration and policy', () => {
  const D = 'sha256:' + 'a'.repeat(64);
  it('knows the public registries by default', () => {
    const c = loadConfig(write(''));
    expect(Object.keys(c.config.oci.registries).sort()).toEqual(['docker.io', 'ghcr.io', 'nvcr.io', 'quay.io']);
    expect(c.config.oci.default_registry).toBe('docker.io');
  });
  it('names a bad digest in the policy with its line', () => {
    const f = write(`policy:\n  oci:\n    allow:\n      - repository: docker.io/library/python\n        digests: ["sha256:abc"]\n`);
    expect(errorOf(f)).toBe(`${f}:5: policy.oci.allow[0].digests[0]: sha256:abc: a sha256 digest is 64 lowercase hex characters`);
  });
  it('refuses a tag that is not an alias of a digest', () => {
    const f = write(`policy:\n  oci:\n    allow:\n      - repository: docker.io/library/python\n        tags: { "3.12": latest }\n`);
    expect(errorOf(f)).toMatch(/policy\.oci\.allow\[0\]\.tags\.3\.12: a tag must be an alias of a pinned digest/);
  });
  it('refuses a repository on a registry that is not configured', () => {
    const f = write(`policy:\n  oci:\n    allow:\n      - repository: registry.corp/team/app\n        digests: ["${D}"]\n`);
    expect(errorOf(f)).toBe(
      `${f}:4: policy.oci.allow[0].repository: registry registry.corp is not configured in oci.registries (docker.io, ghcr.io, quay.io, nvcr.io)`,
    );
  });
  it('refuses a default registry that is not configured, and unset credential variables', () => {
    expect(errorOf(write(`oci:\n  default_registry: nope.io\n`))).toMatch(/:2: oci.default_registry: "nope.io" is not one of oci.registries/);
    const f = write(
      `oci:\n  registries:\n    docker.io:\n      url: https://registry-1.docker.io\n      username_env: AIRLOCK_TEST_UNSET_USER\n      password_env: AIRLOCK_TEST_UNSET_PASS\n`,
    );
    expect(errorOf(f)).toBe(`${f}:5: oci.registries.docker.io.username_env: environment variable AIRLOCK_TEST_UNSET_USER is not set`);
    const ok = loadConfig(f, { AIRLOCK_TEST_UNSET_USER: 'u', AIRLOCK_TEST_UNSET_PASS: 'p' });
    expect(ok.config.oci.registries['docker.io'].username_env).toBe('AIRLOCK_TEST_UNSET_USER');
  });
  it('refuses storage.peers without PostgreSQL, with its secret unset, or with a short secret', () => {
    const peers = '  peers: { secret_env: AIRLOCK_TEST_FLEET_SECRET, advertise: "http://10.0.0.5:8080" }\n';
    const pg = write(`storage:\n  meta: postgres\n${peers}`);
    expect(errorOf(pg)).toBe(`${pg}:3: storage.peers.secret_env: environment variable AIRLOCK_TEST_FLEET_SECRET is not set`);
    expect(() => loadConfig(pg, { AIRLOCK_TEST_FLEET_SECRET: 'short' })).toThrow('the secret in AIRLOCK_TEST_FLEET_SECRET is shorter than 32 characters');
    const ok = loadConfig(pg, { AIRLOCK_TEST_FLEET_SECRET: 'x'.repeat(32) });
    expect(ok.config.storage.peers).toEqual({ secret_env: 'AIRLOCK_TEST_FLEET_SECRET', advertise: 'http://10.0.0.5:8080' });
    const lite = write(`storage:\n${peers}`);
    expect(() => loadConfig(lite, { AIRLOCK_TEST_FLEET_SECRET: 'x'.repeat(32) })).toThrow(
      'storage.peers: replicas stream to each other only on storage.meta: postgres',
    );
    expect(errorOf(write('storage:\n  peers: { advertise: "ftp://x" }\n'))).toContain('storage.peers.advertise: expected an http(s) URL');
    // Per replica from the environment (a pod's address), over the shared file's.
    const env = { AIRLOCK_TEST_FLEET_SECRET: 'x'.repeat(32), AIRLOCK_ADVERTISE: 'http://10.1.2.3:8080' };
    expect(loadConfig(pg, env).config.storage.peers.advertise).toBe('http://10.1.2.3:8080');
  });
  it('refuses a registry URL that includes /v2/', () => {
    expect(errorOf(write(`oci:\n  registries:\n    r.io: { url: "https://r.io/v2/" }\n  default_registry: r.io\n`))).toMatch(
      /oci.registries.r.io.url: give the registry root, without \/v2\//,
    );
  });
});
