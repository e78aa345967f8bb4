import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { startNginx } from '../helpers/fleet.js';
import { rawGet, records } from '../helpers/http.js';
import { buildDist, pip } from '../helpers/pip.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Warm offload to Debian's nginx (offload.mode: nginx): Airlock decides and records, nginx sends
 * the verified file from the store with X-Accel-Redirect. The real pip installs through it.
 */
describe('warm offload to nginx (X-Accel-Redirect)', () => {
  const index = new FakeIndex();
  let a: TestAirlock;
  let lb: { url: string; stop(): Promise<void> };
  const big = { filename: 'offl-1.0-py3-none-any.whl', bytes: randomBytes(5 << 20) };
  const dist = buildDist({ name: 'offpkg', version: '1.0' });

  beforeAll(async () => {
    await index.start();
    index.add('offl', big).add('offpkg', dist);
    const data = join(mkdtempSync(join(tmpdir(), 'airlock-offload-')), 'data');
    a = await startAirlock(
      `offload:\n  mode: nginx\npypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow: [{ name: offl }, { name: offpkg }]\n`,
      { dataDir: data },
    );
    // The internal location exactly as deploy/nginx-offload.conf writes it, pointed at this data_dir.
    const conf = readFileSync(join(process.cwd(), 'deploy', 'nginx-offload.conf'), 'utf8');
    const internal = /  location \/_airlock_blobs\/ \{[\s\S]*?\n  \}/.exec(conf)![0].replace('/var/lib/airlock/', `${data}/`);
    lb = await startNginx(mkdtempSync(join(tmpdir(), 'airlock-offload-nginx-')), [a.port], internal);
  });

  afterAll(async () => {
    await lb?.stop();
    await a?.stop();
    await index.stop();
  });

  it('serves a cold file through Node and a warm one from nginx, after the decision and the record', async () => {
    const u = `${lb.url}/pypi/files/offl/${big.filename}`;
    const cold = await rawGet(u);
    expect(cold.headers['x-airlock-cache']).toBe('miss');
    expect(cold.complete && sha(cold.body) === sha(big.bytes)).toBe(true);
    await a.airlock.cache.idle();
    const warm = await rawGet(u);
    expect(warm.status).toBe(200);
    expect(warm.headers['x-airlock-cache']).toBe('hit');
    expect(warm.headers['content-length']).toBe(String(big.bytes.length));
    expect(warm.headers['x-airlock-sha256']).toBe(sha(big.bytes));
    expect(warm.complete && sha(warm.body) === sha(big.bytes)).toBe(true);
    const part = await rawGet(u, { range: 'bytes=100-199' });
    expect(part.status).toBe(206);
    expect(part.body.equals(big.bytes.subarray(100, 200))).toBe(true);
    // Airlock answered the offloaded request with no body of its own; the hit is on record.
    const direct = await rawGet(`${a.url}/pypi/files/offl/${big.filename}`);
    expect(direct.headers['x-accel-redirect']).toBe(`/_airlock_blobs/${sha(big.bytes).slice(0, 2)}/${sha(big.bytes)}`);
    expect(direct.body.length).toBe(0);
    const rows = await records(a, 'name=offl');
    expect(rows.filter((r: { cache: string; decision: string }) => r.cache === 'hit' && r.decision === 'allow').length).toBeGreaterThanOrEqual(3);
    // Policy still decides first: a refused file is refused by Airlock, not served by nginx.
    expect((await rawGet(`${lb.url}/pypi/files/offl/offl-9.9-py3-none-any.whl`)).status).toBeGreaterThanOrEqual(400);
  });

  it('the real pip installs through it, cold and then warm', async () => {
    for (let i = 0; i < 2; i++) {
      const target = mkdtempSync(join(tmpdir(), 'airlock-offload-pip-'));
      const r = await pip(['install', '--no-deps', '--target', target, '--index-url', `${lb.url}/pypi/simple/`, 'offpkg==1.0']);
      expect(r.code, r.out).toBe(0);
      await a.airlock.cache.idle();
    }
    const rows = await records(a, 'name=offpkg');
    expect(rows.some((r: { cache: string }) => r.cache === 'hit')).toBe(true);
  });
});
