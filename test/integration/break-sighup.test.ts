/**
 * Attacks on "a SIGHUP after `airlock trust accept` makes every path use the new recorded signer at
 * once" (a697a2d): PyPI file GET and HEAD, Hub resolve GET and HEAD, OCI manifests by tag and by
 * digest (the warm fast path included), blobs, on_change: warn rows, and `trust accept` without
 * --identity (forget). The CLI writes the store from its own process; `reloadTrust()` is what the
 * SIGHUP handler calls. Each step checks the old signer is still in force first (so the SIGHUP,
 * not the 10 s, is what changed it), then the SIGHUP, then every path.
 */
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { getEventListeners } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeHub, hfUpstream } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { FakeRegistry, digestOf, makeImage, type Image } from '../helpers/fake-registry.js';
import { records } from '../helpers/http.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { fixtureFiles, MODE_DIR, MODELS } from '../helpers/signed-models.js';
import { idOf, keySigner, legacySig, OCI_ACCEPT } from '../helpers/cosign-legacy.js';

const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
const PA = 'pypi_attestations-0.0.19.tar.gz';
const dist = readFileSync(join(FIX, PA));
const provenance = readFileSync(join(FIX, `${PA}.provenance`));
const REAL = 'github:trailofbits/pypi-attestations release.yml';
const OTHER = 'github:mallory/pypi-attestations release.yml';
const IBM = 'https://sigstore.verify.ibm.com/oauth2 stefanb@us.ibm.com';
const HFKEY = 'key:c1e49d63327f';

const ACCEPT = OCI_ACCEPT;
const keyA = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyB = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const A = idOf(keyA.publicKey);
const B = idOf(keyB.publicKey);

