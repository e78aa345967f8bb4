import { createHash, randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrubStore } from '../../src/core/scrub.js';
import { S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { serveProcess, startNginx } from '../helpers/fleet.js';
import { rawGet } from '../helpers/http.js';
import { buildDist, pip } from '../helpers/pip.js';
import { buildImage, pushImage, RealRegistry, skopeo, type BuiltImage } from '../helpers/oci-tools.js';
import { snapshotDownload } from '@huggingface/hub';
import { FakeHub } from '../helpers/fake-hub.js';
import { safetensors } from '../helpers/model-files.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** GET, hashing the body as it arrives (16 clients x 64 MiB are not held in memory). */
function hashGet(url: string): Promise<{ status: number; complete: boolean; sha: string; cache: unknown }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      const h = createHash('sha256');
      res.on('data', (c: Buffer) => h.update(c));
      const done = () => resolve({ status: res.statusCode!, complete: res.complete, sha: h.digest('hex'), cache: res.headers['x-airlock-cache'] });
      res.once('end', done);
      res.once('aborted', done);
      res.once('error', () => {});
    }).on('error', reject);
  });
}

/**
 * Three `airlock serve` processes on one PostgreSQL and one S3-compatible store, behind Debian's
 * nginx (round robin), with the real pip; 16 clients on one cold 64 MiB file; kill -9 of the
 * replica that is filling.
 */
