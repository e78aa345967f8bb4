import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPulls, verifyChain } from '../../src/core/chain.js';
import { Recorder } from '../../src/core/records.js';
import { Metrics } from '../../src/obs/metrics.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { holdWriteLock, otherProcess } from '../helpers/other-process.js';

/**
 * Attacks on "no pull row is lost because of another writer" (3b3bad7, BEGIN IMMEDIATE): other
 * processes write the embedded database while the server's store appends pull rows. Other
 * processes run the built store (dist/, `npx tsc -p tsconfig.build.json`), as the CLI does.
 */
const DIST = join(process.cwd(), 'dist', 'storage', 'sqlite-meta-store.js');
const CHAIN = join(process.cwd(), 'dist', 'core', 'chain.js');
const dir = mkdtempSync(join(tmpdir(), 'airlock-writers-attacks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => {
  if (!existsSync(DIST)) throw new Error('build first: npx tsc -p tsconfig.build.json');
});

const silent = pino({ level: 'silent' });
const row = (name: string, i: number) => ({
  ts: Date.now(),
  client: 'c',
  ecosystem: 'pypi' as const,
  name,
  version: String(i),
  cache: 'miss' as const,
  decision: i % 5 === 0 ? ('deny' as const) : ('allow' as const),
  ...(i % 5 === 0 ? { code: 'not_allowlisted' as const } : {}),
});

const child = (script: string, args: string[]) => otherProcess(dir, script, args);
const holdLock = (path: string, ms: number) => holdWriteLock(dir, path, ms);

/** Another process running the store: `batches` appends of 1-3 pull rows, with its own checkpoint thread; a token and an advisory sync between. */
const storeWriter = (path: string, tag: string, batches: number) =>
  child(
    `const { SqliteMetaStore } = await import(${JSON.stringify(DIST)});
     const { appendPulls } = await import(${JSON.stringify(CHAIN)});
     const [path, tag, batches] = [process.argv[2], process.argv[3], Number(process.argv[4])];
     const meta = new SqliteMetaStore(path);
     meta.checkpointInBackground((why) => { process.stderr.write('checkpoints: ' + why + '\\n'); });
     process.stdout.write('ready\\n');
     let n = 0;
     for (let b = 0; b < batches; b++) {
       const recs = [];
       for (let k = 0; k <= b % 3; k++) recs.push({ ts: Date.now(), client: tag, ecosystem: 'oci', name: tag, version: String(n++), cache: 'miss', decision: 'allow' });
       await appendPulls(meta, recs);
       if (b % 25 === 0) await meta.createToken({ name: tag + '-' + b, hash: tag + '-' + b, admin: false });
       if (b % 40 === 0) await meta.recordAdvisorySync([{ id: tag + '-' + b, modified: '2026-01-01T00:00:00Z', record: '{}' }],
         { source: tag, startedAt: 1, finishedAt: 2, outcome: 'changed', mode: 'full', changed: 1, highWater: null, error: null });
       await new Promise((r) => setImmediate(r));
     }
     await meta.close();
     process.stdout.write('wrote ' + n + '\\n');`,
    [path, tag, String(batches)],
  );

