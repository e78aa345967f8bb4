/**
 * Attacks on four recent guarantees (break-sighup):
 *  - Continuity.forget() (SIGHUP): a store read in flight when it is called may answer its own
 *    request with the old signer, but must not be kept for the next (signing/continuity.ts);
 *  - LeaseStore.awaitRelease(sha, ms, signal) on SQLite and a fill cancelled while it waits for
 *    another replica's lease (core/lease.ts, core/peer-stream.ts): it stops waiting at once;
 *  - records.max_bytes: under 1 MiB (not 0) refused with a one-line error saying it is bytes;
 *  - the CLI (lazy command loading): errors, exit codes, and no stack trace for operator errors.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { BlobCache } from '../../src/core/cache.js';
import type { FillBudget, FillSpec } from '../../src/core/fill.js';
import { HashPool } from '../../src/core/hasher.js';
import { checkPeerRequest, peerProof } from '../../src/core/peer-stream.js';
import { withPeerRoute } from '../../src/http/peer.js';
import { Continuity } from '../../src/signing/continuity.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import type { SignerStore } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { airlockCli } from '../helpers/cli.js';

const dirs: string[] = [];
const servers: Server[] = [];
const tmp = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
afterEach(() => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A SignerStore over a real SQLite one whose answers come back only when let go (a database over the network). */
function slowSigners(inner: SqliteMetaStore) {
  const held: (() => void)[] = [];
  const later = async <T>(p: Promise<T>): Promise<T> => {
    const v = await p; // read now, from the store as it is now
    await new Promise<void>((r) => held.push(r));
    return v;
  };
  const store: SignerStore = {
    getSigner: (e, p) => later(inner.getSigner(e, p)),
    recordSigner: (e, p, s) => later(inner.recordSigner(e, p, s)),
    setSigner: (e, p, s) => inner.setSigner(e, p, s),
  };
  return { store, pending: () => held.length, release: () => held.splice(0).forEach((r) => r()) };
}