describe('a fleet: three replicas behind nginx', () => {
  const index = new FakeIndex();
  let pgsrv: TestPostgres;
  let s3: TestS3;
  let dir: string;
  let config: string;
  let env: Record<string, string>;
  const replicas: { proc: ChildProcess; port: number }[] = [];
  let lb: { url: string; stop(): Promise<void> };
  const big = { filename: 'fleetbig-1.0-py3-none-any.whl', bytes: randomBytes(64 << 20) };
  const crash = { filename: 'fleetcrash-1.0-py3-none-any.whl', bytes: randomBytes(64 << 20) };
  const dist = buildDist({ name: 'fleetpkg', version: '1.0' });
  const reg = new RealRegistry();
  let app: BuiltImage;
  const hub = new FakeHub();
  let hfCommit: string;
  const weights = safetensors({ w: { dtype: 'F32', shape: [262_144], data_offsets: [0, 1 << 20] } }, randomBytes(1 << 20));
  const hfConfig = Buffer.from(JSON.stringify({ model_type: 'llama', hidden_size: 64 }));

  beforeAll(async () => {
    [pgsrv, s3] = await Promise.all([startPostgres(), startS3()]);
    await index.start();
    index.add('fleetbig', big).add('fleetcrash', crash).add('fleetpkg', dist);
    await reg.start();
    app = await buildImage(['amd64'], 'v1');
    await pushImage(app, reg.port, 'team/app', 'v1');
    await hub.start();
    hfCommit = hub.commit('model', 'acme/fleet-llama', [
      { path: 'model.safetensors', bytes: weights, lfs: true },
      { path: 'config.json', bytes: hfConfig },
    ]);
    dir = mkdtempSync(join(tmpdir(), 'airlock-fleet-'));
    env = { AIRLOCK_FLEET_PG: pgsrv.url, AIRLOCK_FLEET_S3_ID: s3.credentials.accessKeyId, AIRLOCK_FLEET_S3_SECRET: s3.credentials.secretAccessKey };
    for (let i = 0; i < 3; i++) {
      const cfg = join(dir, `replica-${i}.yaml`);
      writeFileSync(
        cfg,
        `listen: 127.0.0.1:0
data_dir: ${join(dir, `replica-${i}`)}
auth: { admin: open }
storage:
  meta: postgres
  postgres_url_env: AIRLOCK_FLEET_PG
  lease_stale: 2
  blobs: s3
  s3: { endpoint: "${s3.endpoint}", bucket: ${s3.bucket}, prefix: fleet/, path_style: true, access_key_env: AIRLOCK_FLEET_S3_ID, secret_key_env: AIRLOCK_FLEET_S3_SECRET }
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
oci:
  default_registry: registry.test
  registries:
    registry.test:
      url: http://127.0.0.1:${reg.port}
hf:
  upstream: ${hub.url}
  file_hosts: ["127.0.0.1:${hub.cdnPort}"]
policy:
  hf:
    allow:
      - repo: acme/fleet-llama
        refs: { main: "${hfCommit}" }
  pypi:
    allow: [{ name: fleetbig }, { name: fleetcrash }, { name: fleetpkg }]
  oci:
    allow:
      - repository: registry.test/team/app
        tags: { v1: "${app.digest}" }
`,
      );
      if (i === 0) config = cfg;
      replicas.push(await serveProcess(cfg, env));
    }
    lb = await startNginx(
      join(dir, 'nginx'),
      replicas.map((r) => r.port),
    );
  }, 120_000);

  afterAll(async () => {
    await lb?.stop();
    for (const r of replicas) r.proc.kill('SIGKILL');
    await index.stop();
    await reg.stop();
    await hub.stop();
    await s3?.stop();
    await pgsrv?.stop();
  });

  it('the real pip installs through the fleet', async () => {
    const target = mkdtempSync(join(tmpdir(), 'airlock-fleet-pip-'));
    const r = await pip(['install', '--no-deps', '--target', target, '--index-url', `${lb.url}/pypi/simple/`, 'fleetpkg==1.0']);
    expect(r.out).toMatch(/Successfully installed fleetpkg-1.0/);
    expect(r.code).toBe(0);
  });

  it('the real skopeo pulls an image through the fleet, cold and again warm, its requests spread over the replicas', async () => {
    for (let round = 0; round < 2; round++) {
      const dir = mkdtempSync(join(tmpdir(), 'airlock-fleet-oci-'));
      const r = await skopeo([
        'copy',
        '--preserve-digests',
        '--src-tls-verify=false',
        `docker://${new URL(lb.url).host}/registry.test/team/app:v1`,
        `oci:${dir}:pulled`,
      ]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
      expect(index.manifests[0].digest).toBe(app.digest);
    }
  }, 120_000);

  it('the real @huggingface/hub client downloads a pinned snapshot through the fleet, twice, byte-identical', async () => {
    for (let round = 0; round < 2; round++) {
      const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-fleet-hf-'));
      const folder = await snapshotDownload({ repo: 'acme/fleet-llama', revision: 'main', hubUrl: `${lb.url}/hf`, cacheDir });
      expect(folder.endsWith(join('snapshots', hfCommit))).toBe(true);
      expect(readFileSync(join(folder, 'model.safetensors')).equals(weights)).toBe(true);
      expect(readFileSync(join(folder, 'config.json')).equals(hfConfig)).toBe(true);
    }
    // One upstream transfer of the weights for both downloads, whichever replicas served them.
    expect(hub.count(`cdn:${createHash('sha256').update(weights).digest('hex')}`)).toBe(1);
  }, 120_000);

  it('16 clients over three replicas on one cold 64 MiB file: one upstream transfer, every byte verified', async () => {
    index.throttle = 32 << 20; // 2 s for the file: every client asks while it fills
    try {
      const t0 = Date.now();
      const results = await Promise.all(
        Array.from({ length: 16 }, () => hashGet(`${lb.url}/pypi/files/fleetbig/${big.filename}`).then((r) => ({ ...r, ms: Date.now() - t0 }))),
      );
      for (const r of results) {
        expect(r.status).toBe(200);
        expect(r.complete).toBe(true);
        expect(r.sha).toBe(sha(big.bytes));
      }
      expect(index.count(`/files/${big.filename}`)).toBe(1);
      const byCache = (c: string) => results.filter((r) => r.cache === c).map((r) => r.ms);
      console.log(
        `fleet: 16 clients, 3 replicas, 64 MiB cold: 1 upstream fetch; filling replica's clients (miss/join) done in ${Math.max(...byCache('miss'), ...byCache('join'))} ms, the others' (hit from the shared store after the commit) in ${Math.min(...byCache('hit'))}-${Math.max(...byCache('hit'))} ms`,
      );
    } finally {
      index.throttle = 0;
    }
  }, 180_000);

  it('kill -9 of the filling replica: its clients fail cleanly, the others take over, a retry succeeds, nothing partial is stored, the record verifies', async () => {
    index.throttle = 16 << 20; // 4 s for 64 MiB
    const url = (port: number) => `http://127.0.0.1:${port}/pypi/files/fleetcrash/${crash.filename}`;
    try {
      // Replica 0 starts the fill; clients on replicas 1 and 2 wait on its lease.
      const onFiller = rawGet(url(replicas[0].port));
      await new Promise((r) => setTimeout(r, 700));
      const waiting = [1, 2].map((i) => rawGet(url(replicas[i].port)));
      await new Promise((r) => setTimeout(r, 300));
      replicas[0].proc.kill('SIGKILL');
      const cut = await onFiller.catch(() => ({ complete: false, status: 0, body: Buffer.alloc(0) }));
      expect(cut.complete).toBe(false);
      // The waiting replicas take the stale lease over (lease_stale: 2 s) and fill it themselves.
      for (const w of await Promise.all(waiting)) {
        expect(w.status).toBe(200);
        expect(w.complete && sha(w.body) === sha(crash.bytes)).toBe(true);
      }
      // A retry through the load balancer (which skips the dead replica) gets the whole file.
      const retry = await rawGet(`${lb.url}/pypi/files/fleetcrash/${crash.filename}`);
      expect(retry.complete && sha(retry.body) === sha(crash.bytes)).toBe(true);
    } finally {
      index.throttle = 0;
    }
    // Nothing partial in the shared store, and one record that verifies.
    const meta = await PgMetaStore.open(pgsrv.url);
    const store = await S3BlobStore.create({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      bucket: s3.bucket,
      prefix: 'fleet/',
      forcePathStyle: true,
      credentials: s3.credentials,
      spoolDir: mkdtempSync(join(tmpdir(), 'airlock-fleet-spool-')),
    });
    try {
      const scrub = await scrubStore(meta, store);
      expect(scrub.corrupt).toEqual([]);
      expect(scrub.missing).toEqual([]);
      expect(await meta.getBlob(sha(crash.bytes))).not.toBeNull();
    } finally {
      await meta.close();
    }
    const audit = await airlockCli(['audit', 'verify', '--config', config], env);
    expect(audit.code).toBe(0);
  }, 120_000);
});
