import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readdirSync, readlinkSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpointInBackground, type Checkpointer } from '../../src/storage/sqlite-checkpointer.js';
import { otherProcess, type OtherProcess } from '../helpers/other-process.js';
import { sleep, until } from '../helpers/stuck.js';

/**
 * Attacks on the checkpoint thread's pin (e347596, storage/sqlite-checkpointer.ts): a read
 * transaction held on the thread so that a writer never starts the WAL over after a pause. What it
 * must keep: nothing committed is lost (kill -9 anywhere), the WAL stays bounded, the database file
 * keeps up when writes pause, the WAL starts over only about once per startOverFrames, and the
 * thread closes cleanly. Other processes run the built checkpointer (dist/: `npx tsc -p tsconfig.build.json`).
 */
const DIST = join(process.cwd(), 'dist', 'storage', 'sqlite-checkpointer.js');
const STORE = join(process.cwd(), 'dist', 'storage', 'sqlite-meta-store.js');
const SQLITE = join(process.cwd(), 'node_modules', 'better-sqlite3', 'lib', 'index.js');
/** A WAL frame: a 24-byte header and a 4 KiB page (after the WAL's own 32-byte header). */
const FRAME = 4096 + 24;
const root = mkdtempSync(join(tmpdir(), 'airlock-break-pin-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeAll(() => {
  if (!existsSync(DIST) || !existsSync(STORE)) throw new Error('build first: npx tsc -p tsconfig.build.json');
});