describe('Continuity.forget() (SIGHUP) and a store read in flight', () => {
  it('a read begun before forget() is not kept after it (real SQLite; its answer resolves after the call)', async () => {
    const meta = new SqliteMetaStore(':memory:');
    await meta.setSigner('pypi', 'demo', { identity: 'OLD', version: null });
    const c = new Continuity(meta);
    const inflight = c.recorded('pypi', 'demo'); // SQLite reads at once; the answer is taken after a turn
    void meta.setSigner('pypi', 'demo', { identity: 'NEW', version: null }); // `airlock trust accept`
    c.forget(); // SIGHUP
    expect((await inflight)?.identity).toBe('OLD'); // may finish with the old answer
    expect(c.cached('pypi', 'demo')).toBeUndefined(); // the OCI fast path must ask the store
    expect((await c.recorded('pypi', 'demo'))?.identity).toBe('NEW');
    meta.close();
  });

  it('a slow store: the late answer of a read (recorded) or a first record (check) is not kept after forget()', async () => {
    const meta = new SqliteMetaStore(':memory:');
    await meta.setSigner('oci', 'reg/app', { identity: 'key:aaaa', version: null });
    const slow = slowSigners(meta);
    const c = new Continuity(slow.store);
    const read = c.recorded('oci', 'reg/app');
    await tick(5);
    expect(slow.pending()).toBe(1);
    await meta.setSigner('oci', 'reg/app', { identity: 'key:bbbb', version: null });
    c.forget();
    slow.release();
    expect((await read)?.identity).toBe('key:aaaa');
    const next = c.recorded('oci', 'reg/app');
    await tick(5);
    slow.release();
    expect((await next)?.identity).toBe('key:bbbb');

    // A first verified signer being recorded while the operator sets another and sends SIGHUP.
    const ok = { ok: true, identity: 'key:cccc' } as never;
    const checking = c.check({ ecosystem: 'hf', project: 'acme/m', version: 'c1', rule: 'hf.allow[0]', onChange: 'refuse', result: ok });
    await tick(5);
    slow.release(); // the read (nothing on record)
    await tick(5);
    expect(slow.pending()).toBe(1); // recordSigner under way: its INSERT is done, its answer late
    await meta.setSigner('hf', 'acme/m', { identity: 'key:dddd', version: null });
    c.forget();
    slow.release();
    await checking;
    expect(c.cached('hf', 'acme/m')).toBeUndefined();
    const after = c.recorded('hf', 'acme/m');
    await tick(5);
    slow.release();
    expect((await after)?.identity).toBe('key:dddd');
    meta.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Fleet leases on SQLite.

const hashes = new HashPool(1);
afterAll(() => hashes.close());
const SECRET = Buffer.from('break-sighup-fleet-secret-0123456789abcdef');
const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Count the SQLite store's lease polls (awaitRelease's SELECT), with when each was made. */
function countPolls(meta: SqliteMetaStore): number[] {
  const at: number[] = [];
  const db = (meta as unknown as { db: { prepare: (sql: string) => { get: (...a: unknown[]) => unknown } } }).db;
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    const st = prepare(sql);
    if (!/^SELECT owner FROM fill_leases WHERE sha256 = \?$/.test(sql)) return st;
    return new Proxy(st, {
      get: (t, k) => (k === 'get' ? (...a: unknown[]) => (at.push(Date.now()), t.get(...a)) : Reflect.get(t, k)),
    });
  };
  return at;
}
async function drain(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('awaitRelease with an abort signal (SQLite)', () => {
  it('already aborted: returns at once, without asking the store', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const s = sha(randomBytes(8));
    await meta.takeLease(s, 'replica-b', 60_000);
    const polls = countPolls(meta);
    const before = timers();
    const t0 = Date.now();
    await meta.awaitRelease(s, 10_000, AbortSignal.abort());
    expect(Date.now() - t0).toBeLessThan(20);
    expect(polls).toEqual([]);
    expect(timers()).toBeLessThanOrEqual(before);
    meta.close();
  });

  it('aborted while it waits: returns within one poll, asks the store no more, leaves no timer', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const s = sha(randomBytes(8));
    await meta.takeLease(s, 'replica-b', 60_000);
    const polls = countPolls(meta);
    const before = timers();
    const ac = new AbortController();
    const waiting = meta.awaitRelease(s, 10_000, ac.signal);
    await tick(130);
    expect(polls.length).toBeGreaterThanOrEqual(2);
    const cut = Date.now();
    ac.abort();
    await waiting;
    expect(Date.now() - cut).toBeLessThan(80);
    expect(polls.filter((t) => t > cut)).toEqual([]);
    await tick(80);
    expect(polls.filter((t) => t > cut)).toEqual([]);
    expect(timers()).toBeLessThanOrEqual(before);
    meta.close();
  });

  it('many waits on one signal: every one ends at the abort', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const shas = Array.from({ length: 20 }, () => sha(randomBytes(8)));
    for (const s of shas) await meta.takeLease(s, 'replica-b', 60_000);
    const ac = new AbortController();
    const all = Promise.all(shas.map((s) => meta.awaitRelease(s, 10_000, ac.signal)));
    await tick(60);
    const cut = Date.now();
    ac.abort();
    await all;
    expect(Date.now() - cut).toBeLessThan(100);
    meta.close();
  });
});