describe('SIGHUP after trust accept: every path uses the new recorded signer at once', () => {
  const up = new FakeIndex();
  const hub = new FakeHub();
  const reg = new FakeRegistry();
  let a: TestAirlock;
  let w: TestAirlock;
  const c: Record<string, string> = {};
  const img = {
    cont: [makeImage([randomBytes(300)]), makeImage([randomBytes(300)])] as const,
    warned: [makeImage([randomBytes(300)]), makeImage([randomBytes(300)])] as const,
    fast: makeImage([randomBytes(300)]),
  };
  /** Whether the fast path answered each request it was tried on. */
  const seen: boolean[] = [];

  /** `airlock trust accept ECO PROJECT [--identity ID]` from its own process, then nothing else (no SIGHUP). */
  const accept = async (on: TestAirlock, eco: string, project: string, identity?: string) => {
    const r = await airlockCli(['trust', 'accept', eco, project, ...(identity ? ['--identity', identity] : []), '--config', on.configFile]);
    expect([r.code, r.stderr]).toEqual([0, '']);
  };
  /** A request with its own id; returns the status and the rows it left (after the recorder's flush). */
  const call = async (on: TestAirlock, url: string, method = 'GET', headers: Record<string, string> = {}) => {
    const id = randomUUID();
    const r = await fetch(url, { method, headers: { 'x-request-id': id, ...headers } });
    await r.arrayBuffer();
    const rows = (await records(on, 'limit=10000')).filter((x: { requestId?: string }) => x.requestId === id);
    return { status: r.status, rows, message: r.headers.get('x-error-message') ?? '' };
  };
  const pypi = (on: TestAirlock, method = 'GET') => call(on, `${on.url}/pypi/files/pypi-attestations/${PA}`, method);
  const hf = (p: string, method = 'GET') => call(a, `${a.url}/hf/${p}`, method);
  const oci = (p: string, method = 'GET') => call(a, `${a.url}/v2/reg.test/${p}`, method, { accept: ACCEPT });

  beforeAll(async () => {
    await up.start();
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
    await hub.start();
    for (const repo of ['cont', 'warned']) {
      c[`${repo}1`] = hub.commit('model', `acme/${repo}`, fixtureFiles(MODE_DIR.keyless));
      c[`${repo}2`] = hub.commit('model', `acme/${repo}`, fixtureFiles(MODE_DIR.key), ['v2']);
    }
    reg.referrersMode = 'none';
    await reg.start();
    for (const repo of ['cont', 'warned'] as const) {
      img[repo].forEach((im, i) => {
        reg.push(`${repo}/app`, im, `v${i + 1}`);
        reg.push(`${repo}/app`, legacySig(im, [keyA, keyB][i].privateKey), `sha256-${im.digest.slice(7)}.sig`);
      });
    }
    reg.push('fast/app', img.fast, 'v1');
    reg.push('fast/app', legacySig(img.fast, keyA.privateKey), `sha256-${img.fast.digest.slice(7)}.sig`);
    const hfRule = (repo: string, extra = '') =>
      `      - repo: acme/${repo}\n        refs: { main: "${c[`${repo}1`]}", v2: "${c[`${repo}2`]}" }\n        require: signed\n        signers: [ibm, acme-key]\n${extra}`;
    const ociRule = (repo: 'cont' | 'warned', extra = '') =>
      `      - repository: reg.test/${repo}/app\n        digests: ["${img[repo][0].digest}", "${img[repo][1].digest}"]\n        tags: { v1: "${img[repo][0].digest}", v2: "${img[repo][1].digest}" }\n        require: signed\n        signers: [key-a, key-b]\n${extra}`;
    const common = (onChange: string) => `
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]
${hfUpstream(hub)}oci:
  default_registry: reg.test
  registries:
    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }
policy:
  signing:
    signers:
      ibm: { issuer: "https://sigstore.verify.ibm.com/oauth2", subject: stefanb@us.ibm.com }
      acme-key: { key_file: ${join(MODELS, 'keys/signing-key-pub.pem')} }
${keySigner('key-a', keyA.publicKey)}
${keySigner('key-b', keyB.publicKey)}
  pypi:
    allow:
      - { name: pypi-attestations, require: attested, on_change: ${onChange}, publisher: { github: trailofbits/pypi-attestations, workflow: release.yml } }
`;
    a = await startAirlock(`${common('refuse')}  hf:
    allow:
${hfRule('cont')}${hfRule('warned', '        on_change: warn\n')}  oci:
    allow:
${ociRule('cont')}${ociRule('warned', '        on_change: warn\n')}      - repository: reg.test/fast/app
        digests: ["${img.fast.digest}"]
        tags: { v1: "${img.fast.digest}" }
`);
    const serve = a.airlock.fast.serve.bind(a.airlock.fast);
    a.airlock.fast.serve = async (req, res) => {
      const done = await serve(req, res);
      seen.push(done);
      return done;
    };
    // PyPI under on_change: warn (one fixture project, so a server of its own).
    w = await startAirlock(common('warn'));
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await w?.stop();
    await up.stop();
    await hub.stop();
    await reg.stop();
  });

  it('PyPI GET and HEAD: accept, SIGHUP, the new publisher at once; back again; forget, SIGHUP, the next pull records its publisher', async () => {
    await accept(a, 'pypi', 'pypi-attestations', OTHER);
    expect((await pypi(a)).status).toBe(403);
    expect((await pypi(a, 'HEAD')).status).toBe(403);
    await accept(a, 'pypi', 'pypi-attestations', REAL);
    // Still the old one (kept in memory): the SIGHUP is what changes it.
    expect((await pypi(a, 'HEAD')).status).toBe(403);
    await a.airlock.reloadTrust();
    expect((await pypi(a, 'HEAD')).status).toBe(200);
    const got = await pypi(a);
    expect(got.status).toBe(200);
    expect(got.rows[0]).toMatchObject({ decision: 'allow' });
    expect(JSON.parse(got.rows[0].signature).changedFrom).toBeUndefined();
    // And the other way: the recorded one accepted away again, at once on SIGHUP.
    await accept(a, 'pypi', 'pypi-attestations', OTHER);
    expect((await pypi(a)).status).toBe(200);
    await a.airlock.reloadTrust();
    expect((await pypi(a, 'HEAD')).status).toBe(403);
    expect((await pypi(a)).status).toBe(403);
    // Forget: applied at once on SIGHUP; the next verified pull records its publisher.
    await accept(a, 'pypi', 'pypi-attestations');
    expect((await pypi(a)).status).toBe(403);
    await a.airlock.reloadTrust();
    expect((await pypi(a, 'HEAD')).status).toBe(200);
    expect((await pypi(a)).status).toBe(200);
    expect((await a.airlock.meta.getSigner('pypi', 'pypi-attestations'))?.identity).toBe(REAL);
  }, 30_000);

  it('PyPI on_change: warn rows follow the SIGHUP: the warning goes once the publisher is accepted, comes back once another is', async () => {
    await accept(w, 'pypi', 'pypi-attestations', OTHER);
    const warned = await pypi(w);
    expect(warned.status).toBe(200);
    expect(warned.rows[0].reason).toMatch(/^signer changed: .*served with a warning/);
    await accept(w, 'pypi', 'pypi-attestations', REAL);
    expect((await pypi(w)).rows[0].reason).toMatch(/^signer changed: /);
    await w.airlock.reloadTrust();
    const clean = await pypi(w);
    expect(clean.status).toBe(200);
    expect(clean.rows[0].reason ?? null).toBeNull();
    expect(JSON.parse(clean.rows[0].signature).changedFrom).toBeUndefined();
    await accept(w, 'pypi', 'pypi-attestations', OTHER);
    await w.airlock.reloadTrust();
    const again = await pypi(w);
    expect(again.rows[0].reason).toMatch(/^signer changed: .*but earlier versions were signed by github:mallory/);
    expect(JSON.parse(again.rows[0].signature)).toMatchObject({ changedFrom: OTHER });
  }, 30_000);

  it('Hub resolve GET and HEAD, refused or warned, follow the SIGHUP; forget too', async () => {
    expect((await hf('acme/cont/resolve/main/signme-2')).status).toBe(200);
    expect((await hf('acme/cont/resolve/v2/signme-2')).status).toBe(403);
    expect((await hf('acme/cont/resolve/v2/signme-1', 'HEAD')).status).toBe(404);
    await accept(a, 'hf', 'acme/cont', HFKEY);
    expect((await hf('acme/cont/resolve/v2/signme-1', 'HEAD')).status).toBe(404);
    await a.airlock.reloadTrust();
    expect((await hf('acme/cont/resolve/v2/signme-1', 'HEAD')).status).toBe(200);
    expect((await hf('acme/cont/resolve/v2/signme-2')).status).toBe(200);
    expect((await hf('acme/cont/resolve/v2/signme-1')).status).toBe(200);
    expect((await hf('acme/cont/resolve/main/signme-1', 'HEAD')).status).toBe(404);
    expect((await hf('acme/cont/resolve/main/signme-2')).status).toBe(403);
    // Forget: the next verified pull records its signer (main's), at once.
    await accept(a, 'hf', 'acme/cont');
    expect((await hf('acme/cont/resolve/main/signme-2')).status).toBe(403);
    await a.airlock.reloadTrust();
    expect((await hf('acme/cont/resolve/main/signme-1', 'HEAD')).status).toBe(200);
    expect((await a.airlock.meta.getSigner('hf', 'acme/cont'))?.identity).toBe(IBM);
    expect((await hf('acme/cont/resolve/v2/signme-2')).status).toBe(403);

    // on_change: warn.
    expect((await hf('acme/warned/resolve/main/signme-2')).status).toBe(200);
    const warned = await hf('acme/warned/resolve/v2/signme-2');
    expect([warned.status, warned.rows[0].reason]).toEqual([200, expect.stringMatching(/^signer changed: /)]);
    await accept(a, 'hf', 'acme/warned', HFKEY);
    await a.airlock.reloadTrust();
    const clean = await hf('acme/warned/resolve/v2/signme-2');
    expect([clean.status, clean.rows[0].reason ?? null]).toEqual([200, null]);
    const now = await hf('acme/warned/resolve/main/signme-2');
    expect(now.status).toBe(200);
    expect(JSON.parse(now.rows[0].signature)).toMatchObject({ identity: IBM, changedFrom: HFKEY });
  }, 30_000);

  it('OCI manifests by tag and by digest, HEAD, blobs and warn rows follow the SIGHUP; forget too', async () => {
    const [one, two] = img.cont;
    const blobOf = (im: Image) => `cont/app/blobs/${digestOf(im.layers[0])}`;
    expect((await oci('cont/app/manifests/v1')).status).toBe(200);
    expect((await oci(blobOf(one))).status).toBe(200);
    for (const p of ['cont/app/manifests/v2', `cont/app/manifests/${two.digest}`, blobOf(two)]) expect((await oci(p)).status, p).toBe(403);
    await accept(a, 'oci', 'reg.test/cont/app', B);
    expect((await oci('cont/app/manifests/v2')).status).toBe(403);
    await a.airlock.reloadTrust();
    for (const p of ['cont/app/manifests/v2', `cont/app/manifests/${two.digest}`, blobOf(two)]) {
      expect((await oci(p)).status, p).toBe(200);
      expect((await oci(p, 'HEAD')).status, p).toBe(200);
    }
    for (const p of ['cont/app/manifests/v1', `cont/app/manifests/${one.digest}`, blobOf(one)]) {
      expect((await oci(p, 'HEAD')).status, p).toBe(403);
      expect((await oci(p)).status, p).toBe(403);
    }
    await accept(a, 'oci', 'reg.test/cont/app');
    await a.airlock.reloadTrust();
    expect((await oci('cont/app/manifests/v1')).status).toBe(200);
    expect((await a.airlock.meta.getSigner('oci', 'reg.test/cont/app'))?.identity).toBe(A);
    expect((await oci(blobOf(two))).status).toBe(403);

    const [w1, w2] = img.warned;
    expect((await oci('warned/app/manifests/v1')).status).toBe(200);
    const warned = await oci('warned/app/manifests/v2');
    expect([warned.status, warned.rows[0].reason]).toEqual([200, expect.stringMatching(/^signer changed: /)]);
    await accept(a, 'oci', 'reg.test/warned/app', B);
    await a.airlock.reloadTrust();
    for (const p of ['warned/app/manifests/v2', `warned/app/blobs/${digestOf(w2.layers[0])}`]) {
      const r = await oci(p);
      expect([r.status, r.rows[0]?.reason ?? null], p).toEqual([200, null]);
    }
    for (const p of [`warned/app/manifests/${w1.digest}`, `warned/app/blobs/${digestOf(w1.layers[0])}`]) {
      const r = await oci(p);
      expect(r.status, p).toBe(200);
      expect(JSON.parse(r.rows[0].signature), p).toMatchObject({ identity: A, changedFrom: B });
    }
  }, 30_000);

  it('the warm OCI fast path (no signature rule, no signer on record) stops at the SIGHUP that puts a signer on record', async () => {
    const paths = ['fast/app/manifests/v1', `fast/app/manifests/${img.fast.digest}`];
    expect((await oci(paths[0])).status).toBe(200);
    seen.length = 0;
    for (const p of paths) expect((await oci(p)).status).toBe(200);
    expect(seen).toEqual([true, true]);
    // Another key on record: the image (signed by A) is now a changed signer.
    await accept(a, 'oci', 'reg.test/fast/app', B);
    await a.airlock.reloadTrust();
    seen.length = 0;
    for (const p of [...paths, `fast/app/blobs/${digestOf(img.fast.layers[0])}`]) {
      const r = await oci(p);
      expect([r.status, r.rows[0]?.code], p).toEqual([403, 'bad_signature']);
    }
    expect(seen).toEqual([false, false]);
    // Its own key on record: served, by the route (continuity is checked each time).
    await accept(a, 'oci', 'reg.test/fast/app', A);
    await a.airlock.reloadTrust();
    seen.length = 0;
    for (const p of paths) expect((await oci(p)).status).toBe(200);
    expect(seen).toEqual([false, false]);
    // Forgotten: nothing on record, so the fast path again (after the route has looked once).
    await accept(a, 'oci', 'reg.test/fast/app');
    await a.airlock.reloadTrust();
    for (const p of paths) expect((await oci(p)).status).toBe(200);
    seen.length = 0;
    expect((await oci(paths[1])).status).toBe(200);
    expect(seen).toEqual([true]);
  }, 30_000);
});