describe('the checkpoint thread pin, attacked', () => {
  const stops: Checkpointer[] = [];
  const dbs: Database.Database[] = [];
  afterEach(async () => {
    for (const c of stops.splice(0)) await c.stop();
    for (const d of dbs.splice(0)) if (d.open) d.close();
  });
  let n = 0;
  const open = () => {
    const dir = mkdtempSync(join(root, `t${++n}-`));
    const path = join(dir, 'x.db');
    const db = new Database(path);
    dbs.push(db);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    return { dir, path, wal: `${path}-wal`, db, insert };
  };
  const start = (db: Database.Database, opts: { everyMs?: number; maxFrames?: number; startOverFrames?: number }) => {
    const failures: string[] = [];
    const c = checkpointInBackground(db, (why) => failures.push(why), opts);
    stops.push(c);
    return { c, failures };
  };
  /** Another connection (a CLI export, a paged search) holding a snapshot: the checkpoints cannot copy past it. */
  const holdSnapshot = (path: string) => {
    const reader = new Database(path);
    dbs.push(reader);
    reader.exec('BEGIN');
    reader.prepare('SELECT COUNT(*) FROM t').get();
    return reader;
  };
  /** The WAL header's checkpoint sequence (bytes 12-15): one more each time the WAL starts over. */
  const sequence = (wal: string) => {
    const fd = openSync(wal, 'r');
    const b = Buffer.alloc(32);
    readSync(fd, b, 0, 32, 0);
    closeSync(fd);
    return b.readUInt32BE(12);
  };
  /** The rows in the database file alone, as a crash that lost the WAL would leave it: what the checkpoints copied (-1: not even the table). */
  const inDatabaseFile = (dir: string) => {
    const copy = join(dir, `copy-${Date.now()}-${Math.random()}.db`);
    copyFileSync(join(dir, 'x.db'), copy);
    const d = new Database(copy);
    try {
      return (d.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;
    } catch {
      return -1;
    } finally {
      d.close();
      for (const f of [copy, `${copy}-wal`, `${copy}-shm`]) rmSync(f, { force: true });
    }
  };
  /** Commits before the thread's first look are the first test's; the others commit after it. */
  const threadStarted = () => sleep(400);
  const rows = (db: Database.Database) => (db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;

  describe('3. the database file keeps up when writes pause', () => {
    it('copies what was committed before the thread started, with nothing committed after', async () => {
      // The server's store runs its migrations, then starts the thread; then nothing is pulled.
      const { dir, db, insert } = open();
      insert.run('before the thread');
      start(db, { everyMs: 10 });
      expect(await until(() => inDatabaseFile(dir) === 1, 2000)).toBe(true);
    });

    it('copies the commits a reader held back once it has ended, with nothing committed after', async () => {
      const { dir, path, db, insert } = open();
      start(db, { everyMs: 10, maxFrames: 1024, startOverFrames: 64 });
      await threadStarted();
      insert.run('first');
      expect(await until(() => inDatabaseFile(dir) === 1, 2000)).toBe(true);
      // Another connection holds a snapshot from before the next commits.
      const reader = holdSnapshot(path);
      for (let i = 0; i < 5; i++) {
        insert.run(`while read ${i}`);
        await sleep(30);
      }
      // The checkpoints cannot copy past the reader's snapshot meanwhile.
      expect(inDatabaseFile(dir)).toBe(1);
      reader.exec('COMMIT');
      reader.close();
      // Writes have paused: within a few ticks every commit is in the database file.
      expect(await until(() => inDatabaseFile(dir) === 6, 2000)).toBe(true);
    });

    it(
      'past maxFrames with a reader holding the checkpoints back: once it ends, everything is copied and the next commit starts the WAL over (cut back)',
      { timeout: 20_000 },
      async () => {
        const { dir, path, wal, db, insert } = open();
        const { failures } = start(db, { everyMs: 10, maxFrames: 256, startOverFrames: 64 });
        await threadStarted();
        insert.run('first');
        expect(await until(() => inDatabaseFile(dir) === 1, 2000)).toBe(true);
        const reader = holdSnapshot(path);
        for (let i = 0; i < 40; i++) {
          db.transaction(() => {
            for (let k = 0; k < 10; k++) insert.run('x'.repeat(3000));
          })();
          await sleep(5);
        }
        const big = statSync(wal).size;
        expect(big).toBeGreaterThan(256 * FRAME);
        await sleep(100);
        reader.exec('COMMIT');
        reader.close();
        expect(await until(() => inDatabaseFile(dir) === 401, 3000)).toBe(true);
        const before = sequence(wal);
        insert.run('after');
        await sleep(100);
        expect(sequence(wal)).toBe(before + 1);
        expect(statSync(wal).size).toBeLessThanOrEqual(256 * 4096);
        expect(await until(() => inDatabaseFile(dir) === 402, 2000)).toBe(true);
        expect(failures).toEqual([]);
      },
    );
  });

  describe('4. the WAL does not start over on the main thread after ordinary pauses', () => {
    it('holds across pauses with another process committing (SQLite default autocheckpoint) and other readers between', { timeout: 30_000 }, async () => {
      const { dir, path, wal, db, insert } = open();
      const { failures } = start(db, { everyMs: 10, maxFrames: 4096, startOverFrames: 1024 });
      await threadStarted();
      insert.run('first');
      expect(await until(() => inDatabaseFile(dir) === 1, 2000)).toBe(true);
      const seq = sequence(wal);
      let total = 1;
      for (let i = 0; i < 4; i++) {
        // A CLI command: its own connection, commits a row, closes.
        const cli = otherProcess(
          dir,
          `const { default: Database } = await import(${JSON.stringify(SQLITE)});
           const db = new Database(process.argv[2]);
           db.prepare('INSERT INTO t (v) VALUES (?)').run('cli');
           db.close();
           process.stdout.write('ready\\n');`,
          [path],
        );
        await cli.ready;
        expect((await cli.done).code).toBe(0);
        total++;
        await sleep(60);
        // A reader that starts and ends while everything is copied.
        const reader = new Database(path, { readonly: true });
        expect(rows(reader)).toBe(total);
        reader.close();
        await sleep(60);
        insert.run(`main ${i}`);
        total++;
        // Copied within a few ticks (generous on a loaded machine), and the WAL did not start over.
        expect(await until(() => inDatabaseFile(dir) === total, 2000)).toBe(true);
        expect({ i, sequence: sequence(wal) }).toEqual({ i, sequence: seq });
      }
      expect(failures).toEqual([]);
    });

    it('holds across a process that keeps the write lock for a while, and copies its commit once it lets go', { timeout: 20_000 }, async () => {
      const { dir, path, wal, db, insert } = open();
      start(db, { everyMs: 10, maxFrames: 4096, startOverFrames: 1024 });
      await threadStarted();
      insert.run('first');
      expect(await until(() => inDatabaseFile(dir) === 1, 2000)).toBe(true);
      const seq = sequence(wal);
      const holder = otherProcess(
        dir,
        `const { default: Database } = await import(${JSON.stringify(SQLITE)});
         const db = new Database(process.argv[2]);
         db.exec('BEGIN IMMEDIATE');
         db.prepare('INSERT INTO t (v) VALUES (?)').run('held');
         process.stdout.write('ready\\n');
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 800);
         db.exec('COMMIT');
         db.close();`,
        [path],
      );
      await holder.ready;
      await sleep(200);
      expect(inDatabaseFile(dir)).toBe(1);
      expect((await holder.done).code).toBe(0);
      expect(await until(() => inDatabaseFile(dir) === 2, 2000)).toBe(true);
      insert.run('after');
      await sleep(60);
      expect(sequence(wal)).toBe(seq);
      expect(await until(() => inDatabaseFile(dir) === 3, 2000)).toBe(true);
    });
  });

  describe('2. the WAL stays bounded', () => {
    it('bursts then pauses: starts over about once per startOverFrames, never far past maxFrames', { timeout: 30_000 }, async () => {
      const { dir, wal, db, insert } = open();
      const { failures } = start(db, { everyMs: 10, maxFrames: 512, startOverFrames: 128 });
      const burst = db.transaction(() => {
        for (let k = 0; k < 4; k++) insert.run('x'.repeat(3000));
      });
      await threadStarted();
      insert.run('first');
      await sleep(50);
      const seq = sequence(wal);
      let largest = 0;
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 10; i++) {
          burst();
          await new Promise((r) => setImmediate(r));
        }
        largest = Math.max(largest, statSync(wal).size);
        await sleep(round % 3 === 0 ? 60 : 15);
      }
      // ~30 x 10 x 4 pages (and their index pages): ~1,300+ frames written in all.
      const restarts = sequence(wal) - seq;
      expect(restarts).toBeGreaterThanOrEqual(3);
      expect(restarts).toBeLessThanOrEqual(20);
      expect(largest).toBeLessThanOrEqual(32 + (512 + 200) * FRAME);
      expect(await until(() => inDatabaseFile(dir) === 1 + 30 * 10 * 4, 2000)).toBe(true);
      expect(failures).toEqual([]);
    });

    it('another process writing without a pause (SQLite default autocheckpoint) while the server is idle', { timeout: 60_000 }, async () => {
      const { dir, path, wal, db, insert } = open();
      const { failures } = start(db, { everyMs: 10, maxFrames: 2048, startOverFrames: 512 });
      await threadStarted();
      insert.run('first');
      await sleep(50);
      const writer: OtherProcess = otherProcess(
        dir,
        `const { default: Database } = await import(${JSON.stringify(SQLITE)});
         const db = new Database(process.argv[2]);
         const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
         process.stdout.write('ready\\n');
         for (let i = 0; i < 6000; i++) insert.run('y'.repeat(3000));
         db.close();`,
        [path],
      );
      await writer.ready;
      let largest = 0;
      const watch = setInterval(() => (largest = Math.max(largest, statSync(wal).size)), 5);
      const { code, err } = await writer.done;
      clearInterval(watch);
      expect(err).toBe('');
      expect(code).toBe(0);
      // 6,000 commits of a page each: the WAL went round rather than holding them all (~2,100-2,600
      // frames at its largest on a quiet machine; 2,960 in a run at load 4, the checkpoint thread late).
      expect(largest).toBeLessThanOrEqual(32 + 4000 * FRAME);
      expect(await until(() => inDatabaseFile(dir) === 6001, 3000)).toBe(true);
      expect(failures).toEqual([]);
    });
    it('one huge transaction past maxFrames: the next commit starts the WAL over and cuts it back', { timeout: 20_000 }, async () => {
      const { dir, wal, db, insert } = open();
      const { failures } = start(db, { everyMs: 10, maxFrames: 256, startOverFrames: 64 });
      await threadStarted();
      insert.run('first');
      await sleep(60);
      const seq = sequence(wal);
      db.transaction(() => {
        for (let k = 0; k < 1000; k++) insert.run('x'.repeat(3000));
      })();
      expect(statSync(wal).size).toBeGreaterThan(1000 * FRAME);
      expect(await until(() => inDatabaseFile(dir) === 1001, 3000)).toBe(true);
      insert.run('after');
      await sleep(60);
      expect(sequence(wal)).toBe(seq + 1);
      expect(statSync(wal).size).toBeLessThanOrEqual(256 * 4096);
      insert.run('and after');
      await sleep(60);
      expect(sequence(wal)).toBe(seq + 1);
      expect(await until(() => inDatabaseFile(dir) === 1003, 2000)).toBe(true);
      expect(failures).toEqual([]);
    });

    it(
      'a read held open on the main connection (a paged search) while another process writes past maxFrames: the process survives, and the WAL starts over once the read ends',
      { timeout: 30_000 },
      async () => {
        const dir = mkdtempSync(join(root, 'main-reader-'));
        const path = join(dir, 'x.db');
        const p = otherProcess(
          dir,
          `const { default: Database } = await import(${JSON.stringify(SQLITE)});
         const { checkpointInBackground } = await import(${JSON.stringify(DIST)});
         const { statSync } = await import('node:fs');
         const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
         const path = process.argv[2];
         const db = new Database(path);
         db.pragma('journal_mode = WAL');
         db.pragma('synchronous = NORMAL');
         db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
         for (let i = 0; i < 50; i++) db.prepare('INSERT INTO t (v) VALUES (?)').run('row');
         checkpointInBackground(db, (why) => process.stderr.write(why + '\\n'), { everyMs: 10, maxFrames: 256, startOverFrames: 64 });
         await sleep(300);
         // A page of a search, the rest read on a later turn of the event loop.
         const page = db.prepare('SELECT id FROM t').iterate();
         page.next();
         // Another connection (a CLI command) writes past maxFrames meanwhile.
         const cli = new Database(path);
         const insert = cli.prepare('INSERT INTO t (v) VALUES (?)');
         for (let i = 0; i < 600; i++) insert.run('y'.repeat(3000));
         await sleep(300);
         for (const _ of page);
         await sleep(300);
         for (let i = 0; i < 5; i++) { db.prepare('INSERT INTO t (v) VALUES (?)').run('after'); await sleep(50); }
         const size = statSync(path + '-wal').size;
         cli.close();
         process.stdout.write('ready ' + size + '\\n');
         process.exit(0);`,
          [path],
        );
        p.ready.catch(() => {});
        const { code, err } = await p.done;
        expect(err).toBe('');
        expect(code).toBe(0);
        // The WAL started over after the read ended (journal_size_limit: cut back to maxFrames pages).
        expect(Number(/ready (\d+)/.exec(p.out())?.[1])).toBeLessThanOrEqual(256 * 4096);
      },
    );
  });

  describe('1. nothing committed is lost', () => {
    it(
      'kill -9 at random points (pinned, moving, let go, mid-checkpoint, mid-fallback): integrity ok, every acknowledged commit and no partial one',
      { timeout: 120_000 },
      async () => {
        const dir = mkdtempSync(join(root, 'kill-'));
        const path = join(dir, 'x.db');
        const init = new Database(path);
        init.pragma('journal_mode = WAL');
        init.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, batch INTEGER, size INTEGER, v TEXT)');
        init.close();
        const script = `const { default: Database } = await import(${JSON.stringify(SQLITE)});
const { checkpointInBackground } = await import(${JSON.stringify(DIST)});
const db = new Database(process.argv[2]);
db.pragma('synchronous = NORMAL');
checkpointInBackground(db, (why) => process.stderr.write(why + '\\n'), { everyMs: 3, maxFrames: 256, startOverFrames: 64 });
const insert = db.prepare('INSERT INTO t (batch, size, v) VALUES (?, ?, ?)');
let batch = db.prepare('SELECT COALESCE(MAX(batch), 0) AS b FROM t').get().b;
let rows = db.prepare('SELECT COUNT(*) AS n FROM t').get().n;
const commit = (size, bytes) => {
  batch++;
  db.transaction(() => { for (let i = 0; i < size; i++) insert.run(batch, size, 'x'.repeat(bytes)); })();
  rows += size;
  process.stdout.write(rows + '\\n');
};
// A reader of its own now and then (a paged search), held across commits.
const reader = new Database(process.argv[2]);
let step = 0;
const go = () => {
  step++;
  if (step % 50 === 0) commit(120, 3000); // one huge transaction: past maxFrames
  else commit(1 + (step % 7), 600);
  if (step % 23 === 0) { reader.exec('BEGIN'); reader.prepare('SELECT COUNT(*) FROM t').get(); }
  if (step % 23 === 5 && reader.inTransaction) reader.exec('COMMIT');
  // Bursts, then pauses of a few ticks (the pin held, then moved), now and then a longer one.
  setTimeout(go, step % 10 === 0 ? 12 : step % 37 === 0 ? 40 : 0);
};
process.stdout.write('ready\\n');
go();
`;
        for (let round = 0; round < 8; round++) {
          const file = join(dir, `writer-${round}.mjs`);
          (await import('node:fs')).writeFileSync(file, script);
          const child = spawn(process.execPath, [file, path], { stdio: ['ignore', 'pipe', 'pipe'] });
          let said = 0;
          let err = '';
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          child.stdout.on('data', (d: Buffer) => {
            for (const l of d.toString().split('\n')) if (/^\d+$/.test(l)) said = Math.max(said, Number(l));
          });
          const exit = new Promise((r) => child.once('exit', r));
          await sleep(300 + Math.floor(Math.random() * 900));
          child.kill('SIGKILL');
          await exit;
          expect(err).toBe('');
          const again = new Database(path);
          expect(again.pragma('integrity_check', { simple: true })).toBe('ok');
          const n = (again.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;
          expect(n).toBeGreaterThanOrEqual(said);
          // Whole transactions only.
          expect(again.prepare('SELECT batch FROM t GROUP BY batch HAVING COUNT(*) != MAX(size)').all()).toEqual([]);
          again.close();
        }
      },
    );
  });

  describe('5. shutdown', () => {
    /** fds of this process open in `dir`. */
    const openIn = (dir: string) =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
        } catch {
          return false;
        }
      });

    it('stop() while pinned, then close: no handle left open, the WAL checkpointed and removed', async () => {
      const { dir, path, wal, db, insert } = open();
      const { c } = start(db, { everyMs: 10 });
      insert.run('a');
      await sleep(60);
      insert.run('b');
      await sleep(60);
      expect(existsSync(wal)).toBe(true);
      await c.stop();
      db.close();
      expect(existsSync(wal)).toBe(false);
      expect(openIn(dir)).toEqual([]);
      const again = new Database(path, { readonly: true });
      expect(rows(again)).toBe(2);
      again.close();
    });

    const storeChild = (dir: string, path: string, vanish: 'no' | 'before' | 'after') =>
      otherProcess(
        dir,
        `const { SqliteMetaStore } = await import(${JSON.stringify(STORE)});
         const { rmSync } = await import('node:fs');
         const path = process.argv[2];
         const vanish = process.argv[3];
         const meta = new SqliteMetaStore(path);
         const gone = () => { for (const f of [path, path + '-wal', path + '-shm']) rmSync(f, { force: true }); };
         if (vanish === 'before') gone();
         meta.checkpointInBackground((why) => process.stderr.write('fell back: ' + why + '\\n'));
         for (let i = 0; i < 5; i++) {
           await meta.createToken({ name: 't' + i, hash: 'h' + i, admin: false });
           await new Promise((r) => setTimeout(r, 250));
         }
         if (vanish === 'after') gone();
         await new Promise((r) => setTimeout(r, 250));
         await meta.close();
         process.stdout.write('ready\\n');`,
        [path, vanish],
      );

    it('a process that closes the store exits by itself, with the WAL removed and every row in the database file', { timeout: 20_000 }, async () => {
      const dir = mkdtempSync(join(root, 'exit-'));
      const path = join(dir, 'x.db');
      const p = storeChild(dir, path, 'no');
      p.ready.catch(() => {});
      const t0 = Date.now();
      const { code, err } = await p.done;
      expect(err).toBe('');
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(p.out()).toContain('ready');
      expect(existsSync(`${path}-wal`)).toBe(false);
      const again = new Database(path, { readonly: true });
      expect(again.pragma('integrity_check', { simple: true })).toBe('ok');
      expect((again.prepare('SELECT COUNT(*) AS n FROM tokens').get() as { n: number }).n).toBe(5);
      again.close();
    });

    it('exits cleanly when the database path vanished before the thread started (it failed) or while it ran', { timeout: 30_000 }, async () => {
      for (const vanish of ['before', 'after'] as const) {
        const dir = mkdtempSync(join(root, `vanish-${vanish}-`));
        const p = storeChild(dir, join(dir, 'x.db'), vanish);
        p.ready.catch(() => {});
        const { code, err } = await p.done;
        expect(code).toBe(0);
        expect(p.out()).toContain('ready');
        if (vanish === 'before') expect(err).toMatch(/fell back: the checkpoint thread/);
        else expect(err).toBe('');
      }
    });
  });
});