describe('a fill cancelled while it waits for another replica (streamed from it, the stream broke)', () => {
  /** replica-a holds the lease and streams 1000 bytes once, then breaks; asked again, it answers 503 (it cannot stream any more). */
  async function brokenFiller(meta: SqliteMetaStore, bytes: Buffer) {
    let asked = 0;
    const server = createServer((req, res) => {
      asked++;
      const ok = checkPeerRequest(SECRET, req.url!, req.headers['x-airlock-fleet'] as string);
      if (!('nonce' in ok) || asked > 1) return res.writeHead(503).end();
      res.writeHead(200, {
        'x-airlock-size': bytes.length,
        'content-length': bytes.length,
        'x-airlock-fleet-proof': peerProof(SECRET, ok.nonce, sha(bytes), 0, bytes.length),
      });
      res.write(bytes.subarray(0, 1000), () => setTimeout(() => res.destroy(), 20));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    expect(await meta.takeLease(sha(bytes), 'replica-a', 60_000, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)).toBe(true);
    return { asked: () => asked };
  }

  it('shutdown while it waits for the lease to resume elsewhere: the wait ends at once, no more polls', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const bytes = randomBytes(300_000);
    const f = await brokenFiller(meta, bytes);
    const polls = countPolls(meta);
    const store = await FsBlobStore.create(tmp('airlock-break-sighup-'));
    const b = new BlobCache(store, meta, hashes, { budget: NO_LIMITS, fleet: { leases: meta, owner: 'replica-b', staleMs: 60_000, peer: { secret: SECRET } } });
    let opens = 0;
    const open: FillSpec['open'] = async () => {
      opens++;
      const body = new PassThrough();
      body.end(bytes);
      return { body: body as Readable, size: bytes.length };
    };
    const s = await b.fetch({ sha256: sha(bytes), size: bytes.length, open });
    const got = (async () => {
      for await (const _ of s.body);
    })().catch((e: Error) => e);
    // The stream broke; replica-a refuses to stream again: replica-b waits for its lease (polling every 50 ms).
    const until = Date.now() + 3000;
    while ((f.asked() < 2 || polls.length < 2) && Date.now() < until) await tick(10);
    expect(f.asked()).toBeGreaterThanOrEqual(2);
    const cut = Date.now();
    const asked = f.asked();
    await b.shutdown();
    const took = Date.now() - cut;
    expect(await got).toBeInstanceOf(Error);
    expect(took).toBeLessThan(300);
    // Nothing goes on waiting behind the cancelled fill (its wait was for up to 1 s): a server closes its stores next.
    await tick(1100);
    expect(polls.filter((t) => t > cut + 60).map((t) => t - cut)).toEqual([]);
    expect(f.asked()).toBe(asked);
    expect(opens).toBe(0);
    meta.close();
  });
});

describe('a fill streamed from another replica, all its bytes in, waiting for that replica to commit', () => {
  // The verified fill ignored the cancel (Fill.fail returns early once verified) and committedElsewhere (lease.ts) waited for the
  // filler's release without a signal, up to 2 x lease_stale (30 s by default), polling the store all along; shutdown waited for it.
  it('shutdown while it waits for the filler to let its lease go: shutdown does not wait for the filler', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const dir = tmp('airlock-break-sighup-');
    const bytes = randomBytes(300_000);
    const replicaOf = async (owner: string) => {
      const peer: { secret: Buffer; addr?: string } = { secret: SECRET };
      const store = await FsBlobStore.create(dir, { cleanSpool: false });
      const cache = new BlobCache(store, meta, hashes, { budget: NO_LIMITS, fleet: { leases: meta, owner, staleMs: 1000, peer } });
      const server = createServer(withPeerRoute(peer, cache, { warn: () => {} }, (_q, res) => res.writeHead(404).end()));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      servers.push(server);
      peer.addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return { cache, store };
    };
    const a = await replicaOf('replica-a');
    const b = await replicaOf('replica-b');
    // replica-a's store is slow to take the file (a large object to S3): its commit, and its release, wait.
    let letPut!: () => void;
    const putHeld = new Promise<void>((r) => (letPut = r));
    const put = a.store.putFile.bind(a.store);
    a.store.putFile = async (x, y) => (await putHeld, put(x, y));
    const body = new PassThrough();
    const sa = await a.cache.fetch({ sha256: sha(bytes), size: bytes.length, open: async () => ({ body: body as Readable, size: bytes.length }) });
    body.write(bytes.subarray(0, 1000));
    const sb = await b.cache.fetch({
      sha256: sha(bytes),
      size: bytes.length,
      open: async () => Promise.reject(new Error('replica-b must not ask upstream')),
    });
    expect(sb.cache).toBe('join');
    body.end(bytes.subarray(1000));
    const [ga, gb] = await Promise.all([drain(sa.body), drain(sb.body)]);
    expect(ga.equals(bytes) && gb.equals(bytes)).toBe(true);
    await tick(100); // replica-b now waits for replica-a's commit (up to 2 x staleMs)
    const cut = Date.now();
    await b.cache.shutdown();
    const took = Date.now() - cut;
    letPut();
    expect(await sa.committed).toBe(true);
    await a.cache.shutdown();
    expect(took).toBeLessThan(500);
    meta.close();
  }, 15_000);
});