/**
 * A loopback TCP proxy in front of PostgreSQL that, once armed, holds the replies on the connection
 * that sent a query containing `pattern` until released: a slow answer from the database (a busy
 * network, a replica far from it). The query runs on the server at once; only its answer waits.
 */
class HoldingProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private armed: { pattern: string; until: string; replied: () => void } | null = null;
  private held: { release(): void } | null = null;
  port = 0;

  constructor(private readonly target: number) {}

  async start(): Promise<this> {
    this.server = createServer((client) => {
      const upstream = connect(this.target, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      let holding: Buffer[] | null = null;
      let waitFor: { until: string; replied: () => void } | null = null;
      client.on('data', (d) => {
        upstream.write(d);
        if (this.armed && d.includes(this.armed.pattern)) {
          holding = [];
          waitFor = this.armed;
          this.armed = null;
          this.held = {
            release: () => {
              const out = holding ?? [];
              holding = null;
              for (const b of out) client.write(b);
            },
          };
        }
      });
      upstream.on('data', (d) => {
        if (!holding) return void client.write(d);
        holding.push(d);
        if (waitFor && Buffer.concat(holding).includes(waitFor.until)) (waitFor.replied(), (waitFor = null));
      });
      const end = () => (client.destroy(), upstream.destroy());
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server!.address() as { port: number }).port;
    return this;
  }

  /** Hold the answer to the next query containing `pattern`; resolves once an answer containing `until` is held. */
  hold(pattern: string, until: string): Promise<void> {
    return new Promise((replied) => (this.armed = { pattern, until, replied }));
  }

  release(): void {
    this.held?.release();
    this.held = null;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server?.close(r));
  }
}

