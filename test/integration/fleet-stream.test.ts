import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOLD_BACK } from '../../src/core/fill.js';
import { checkPeerRequest, peerProof, signPeerRequest } from '../../src/core/peer-stream.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { serveProcess } from '../helpers/fleet.js';
import { rawGet, records } from '../helpers/http.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

const SECRET = 'fleet-test-secret-0123456789abcdef0123';

/** A streaming GET: when its first byte came, what came, and whether it ended cleanly. */
function streamGet(url: string, onFirst?: () => void): Promise<{ status: number; cache: unknown; body: Buffer; complete: boolean; firstAt: number }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      const chunks: Buffer[] = [];
      let firstAt = 0;
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode!, cache: res.headers['x-airlock-cache'], body: Buffer.concat(chunks), complete: res.complete, firstAt });
      };
      res.on('data', (c: Buffer) => {
        if (!firstAt) {
          firstAt = Date.now();
          onFirst?.();
        }
        chunks.push(c);
      });
      res.on('end', end);
      res.on('error', end);
      res.on('aborted', end);
    }).on('error', reject);
  });
}

const until = async (what: () => Promise<boolean> | boolean, ms = 20_000) => {
  const t = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > t) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
};

/**
 * Replicas stream a fill under way to each other (storage.peers, core/peer-stream.ts): real
 * PostgreSQL 15 and s3rver, replicas in this process and one as its own process (killed -9).
 */