// ---------------------------------------------------------------------------------------------
// records.max_bytes

describe('records.max_bytes', () => {
  const dir = tmp('airlock-break-sighup-cfg-');
  let n = 0;
  const file = (value: string) => {
    const f = join(dir, `c${n++}.yaml`);
    writeFileSync(f, `records:\n  max_bytes: ${value}\n`);
    return f;
  };
  const outcome = (value: string): number | string => {
    try {
      return loadConfig(file(value)).config.records.max_bytes;
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
  };
  const BYTES = /:2: records\.max_bytes: is a number of bytes; under 1 MiB \(1048576\)/;

  it('takes 0 and whole numbers from 1 MiB up, in any YAML form', () => {
    for (const [v, want] of [
      ['0', 0],
      ['0.0', 0],
      ['-0', 0],
      ['1048576', 1048576],
      ['1048576.0', 1048576],
      ['1.048576e6', 1048576],
      ['0x100000', 1048576],
      ['0o4000000', 1048576],
      ['2e6', 2_000_000],
      ['17179869184', 17179869184],
      ['9007199254740991', 9007199254740991],
    ] as const)
      expect(outcome(v), v).toBe(want);
    writeFileSync(join(dir, 'empty.yaml'), 'records: {}\n');
    expect(loadConfig(join(dir, 'empty.yaml')).config.records.max_bytes).toBe(16 * 1024 ** 3);
  });

  it('refuses whole numbers under 1 MiB, in any YAML form, with one line saying it is bytes', () => {
    for (const v of ['1', '16', '1024', '1048575', '1e6', '0x0FFFFF', '1000000.0']) {
      const m = outcome(v);
      expect(m, v).toMatch(BYTES);
      expect(String(m).split('\n'), v).toHaveLength(1);
    }
  });

  it('refuses a negative or fractional size under 1 MiB (16 GiB written as 0.5, -1 for "none") saying it is bytes too', () => {
    for (const v of ['-1', '-16', '-1048576', '0.5', '1.5', '16.5']) expect(outcome(v), v).toMatch(BYTES);
  });

  it('refuses what is not a whole number of bytes, naming the field, on one line', () => {
    for (const v of ['"1048576"', "'16'", '16GiB', '1_048_576', '.inf', '.nan', 'true', 'null', '[]', '{}', '1048576.5', '1e300']) {
      const m = outcome(v);
      expect(m, v).toMatch(/:2: records\.max_bytes: /);
      expect(String(m).split('\n'), v).toHaveLength(1);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The CLI (built: dist/cli/main.js).

describe('the CLI: usage, unknown commands, operator errors', () => {
  const dir = tmp('airlock-break-sighup-cli-');
  const good = join(dir, 'good.yaml');
  writeFileSync(good, `data_dir: ${join(dir, 'data')}\nlog_level: silent\n`);
  const none = join(dir, 'none.yaml');
  writeFileSync(none, `data_dir: ${join(dir, 'never-made')}\nlog_level: silent\n`);
  const fileDir = join(dir, 'filedir.yaml');
  writeFileSync(fileDir, `data_dir: ${good}\nlog_level: silent\n`);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'pypi:\n  uptream: x\n');
  mkdirSync(join(dir, 'adir'));
  const zip = join(dir, 'bad.zip');
  writeFileSync(zip, 'PK\u0003\u0004 not really a zip');
  const COMMANDS = [
    'serve',
    'check',
    'records',
    'pin',
    'image',
    'advisories',
    'affected',
    'sbom',
    'audit',
    'store',
    'migrate',
    'scrub',
    'token',
    'rescan',
    'trust',
  ];

  it('usage alone, with --help or -h (after a command too): every command listed, exit 0', async () => {
    const runs = await Promise.all([[], ['--help'], ['-h'], ['records', '--help']].map((a) => airlockCli(a)));
    for (const r of runs) {
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toBe(runs[0].stdout);
    }
    for (const c of COMMANDS) expect(runs[0].stdout).toContain(`airlock ${c}`);
  });

  it('an unknown command (inherited object keys included): one line, then the usage, exit 2', async () => {
    const names = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'prototype', 'SERVE', 'help'];
    const usage = (await airlockCli([])).stdout;
    const runs = await Promise.all(names.map((n) => airlockCli([n, '--config', good])));
    runs.forEach((r, i) => {
      expect(r.code, names[i]).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`airlock: unknown command ${JSON.stringify(names[i])}\n\n${usage}`);
    });
  });

  it('a bad configuration: one line naming the file and field, exit 2, for every command that reads it', async () => {
    const runs = await Promise.all(
      [['check'], ['records'], ['token', 'list'], ['audit', 'verify'], ['trust', 'show'], ['serve']].map((a) => airlockCli([...a, '--config', bad])),
    );
    for (const r of runs) {
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`airlock: ${bad}:2: pypi.uptream: unknown key "uptream" (expected one of the documented keys; see docs/configuration.md)\n`);
    }
  });

  const operatorErrors: string[][] = [
    // Options: unknown, missing its value, a value that starts with a dash.
    ['records', '--bogus', '--config', good],
    ['check', '--config'],
    ['records', '--config', good, '--limit'],
    ['records', '--config', good, '--limit', '-5'],
    ['records', '--config', good, '--until', '-1'],
    ['trust', 'accept', 'pypi', 'x', '--identity', '--config', good],
    // A data directory that does not exist (the server never ran here), or is a file.
    ['audit', 'verify', '--config', none],
    ['store', 'verify', '--config', none],
    ['scrub', '--config', none],
    ['rescan', '--config', none],
    ['sbom', '--config', none],
    ['affected', 'CVE-2024-0001', '--config', none],
    ['audit', 'verify', '--config', fileDir],
    // Input files an operator names.
    ['advisories', 'import', zip, '--config', good],
    ['trust', 'import', join(dir, 'adir'), '--config', good],
    ['pin', 'oci', '-f', join(dir, 'adir'), '--config', good],
    ['pin', 'pypi', '-r', join(dir, 'no-such-lock.txt'), '--config', good],
    ['sbom', '--output', join(dir, 'no-such-dir', 'x.json'), '--config', good],
  ];
  it.each(operatorErrors.map((a) => [a.join(' ').replaceAll(dir, '.'), a]))('%s: one line, exit 1 or 2, no stack trace', async (_name, args) => {
    const r = await airlockCli(args as string[]);
    expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
    expect(r.stderr).toMatch(/^airlock: [^\n]+\n$/);
    // ...said once (a system error's message was printed twice: "ENOENT: ...: ENOENT: ...").
    expect(r.stderr).not.toMatch(/(.{20,}): \1/);
    expect([1, 2]).toContain(r.code);
  });
});