describe('SQLite: the pull record with other writers', () => {
  it(
    'many processes appending through the store (each with its checkpoint thread) and the server recorder make one chain with every row',
    { timeout: 120_000 },
    async () => {
      const path = join(dir, 'many.db');
      const meta = new SqliteMetaStore(path);
      meta.checkpointInBackground(() => {});
      const recorder = new Recorder(meta, new Metrics(false), silent);
      try {
        const writers = ['w1', 'w2', 'w3', 'w4'].map((t) => storeWriter(path, t, 150));
        await Promise.all(writers.map((w) => w.ready));
        // The server meanwhile: pull rows through the recorder (group commit), blob index updates and leases.
        const served: Promise<void>[] = [];
        for (let i = 0; i < 400; i++) {
          served.push(recorder.recordServed(row('server', i)));
          if (i % 10 === 0) {
            await meta.putBlob({ sha256: i.toString(16).padStart(64, '0'), size: i, createdAt: Date.now() });
            await meta.touchBlobs([i.toString(16).padStart(64, '0')], Date.now());
            expect(await meta.takeLease(`l${i}`, 'server', 60_000)).toBe(true);
          }
          if (i % 4 === 0) await new Promise((r) => setTimeout(r, 1));
        }
        await Promise.all(served);
        await recorder.flush();
        const results = await Promise.all(writers.map((w) => w.done));
        for (const r of results) expect(r, r.err).toEqual({ code: 0, err: '' });
        expect(recorder.health()).toBeNull();
        // 150 batches of 1, 2, 3 rows: 300 rows per writer.
        const chain = await verifyChain(meta);
        expect(chain.problem).toBeUndefined();
        expect(chain.rows).toBe(400 + 4 * 300);
        const all = await meta.listPulls({ limit: 100_000 });
        expect(new Set(all.map((r) => r.prevHash)).size).toBe(all.length);
        for (const t of ['w1', 'w2', 'w3', 'w4']) expect((await meta.listPulls({ name: t, limit: 100_000 })).length).toBe(300);
        expect(await meta.pullSize()).toMatchObject({ rows: 1600 });
      } finally {
        await meta.close();
      }
    },
  );

  it(
    'a pull waits for a lock held shorter than the busy timeout; one held longer fails the pull closed, writes nothing, and the record resumes intact',
    { timeout: 60_000 },
    async () => {
      const path = join(dir, 'long.db');
      const meta = new SqliteMetaStore(path);
      meta.checkpointInBackground(() => {});
      const recorder = new Recorder(meta, new Metrics(false), silent);
      try {
        await recorder.recordServed(row('first', 1));
        // Shorter than the busy timeout (5 s): the pull waits its turn.
        let other = holdLock(path, 2000);
        await other.ready;
        let t0 = performance.now();
        await expect(recorder.recordServed(row('waited', 2))).resolves.toBeUndefined();
        expect(performance.now() - t0).toBeGreaterThan(1500);
        expect((await other.done).code).toBe(0);

        // Longer than the busy timeout: the pull is refused (RECORD_FAILED, naming the lock), and so is every row of its batch.
        other = holdLock(path, 7000);
        await other.ready;
        t0 = performance.now();
        const pulls = [recorder.recordServed(row('locked-out', 3)), recorder.recordServed(row('locked-out', 4))];
        for (const p of pulls) await expect(p).rejects.toMatchObject({ code: 'RECORD_FAILED', message: expect.stringMatching(/database is locked/) });
        expect(performance.now() - t0).toBeGreaterThan(4500);
        expect(recorder.health()?.message).toMatch(/database is locked/);
        expect((await other.done).code).toBe(0);

        // Once the other process has committed, the record is written again, and nothing of the failed batch is on it.
        await expect(recorder.recordServed(row('after', 5))).resolves.toBeUndefined();
        expect(recorder.health()).toBeNull();
        expect((await meta.listPulls({ limit: 100 })).map((r) => r.name)).toEqual(['after', 'waited', 'first']);
        const chain = await verifyChain(meta);
        expect(chain).toMatchObject({ rows: 3 });
        expect(chain.problem).toBeUndefined();
        expect(await meta.pullSize()).toMatchObject({ rows: 3 });
      } finally {
        await meta.close();
      }
    },
  );

  it(
    'reads do not wait for another process holding the write lock (searches, chain walk, tokens, sessions, the console secret)',
    { timeout: 60_000 },
    async () => {
      const path = join(dir, 'reads.db');
      const meta = new SqliteMetaStore(path);
      try {
        await appendPulls(meta, [row('a', 1), row('b', 5)]);
        await meta.createToken({ name: 'admin', hash: 'h-admin', admin: true });
        await meta.createConsoleSession({ key: 'k', tokenHash: 'h-admin', expiresAt: Date.now() + 60_000 }, Date.now());
        const secret = await meta.consoleSecret();
        const other = holdLock(path, 6000);
        await other.ready;
        const reads: [string, () => Promise<unknown>][] = [
          ['listPulls', () => meta.listPulls({ decision: 'deny', limit: 10 })],
          ['verifyChain', () => verifyChain(meta)],
          ['pullSize', () => meta.pullSize()],
          ['dailyCounts', () => meta.dailyCounts(0)],
          ['findToken', () => meta.findToken('h-admin')],
          ['findConsoleSession', () => meta.findConsoleSession('k')],
          ['advisoryGeneration', () => meta.advisoryGeneration()],
          // The console's login form asks for the secret it already has: a read, not a write.
          ['consoleSecret', () => meta.consoleSecret()],
        ];
        const slow: string[] = [];
        for (const [what, read] of reads) {
          const t0 = performance.now();
          await read().catch((e: Error) => slow.push(`${what}: ${e.message}`));
          if (performance.now() - t0 > 1000) slow.push(`${what}: ${Math.round(performance.now() - t0)} ms`);
        }
        expect(slow).toEqual([]);
        expect(await meta.consoleSecret()).toBe(secret);
        await other.done;
      } finally {
        await meta.close();
      }
    },
  );

  it(
    'two stores on one file in separate processes, both appending while a third holds and releases the lock, do not fork the chain',
    { timeout: 60_000 },
    async () => {
      const path = join(dir, 'two.db');
      await new SqliteMetaStore(path).close();
      const lock = holdLock(path, 1500);
      await lock.ready;
      // Both start while the lock is held: each has read nothing yet; both queue on the lock.
      const a = storeWriter(path, 'a', 120);
      const b = storeWriter(path, 'b', 120);
      await Promise.all([a.ready, b.ready]);
      const [ra, rb] = await Promise.all([a.done, b.done]);
      expect(ra, ra.err).toEqual({ code: 0, err: '' });
      expect(rb, rb.err).toEqual({ code: 0, err: '' });
      await lock.done;
      const meta = new SqliteMetaStore(path);
      try {
        const chain = await verifyChain(meta);
        expect(chain.problem).toBeUndefined();
        expect(chain.rows).toBe(2 * 240);
        // Interleaved, yet one chain: each row follows the one before it by id.
        const rows = (await meta.listPulls({ limit: 100_000 })).reverse();
        for (let i = 1; i < rows.length; i++) expect(rows[i].prevHash).toBe(rows[i - 1].hash);
        expect(new Set(rows.map((r) => r.client)).size).toBe(2);
        const db = new Database(path, { readonly: true });
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
        db.close();
      } finally {
        await meta.close();
      }
    },
  );

  it(
    'a store with its checkpoint thread closes (the database too) in a process with nothing else to do, as a CLI command or the last step of a shutdown',
    { timeout: 30_000 },
    async () => {
      const path = join(dir, 'close.db');
      const c = child(
        `const { SqliteMetaStore } = await import(${JSON.stringify(DIST)});
       const meta = new SqliteMetaStore(process.argv[2]);
       meta.checkpointInBackground((why) => process.stderr.write(why + '\\n'));
       process.stdout.write('ready\\n');
       await meta.close();
       process.stdout.write('closed\\n');`,
        [path],
      );
      await c.ready;
      // Before: close() waited for the (unref'd) thread's exit with an unref'd timer, so the process
      // ended first (exit 13: an unsettled top-level await) and the database was never closed.
      expect(await c.done).toEqual({ code: 0, err: '' });
      expect(c.out()).toContain('closed');
      // Closed by the last connection: its WAL checkpointed and removed.
      expect(existsSync(`${path}-wal`)).toBe(false);
    },
  );
});