describe('replicas stream fills to each other', () => {
  const index = new FakeIndex();
  let pgsrv: TestPostgres;
  let s3: TestS3;
  let a: TestAirlock;
  let b: TestAirlock;
  let yaml: string;
  const file = (n: number, size: number) => ({ filename: `streamed-${n}.0-py3-none-any.whl`, bytes: randomBytes(size) });
  const cold = file(1, 8 << 20);
  const tampered = file(2, 4 << 20);
  const wrongSecret = file(3, 2 << 20);
  const killed = file(4, 8 << 20);
  const url = (t: { url: string }, f: { filename: string }) => `${t.url}/pypi/files/streamed/${f.filename}`;
  const fakes: Server[] = [];

  beforeAll(async () => {
    [pgsrv, s3] = await Promise.all([startPostgres(), startS3()]);
    await index.start();
    for (const f of [cold, tampered, wrongSecret, killed]) index.add('streamed', f);
    process.env.AIRLOCK_TEST_PG = pgsrv.url;
    process.env.AIRLOCK_TEST_S3_ID = s3.credentials.accessKeyId;
    process.env.AIRLOCK_TEST_S3_SECRET = s3.credentials.secretAccessKey;
    process.env.AIRLOCK_TEST_FLEET = SECRET;
    yaml = `storage:
  meta: postgres
  postgres_url_env: AIRLOCK_TEST_PG
  lease_stale: 1
  peers: { secret_env: AIRLOCK_TEST_FLEET }
  blobs: s3
  s3: { endpoint: "${s3.endpoint}", bucket: ${s3.bucket}, path_style: true, access_key_env: AIRLOCK_TEST_S3_ID, secret_key_env: AIRLOCK_TEST_S3_SECRET }
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
policy:
  pypi:
    allow: [{ name: streamed }]
`;
    a = await startAirlock(yaml);
    b = await startAirlock(yaml);
    // The index page first, so that file requests time only the file.
    for (const t of [a, b]) expect((await fetch(`${t.url}/pypi/simple/streamed/`)).status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    for (const f of fakes) f.close();
    await a?.stop();
    await b?.stop();
    await index.stop();
    await s3?.stop();
    await pgsrv?.stop();
  });

  it("streams the filling replica's bytes to the waiting replica's client before the commit: identical, verified, one upstream fetch", async () => {
    const hex = sha256(cold.bytes);
    index.throttle = 4 << 20; // ~2 s for 8 MiB
    try {
      const filling = streamGet(url(a, cold));
      await until(async () => (await a.airlock.meta.leaseHolder(hex)) !== null);
      expect((await a.airlock.meta.leaseHolder(hex))!.addr).toBe(a.url);
      let storedAtFirstByte: unknown = 'unset';
      const waiting = streamGet(url(b, cold), () => void b.airlock.meta.getBlob(hex).then((r) => (storedAtFirstByte = r)));
      // A range on the waiting replica waits for the digest, then is exact.
      const part = rawGet(url(b, cold), { range: 'bytes=1000-1999' });
      const [fa, fb, pr] = await Promise.all([filling, waiting, part]);
      expect(fa.complete && fa.body.equals(cold.bytes)).toBe(true);
      expect(fb.complete && fb.body.equals(cold.bytes)).toBe(true);
      expect(fb.cache).toBe('join');
      // The waiting replica's client had bytes while the blob was not yet in the shared store.
      expect(storedAtFirstByte).toBeNull();
      expect(pr.status).toBe(206);
      expect(pr.body.equals(cold.bytes.subarray(1000, 2000))).toBe(true);
      expect(index.count(`/files/${cold.filename}`)).toBe(1);
      await a.airlock.cache.idle();
      await b.airlock.cache.idle();
      expect((await b.airlock.meta.getBlob(hex))?.size).toBe(cold.bytes.length);
      // Each replica wrote its own row: the filler's a miss, the waiting replica's a join.
      const rows = (await records(b, 'name=streamed')).filter((r: { filename?: string }) => r.filename === cold.filename);
      expect(rows.map((r: { cache: string; decision: string }) => `${r.cache}/${r.decision}`).sort()).toEqual(['join/allow', 'join/allow', 'miss/allow']);
    } finally {
      index.throttle = 0;
    }
  });

  it('refuses a request to the internal route without the fleet signature, or with a wrong one', async () => {
    const path = `/-/fleet/fills/${sha256(cold.bytes)}?from=0`;
    const bare = await rawGet(`${a.url}${path}`);
    expect(bare.status).toBe(401);
    expect(JSON.parse(bare.body.toString()).error).toBe('UNAUTHORIZED');
    const forged = signPeerRequest(Buffer.from('another-secret-0123456789abcdef0123'), path);
    const wrong = await rawGet(`${a.url}${path}`, { 'x-airlock-fleet': forged.header });
    expect(wrong.status).toBe(401);
    // Signed for another path: refused too.
    const other = signPeerRequest(Buffer.from(SECRET), `/-/fleet/fills/${'0'.repeat(64)}?from=0`);
    expect((await rawGet(`${a.url}${path}`, { 'x-airlock-fleet': other.header })).status).toBe(401);
    // Properly signed, for a blob this replica is not filling: not found (and no bytes).
    const good = signPeerRequest(Buffer.from(SECRET), path);
    expect((await rawGet(`${a.url}${path}`, { 'x-airlock-fleet': good.header })).status).toBe(404);
  });

  /** A "filler" answering the internal route with `bytes` (signed with `secret`), holding the lease on `hex` with its address. */
  async function fakeFiller(hex: string, bytes: Buffer, secret: string): Promise<{ asked: () => number; stop: () => Promise<void> }> {
    let asked = 0;
    const srv = createServer((req, res) => {
      asked++;
      const ok = checkPeerRequest(Buffer.from(secret), req.url!, req.headers['x-airlock-fleet'] as string);
      const nonce = 'nonce' in ok ? ok.nonce : /n=([0-9a-f]+)/.exec(String(req.headers['x-airlock-fleet']))![1];
      res.writeHead(200, {
        'x-airlock-size': bytes.length,
        'content-length': bytes.length,
        'x-airlock-fleet-proof': peerProof(Buffer.from(secret), nonce, hex, 0, bytes.length),
      });
      res.end(bytes);
    });
    fakes.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const addr = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    expect(await a.airlock.meta.takeLease(hex, 'fake-filler', 60_000, addr)).toBe(true);
    const renew = setInterval(() => void a.airlock.meta.renewLease(hex, 'fake-filler'), 200);
    return {
      asked: () => asked,
      stop: async () => {
        clearInterval(renew);
        await a.airlock.meta.releaseLease(hex, 'fake-filler');
      },
    };
  }

  it('cuts before the held-back tail a stream from a "filler" whose bytes do not match the digest, and caches nothing', async () => {
    const hex = sha256(tampered.bytes);
    const bad = Buffer.from(tampered.bytes);
    bad[1 << 20] ^= 1;
    const fake = await fakeFiller(hex, bad, SECRET);
    try {
      const r = await streamGet(url(b, tampered));
      expect(fake.asked()).toBe(1);
      expect(r.complete).toBe(false);
      expect(r.body.length).toBeLessThanOrEqual(tampered.bytes.length - HOLD_BACK);
      await b.airlock.cache.idle();
      expect(await b.airlock.meta.getBlob(hex)).toBeNull();
      const [row] = (await records(b, 'name=streamed&decision=deny')).filter((x: { filename?: string }) => x.filename === tampered.filename);
      expect(row.code).toBe('digest_mismatch');
      expect(index.count(`/files/${tampered.filename}`)).toBe(0);
    } finally {
      await fake.stop();
    }
  });

  it('does not read an answer from a "filler" that cannot prove the fleet secret: waits, then fills itself', async () => {
    const hex = sha256(wrongSecret.bytes);
    const fake = await fakeFiller(hex, wrongSecret.bytes, 'not-the-fleet-secret-0123456789abcdef');
    setTimeout(() => void fake.stop(), 1500);
    const r = await streamGet(url(b, wrongSecret));
    expect(fake.asked()).toBeGreaterThanOrEqual(1);
    // Its bytes (the right ones, as it happens) were not taken: this replica filled from upstream once the lease was free.
    expect(r.complete && r.body.equals(wrongSecret.bytes)).toBe(true);
    expect(r.cache).toBe('miss');
    expect(index.count(`/files/${wrongSecret.filename}`)).toBe(1);
  });

  it('a filler killed (-9) mid-stream: the waiting client completes with the right bytes (resumed at the same byte) or is cut, never a wrong body', async () => {
    const hex = sha256(killed.bytes);
    const cfg = join(a.dir, 'killed-replica.yaml');
    writeFileSync(cfg, `listen: 127.0.0.1:0\ndata_dir: ${join(a.dir, 'killed-data')}\nlog_level: info\nauth:\n  admin: open\n${yaml}`);
    let c: { proc: ChildProcess; port: number } | undefined;
    index.throttle = 2 << 20; // ~4 s for 8 MiB
    try {
      c = await serveProcess(cfg);
      const cUrl = { url: `http://127.0.0.1:${c.port}` };
      expect((await fetch(`${cUrl.url}/pypi/simple/streamed/`)).status).toBe(200);
      const filling = streamGet(url(cUrl, killed));
      await until(async () => (await a.airlock.meta.leaseHolder(hex))?.addr === cUrl.url);
      let got = false;
      const waiting = streamGet(url(b, killed), () => (got = true));
      await until(() => got);
      await new Promise((r) => setTimeout(r, 300));
      c.proc.kill('SIGKILL');
      const [fc, fb] = await Promise.all([filling, waiting]);
      expect(fc.complete).toBe(false);
      // Never a complete wrong body; here the waiting replica resumes (from upstream, once the lease went stale).
      if (fb.complete) expect(sha256(fb.body)).toBe(hex);
      expect(fb.complete).toBe(true);
      expect(fb.body.length).toBe(killed.bytes.length);
      await b.airlock.cache.idle();
      expect((await b.airlock.meta.getBlob(hex))?.size).toBe(killed.bytes.length);
      expect(index.count(`/files/${killed.filename}`)).toBe(2);
    } finally {
      index.throttle = 0;
      c?.proc.kill('SIGKILL');
    }
  });
});