describe('SIGHUP after trust accept on PostgreSQL', () => {
  const up = new FakeIndex();
  const reg = new FakeRegistry();
  const [one, two] = [makeImage([randomBytes(300)]), makeImage([randomBytes(300)])];
  let pgsrv: TestPostgres;
  let proxy: HoldingProxy;
  let a: TestAirlock;
  const ENV = 'AIRLOCK_BREAK_SIGHUP_PG';
  const status = (r: Response) => r.arrayBuffer().then(() => r.status);
  const manifest = (im: Image) => fetch(`${a.url}/v2/reg.test/race/app/manifests/${im.digest}`, { headers: { accept: ACCEPT } }).then(status);
  /** `airlock trust accept` straight to PostgreSQL (the server goes through the proxy). */
  const accept = async (eco: string, project: string, identity: string) => {
    const r = await airlockCli(['trust', 'accept', eco, project, '--identity', identity, '--config', a.configFile], { [ENV]: pgsrv.url });
    expect([r.code, r.stderr]).toEqual([0, '']);
  };

  beforeAll(async () => {
    await up.start();
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
    reg.referrersMode = 'none';
    await reg.start();
    [one, two].forEach((im, i) => {
      reg.push('race/app', im);
      reg.push('race/app', legacySig(im, [keyA, keyB][i].privateKey), `sha256-${im.digest.slice(7)}.sig`);
    });
    pgsrv = await startPostgres();
    proxy = await new HoldingProxy(pgsrv.port).start();
    process.env[ENV] = `postgres://airlock@127.0.0.1:${proxy.port}/postgres`;
    a = await startAirlock(`
storage:
  meta: postgres
  postgres_url_env: ${ENV}
  postgres_schema: break_sighup
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]
oci:
  default_registry: reg.test
  registries:
    reg.test: { url: "${reg.url}", blob_hosts: ["127.0.0.1:${reg.cdnPort}"] }
policy:
  signing:
    signers:
${keySigner('key-a', keyA.publicKey)}
${keySigner('key-b', keyB.publicKey)}
  pypi:
    allow:
      - { name: pypi-attestations, require: attested, publisher: { github: trailofbits/pypi-attestations, workflow: release.yml } }
  oci:
    allow:
      - repository: reg.test/race/app
        digests: ["${one.digest}", "${two.digest}"]
        require: signed
        signers: [key-a, key-b]
`);
  }, 60_000);
  afterAll(async () => {
    proxy?.release();
    await a?.stop();
    await proxy?.stop();
    await pgsrv?.stop();
    await up.stop();
    await reg.stop();
    delete process.env[ENV];
  });

  it('a signer read in flight at the SIGHUP may finish with the old signer, but the next request uses the new one', async () => {
    await accept('oci', 'reg.test/race/app', A);
    // A request reads the recorded signer (A); PostgreSQL's answer is slow to come back.
    const replied = proxy.hold('FROM signers WHERE', A);
    const inflight = manifest(two);
    await replied;
    // Meanwhile the operator accepts B and sends SIGHUP.
    await accept('oci', 'reg.test/race/app', B);
    await a.airlock.reloadTrust();
    proxy.release();
    // The request in flight may finish with the old answer...
    expect([200, 403]).toContain(await inflight);
    // ...but the next must not: B is on record, and the SIGHUP came after.
    expect(await manifest(two)).toBe(200);
    expect(await manifest(one)).toBe(403);
  }, 30_000);

  it('awaitRelease on PostgreSQL ends soon after its signal aborts: already aborted, during the wait, or while the store is asked', async () => {
    const store = await PgMetaStore.open(pgsrv.url, { schema: 'break_sighup_lease' });
    try {
      const lease = createHash('sha256').update(randomBytes(8)).digest('hex');
      expect(await store.takeLease(lease, 'replica-b', 60_000)).toBe(true);
      const pool = (store as unknown as { pool: { query: (...a: unknown[]) => Promise<unknown> } }).pool;
      const query = pool.query.bind(pool);
      let asked = 0;
      let onAsk: (() => void) | undefined;
      pool.query = (...a: unknown[]) => {
        const p = query(...a);
        if (/FROM fill_leases/.test(String(a[0]))) (asked++, onAsk?.());
        return p;
      };
      const left = async (signal: AbortSignal) => {
        const emitter = await (store as unknown as { listening: Promise<import('node:events').EventEmitter> }).listening;
        return { notify: emitter.listenerCount(lease), abort: getEventListeners(signal, 'abort').length };
      };
      // Already aborted: the store is not asked.
      let t0 = Date.now();
      const gone = AbortSignal.abort();
      await store.awaitRelease(lease, 10_000, gone);
      expect([Date.now() - t0 < 300, asked]).toEqual([true, 0]);
      expect(await left(gone)).toEqual({ notify: 0, abort: 0 });
      // Aborted while it waits for the NOTIFY (or the 1 s poll).
      const ac = new AbortController();
      const waiting = store.awaitRelease(lease, 10_000, ac.signal);
      await new Promise((r) => setTimeout(r, 200));
      const n = asked;
      t0 = Date.now();
      ac.abort();
      await waiting;
      expect([Date.now() - t0 < 100, asked]).toEqual([true, n]);
      expect(await left(ac.signal)).toEqual({ notify: 0, abort: 0 });
      // Aborted while the store is being asked whether the lease is still held (a query's round trip).
      const late = new AbortController();
      onAsk = () => late.abort();
      t0 = Date.now();
      await store.awaitRelease(lease, 10_000, late.signal);
      const took = Date.now() - t0;
      onAsk = undefined;
      expect(await left(late.signal)).toEqual({ notify: 0, abort: 0 });
      expect(took).toBeLessThan(300);
    } finally {
      await store.close();
    }
  }, 30_000);

  it('a PyPI file under require: attested is served on PostgreSQL (its verified provenance is kept in the page cache)', async () => {
    const r = await fetch(`${a.url}/pypi/files/pypi-attestations/${PA}`);
    const body = Buffer.from(await r.arrayBuffer());
    expect(r.status, body.toString().slice(0, 200)).toBe(200);
    expect(body.equals(dist)).toBe(true);
    // Kept for the other replicas (the page cache), not only in this one's memory.
    const db = new pg.Client({ connectionString: pgsrv.url });
    await db.connect();
    try {
      const kept = await db.query(`SELECT body FROM break_sighup.pages WHERE key LIKE 'pypi-provenance:%'`);
      expect(kept.rows.map((r) => r.body)).toEqual([provenance.toString('utf8')]);
    } finally {
      await db.end();
    }
  }, 30_000);
});
