import { randomBytes } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { Authenticator } from '../../src/auth/tokens.js';
import { verifyChain } from '../../src/core/chain.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

/**
 * Two Airlock replicas on one PostgreSQL and one S3-compatible store (real PostgreSQL 15 and
 * s3rver, started here): what one fills the other serves, tokens and records are shared, the
 * record is one chain, and a rotted object is cut, quarantined and fetched again.
 */
describe('replicas on PostgreSQL and S3', () => {
  const index = new FakeIndex();
  let pgsrv: TestPostgres;
  let s3: TestS3;
  let a: TestAirlock;
  let b: TestAirlock;
  let pgStopped = false;
  const wheel = { filename: 'shared-1.0-py3-none-any.whl', bytes: randomBytes(3 << 20) };
  const small = { filename: 'shared-2.0-py3-none-any.whl', bytes: randomBytes(100_000) };
  const cold = { filename: 'shared-3.0-py3-none-any.whl', bytes: randomBytes(8 << 20) };
  const orphan = { filename: 'shared-4.0-py3-none-any.whl', bytes: randomBytes(200_000) };

  beforeAll(async () => {
    [pgsrv, s3] = await Promise.all([startPostgres(), startS3()]);
    await index.start();
    index.add('shared', wheel).add('shared', small).add('shared', cold).add('shared', orphan);
    process.env.AIRLOCK_TEST_PG = pgsrv.url;
    process.env.AIRLOCK_TEST_S3_ID = s3.credentials.accessKeyId;
    process.env.AIRLOCK_TEST_S3_SECRET = s3.credentials.secretAccessKey;
    const yaml = `storage:
  meta: postgres
  postgres_url_env: AIRLOCK_TEST_PG
  postgres_schema: fleet
  lease_stale: 1
  blobs: s3
  s3:
    endpoint: ${s3.endpoint}
    bucket: ${s3.bucket}
    prefix: fleet/
    path_style: true
    access_key_env: AIRLOCK_TEST_S3_ID
    secret_key_env: AIRLOCK_TEST_S3_SECRET
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
policy:
  pypi:
    allow: [{ name: shared }]
`;
    a = await startAirlock(yaml);
    b = await startAirlock(yaml);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await index.stop();
    await s3?.stop();
    if (!pgStopped) await pgsrv?.stop();
  });

  const url = (t: TestAirlock, f: { filename: string }) => `${t.url}/pypi/files/shared/${f.filename}`;

  it('serves from one replica what the other filled, with one upstream fetch, and keeps one record', async () => {
    const first = await rawGet(url(a, wheel));
    expect(first.headers['x-airlock-cache']).toBe('miss');
    expect(sha256(first.body)).toBe(sha256(wheel.bytes));
    await a.airlock.cache.idle();
    const second = await rawGet(url(b, wheel));
    expect(second.headers['x-airlock-cache']).toBe('hit');
    expect(second.complete && sha256(second.body) === sha256(wheel.bytes)).toBe(true);
    expect(index.count(`/files/${wheel.filename}`)).toBe(1);
    // A range read from the object store.
    const part = await rawGet(url(b, wheel), { range: 'bytes=1000-1999' });
    expect(part.status).toBe(206);
    expect(part.body.equals(wheel.bytes.subarray(1000, 2000))).toBe(true);
    // Both replicas' rows, one chain, readable from either.
    const rows = await records(b, 'name=shared');
    await records(a, 'name=shared');
    expect(rows.filter((r: { cache: string }) => r.cache === 'miss')).toHaveLength(1);
    expect(rows.filter((r: { cache: string }) => r.cache === 'hit').length).toBeGreaterThanOrEqual(2);
    const chain = await verifyChain(a.airlock.meta);
    expect(chain.problem).toBeUndefined();
  });

  it('cuts a rotted object on the other replica, quarantines it and fetches it again', async () => {
    expect((await rawGet(url(a, small))).complete).toBe(true);
    await a.airlock.cache.idle();
    const hex = sha256(small.bytes);
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.credentials });
    const rotted = Buffer.from(small.bytes);
    rotted[5000] ^= 1;
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `fleet/blobs/sha256/${hex.slice(0, 2)}/${hex}`, Body: rotted }));
    const cut = await rawGet(url(b, small));
    expect(cut.complete).toBe(false);
    const [row] = await records(b, 'name=shared&decision=deny');
    expect(row.reason).toMatch(/now hashes to sha256:/);
    const again = await rawGet(url(b, small));
    expect(again.headers['x-airlock-cache']).toBe('miss');
    expect(again.complete && again.body.equals(small.bytes)).toBe(true);
    expect(index.count(`/files/${small.filename}`)).toBe(2);
  });

  it('16 clients over both replicas on one cold file: one upstream transfer, every byte verified', async () => {
    index.throttle = 16 << 20; // ~0.5 s for 8 MiB
    try {
      const t0 = Date.now();
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) => {
          const t = i % 2 ? b : a;
          return rawGet(url(t, cold)).then((r) => ({ ...r, replica: i % 2 ? 'b' : 'a', ms: Date.now() - t0 }));
        }),
      );
      for (const r of results) {
        expect(r.status).toBe(200);
        expect(r.complete && sha256(r.body) === sha256(cold.bytes)).toBe(true);
      }
      expect(index.count(`/files/${cold.filename}`)).toBe(1);
      const filler = results.find((r) => r.headers['x-airlock-cache'] === 'miss')!;
      const others = results.filter((r) => r.replica !== filler.replica);
      expect(others.every((r) => r.headers['x-airlock-cache'] === 'hit')).toBe(true);
      console.log(
        `fleet: 16 clients on 2 replicas, 1 upstream fetch; the filling replica's clients done in ${Math.max(...results.filter((r) => r.replica === filler.replica).map((r) => r.ms))} ms, the other's in ${Math.max(...others.map((r) => r.ms))} ms (they wait for the commit, then read the shared store)`,
      );
    } finally {
      index.throttle = 0;
    }
  });

  it('takes over the lease of a replica that died mid-fill', async () => {
    const hex = sha256(orphan.bytes);
    // A replica took the lease and died: its heartbeat stops.
    expect(await a.airlock.meta.takeLease(hex, 'dead-replica', 1000)).toBe(true);
    const t0 = Date.now();
    const r = await rawGet(url(b, orphan));
    expect(r.complete && r.body.equals(orphan.bytes)).toBe(true);
    // Taken over once the lease was stale (lease_stale: 1 s), not before.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a console session ends on both replicas when it logs out on one, or when its token is revoked; a login form from one is good on the other', async () => {
    const secret = await new Authenticator(a.airlock.meta).create('fleet-admin', true);
    const session = (res: Response) =>
      res.headers
        .getSetCookie()
        .find((c) => c.startsWith('airlock_console='))!
        .split(';')[0];
    const nonceOf = async (t: TestAirlock) => /name="nonce" value="([^"]+)"/.exec(await (await fetch(`${t.url}/-/ui/login`)).text())![1];
    const login = async (form: TestAirlock, to: TestAirlock) => {
      const nonce = await nonceOf(form);
      const res = await fetch(`${to.url}/-/ui/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: `airlock_login=${nonce}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ nonce, token: secret }),
      });
      expect(res.status).toBe(303);
      return session(res);
    };
    const status = async (t: TestAirlock, cookie: string) => (await fetch(`${t.url}/-/ui`, { redirect: 'manual', headers: { cookie } })).status;
    // The form from a, posted to b (the nonce is signed by the secret both share).
    const cookie = await login(a, b);
    expect([await status(a, cookie), await status(b, cookie)]).toEqual([200, 200]);
    const csrf = /name="csrf" value="([^"]+)"/.exec(await (await fetch(`${a.url}/-/ui`, { headers: { cookie } })).text())![1];
    const out = await fetch(`${a.url}/-/ui/logout`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf }),
    });
    expect(out.status).toBe(303);
    expect([await status(b, cookie), await status(a, cookie)]).toEqual([303, 303]);
    // airlock token revoke, run against the shared database, ends the token's sessions on both.
    const again = await login(b, a);
    expect([await status(a, again), await status(b, again)]).toEqual([200, 200]);
    const r = await airlockCli(['token', 'revoke', 'fleet-admin', '--config', a.configFile]);
    expect(r.code).toBe(0);
    expect([await status(a, again), await status(b, again)]).toEqual([303, 303]);
  });

  it('airlock migrate moves an embedded record into PostgreSQL with its chain, tokens and advisories', async () => {
    // An embedded (SQLite) Airlock with some history.
    const solo = await startAirlock(
      `pypi:\n  upstream: ${index.simpleUrl}\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow: [{ name: shared }]\n`,
    );
    for (const f of [wheel, small, wheel]) expect((await rawGet(url(solo, f))).complete).toBe(true);
    expect((await rawGet(`${solo.url}/pypi/files/shared/nope-1.0.tar.gz`)).status).toBeGreaterThanOrEqual(400);
    await solo.airlock.meta.createToken({ name: 'ci', hash: 'f'.repeat(64), admin: false });
    await solo.airlock.meta.revokeToken('ci');
    await solo.airlock.meta.putAdvisories([
      { id: 'PYSEC-0000-1', modified: '2026-01-01T00:00:00Z', record: JSON.stringify({ id: 'PYSEC-0000-1', modified: '2026-01-01T00:00:00Z', affected: [] }) },
    ]);
    await solo.airlock.recorder.flush();
    const before = await verifyChain(solo.airlock.meta);
    await solo.stop();
    // The same data directory, now pointed at PostgreSQL.
    const cfg = `${solo.configFile}.pg.yaml`;
    writeFileSync(cfg, readFileSync(solo.configFile, 'utf8') + `storage:\n  meta: postgres\n  postgres_url_env: AIRLOCK_TEST_PG\n  postgres_schema: moved\n`);
    const env = { AIRLOCK_TEST_PG: pgsrv.url };
    const moved = await airlockCli(['migrate', '--from', 'sqlite', '--to', 'postgres', '--config', cfg], env);
    expect(moved.stderr).toBe('');
    expect(moved.stdout).toMatch(new RegExp(`moved ${before.rows} pull records .* head ${before.head}\\), 1 tokens, 1 advisories`));
    const audit = await airlockCli(['audit', 'verify', '--config', cfg], env);
    expect(audit.code).toBe(0);
    expect(audit.stdout).toContain(before.head!);
    const again = await airlockCli(['migrate', '--from', 'sqlite', '--to', 'postgres', '--config', cfg], env);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/not empty/);
    expect((await airlockCli(['migrate', '--config', cfg], env)).stdout).toBe('PostgreSQL schema is up to date\n');
  });

  it('offload.mode presigned: a warm hit is a redirect to a short-lived URL of the verified object, after the record', async () => {
    const yaml = readFileSync(a.configFile, 'utf8')
      .replace(/^listen: .*\n/m, '')
      .replace(/^data_dir: .*\n/m, '')
      .replace(/^log_level: .*\n/m, '')
      .replace(/^auth:\n  admin: open\n/m, '');
    const c = await startAirlock(`${yaml}offload:\n  mode: presigned\n  presign_seconds: 60\n`);
    try {
      const res = await rawGet(url(c, wheel));
      expect(res.status).toBe(307);
      const loc = new URL(String(res.headers.location));
      expect(loc.origin).toBe(s3.endpoint);
      expect(loc.searchParams.get('X-Amz-Expires')).toBe('60');
      const followed = await fetch(url(c, wheel));
      expect(followed.status).toBe(200);
      expect(sha256(Buffer.from(await followed.arrayBuffer()))).toBe(sha256(wheel.bytes));
      const rows = await records(c, 'name=shared&limit=1');
      expect(rows[0]).toMatchObject({ cache: 'hit', decision: 'allow' });
    } finally {
      await c.stop();
    }
  });

  it('is ready while its stores answer, and says which one does not (the last test: it stops PostgreSQL)', async () => {
    expect((await fetch(`${a.url}/-/readyz`)).status).toBe(200);
    await pgsrv.stop();
    pgStopped = true;
    const r = await fetch(`${b.url}/-/readyz`);
    expect(r.status).toBe(503);
    const body = (await r.json()) as { problems: string[] };
    expect(body.problems.join('; ')).toMatch(/^metadata store: /);
    // Liveness is not readiness: the process itself is fine.
    expect((await fetch(`${b.url}/-/healthz`)).status).toBe(200);
  });
});
