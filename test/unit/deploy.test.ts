import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsYaml from 'js-yaml';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load.js';

/**
 * deploy/ cannot be run here (no Docker, no cluster), so what can be checked is: every Airlock
 * configuration in it passes the same validation `serve` runs, the secrets it names are the ones
 * the manifests provide, and the probes are the endpoints Airlock serves.
 */
const root = process.cwd();

describe('deploy/', () => {
  // The fleet's secret is checked when the configuration loads (storage.peers.secret_env): here, as deployed, it is set.
  beforeEach(() => vi.stubEnv('AIRLOCK_FLEET_SECRET', 'x'.repeat(32)));
  afterEach(() => vi.unstubAllEnvs());

  it('docker-compose: the configuration validates and every variable it names is provided', () => {
    const loaded = loadConfig(join(root, 'deploy', 'compose', 'airlock.yaml'));
    const compose = jsYaml.load(readFileSync(join(root, 'deploy', 'compose', 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { environment?: Record<string, string>; deploy?: { replicas: number } }>;
    };
    const env = compose.services.airlock.environment!;
    const s = loaded.config.storage;
    for (const v of [s.postgres_url_env, s.s3!.access_key_env, s.s3!.secret_key_env, s.peers.secret_env!]) expect(env, v).toHaveProperty(v);
    expect(compose.services.airlock.deploy!.replicas).toBe(3);
    // Each replica advertises its own address to the others (storage.peers), on the port it listens on.
    expect((compose.services.airlock as { entrypoint?: string[] }).entrypoint!.join(' ')).toContain(`AIRLOCK_ADVERTISE=http://$$(hostname -i`);
    expect(loaded.config.listen).toMatch(/:8080$/);
    expect(s.meta).toBe('postgres');
    expect(s.blobs).toBe('s3');
  });

  it('Kubernetes: the ConfigMap validates, the Secret provides what it names, the probes are readyz and a socket', () => {
    const docs = jsYaml.loadAll(readFileSync(join(root, 'deploy', 'kubernetes', 'airlock.yaml'), 'utf8')) as {
      kind: string;
      data?: Record<string, string>;
      stringData?: Record<string, string>;
      spec?: any;
    }[];
    const cm = docs.find((d) => d.kind === 'ConfigMap')!;
    const dir = mkdtempSync(join(tmpdir(), 'airlock-k8s-'));
    for (const [name, body] of Object.entries(cm.data!)) writeFileSync(join(dir, name), body);
    const loaded = loadConfig(join(dir, 'airlock.yaml'));
    expect(loaded.policy.pypi.size).toBeGreaterThan(0);
    const secret = docs.find((d) => d.kind === 'Secret')!;
    const s = loaded.config.storage;
    for (const v of [s.postgres_url_env, s.s3!.access_key_env, s.s3!.secret_key_env, s.peers.secret_env!]) expect(secret.stringData, v).toHaveProperty(v);
    expect(secret.stringData![s.peers.secret_env!].length).toBeGreaterThanOrEqual(32);
    const dep = docs.find((d) => d.kind === 'Deployment')!;
    const c = dep.spec.template.spec.containers[0];
    expect(c.readinessProbe.httpGet.path).toBe('/-/readyz');
    // Each pod advertises its own IP to the other replicas, on the port it listens on.
    const env = Object.fromEntries((c.env as { name: string; value?: string; valueFrom?: any }[]).map((e) => [e.name, e]));
    expect(env.POD_IP.valueFrom.fieldRef.fieldPath).toBe('status.podIP');
    expect(env.AIRLOCK_ADVERTISE.value).toBe(`http://$(POD_IP):${loaded.config.listen.split(':').pop()}`);
    expect(c.livenessProbe.tcpSocket.port).toBe('http');
    expect(dep.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(loaded.config.shutdown_grace);
    expect(docs.some((d) => d.kind === 'Service')).toBe(true);
  });

  it('nginx offload: the internal location aliases the blob layout Airlock writes', () => {
    const conf = readFileSync(join(root, 'deploy', 'nginx-offload.conf'), 'utf8');
    expect(conf).toMatch(/location \/_airlock_blobs\/ \{\s+internal;\s+alias \/var\/lib\/airlock\/blobs\/sha256\/;/);
  });
});
