import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { checkpointInBackground, type Checkpointer } from '../../src/storage/sqlite-checkpointer.js';

/** WAL checkpoints on their own thread (storage/sqlite-checkpointer.ts): the WAL stays bounded under a writer that never pauses, and nothing committed is lost. */
describe('SQLite checkpoints in the background', () => {
  const dirs: string[] = [];
  const stops: Checkpointer[] = [];
  afterEach(async () => {
    for (const c of stops.splice(0)) await c.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const open = () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-ckpt-'));
    dirs.push(dir);
    const db = new Database(join(dir, 'x.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    return { db, wal: join(dir, 'x.db-wal') };
  };

  it('keeps the WAL bounded while commits never pause, with every committed row kept', { timeout: 30_000 }, async () => {
    const { db, wal } = open();
    const failures: string[] = [];
    const c = checkpointInBackground(db, (why) => failures.push(why), { everyMs: 10, maxFrames: 64 });
    stops.push(c);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const batch = db.transaction((n: number) => {
      for (let i = 0; i < n; i++) insert.run('x'.repeat(500));
    });
    let rows = 0;
    let largest = 0;
    let smallestAfterLargest = Infinity;
    // Until the WAL has started over (cut back after growing) with more written than it holds; generous on a loaded machine.
    const until = Date.now() + 15_000;
    while (Date.now() < until && !(rows * 500 > 8 * 1024 * 1024 && smallestAfterLargest < largest / 4)) {
      batch(20);
      rows += 20;
      const size = statSync(wal).size;
      if (size > largest) ((largest = size), (smallestAfterLargest = Infinity));
      else smallestAfterLargest = Math.min(smallestAfterLargest, size);
      // A turn of the event loop between commits, as the recorder's group commit gives.
      await new Promise((r) => setImmediate(r));
    }
    // The WAL started over (cut back to journal_size_limit) after 8 MiB of rows, with no pause in the commits.
    expect(rows * 500).toBeGreaterThan(8 * 1024 * 1024);
    expect(smallestAfterLargest).toBeLessThan(largest / 4);
    expect(failures).toEqual([]);
    await c.stop();
    db.close();
    const again = new Database(join(dirs[0], 'x.db'));
    expect(again.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: rows });
    again.close();
  });

  it('loses no committed row and keeps the file consistent when the process is killed (-9) mid-writes and mid-checkpoints', { timeout: 60_000 }, async () => {
    const { db } = open();
    db.close();
    const path = join(dirs[0], 'x.db');
    // A writer in a process of its own (the built checkpointer, dist/: npm run build first): it
    // says each committed count, and is killed while commits and checkpoints run.
    const script = join(dirs[0], 'writer.mjs');
    const module = new URL('../../dist/storage/sqlite-checkpointer.js', import.meta.url).pathname;
    writeFileSync(
      script,
      `import Database from ${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))};
import { checkpointInBackground } from ${JSON.stringify(module)};
const db = new Database(${JSON.stringify(path)});
db.pragma('synchronous = NORMAL');
checkpointInBackground(db, (why) => console.error(why), { everyMs: 1, maxFrames: 64 });
const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
const batch = db.transaction((n) => { for (let i = 0; i < n; i++) insert.run('x'.repeat(500)); });
let rows = 0;
const step = () => { batch(20); rows += 20; process.stdout.write(rows + '\\n'); setImmediate(step); };
step();
`,
    );
    const child = spawn(process.execPath, [script], { cwd: new URL('../..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] });
    let said = 0;
    let errors = '';
    child.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        const n = d.toString().trim().split('\n').map(Number).at(-1)!;
        said = Math.max(said, n);
        // Killed once the WAL has gone round a few times (64 frames each).
        if (said >= 4000) resolve();
      });
      child.on('exit', () => resolve());
    });
    const exited = child.exitCode !== null || child.signalCode !== null;
    if (!exited) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
    expect(errors).toBe('');
    expect(said).toBeGreaterThanOrEqual(4000);
    const again = new Database(path);
    expect(again.pragma('integrity_check', { simple: true })).toBe('ok');
    const { n } = again.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number };
    // Every row it was told was committed is there (and no partial batch: whole batches of 20).
    expect(n).toBeGreaterThanOrEqual(said);
    expect(n % 20).toBe(0);
    again.close();
  });

  it('does not start the WAL over after every pause (its header sync would be on the committing thread), yet copies every commit into the database file', async () => {
    const { db, wal } = open();
    const c = checkpointInBackground(db, () => {}, { everyMs: 10, maxFrames: 1024, startOverFrames: 64 });
    stops.push(c);
    // The WAL header's checkpoint sequence (bytes 12-15) goes up by one each time the WAL starts over.
    const startedOver = () => readFileSync(wal).readUInt32BE(12);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const pause = () => new Promise((r) => setTimeout(r, 150));
    const inDatabaseFile = () => {
      // The database file alone, as a crash that lost the WAL would leave it: what the checkpoints copied.
      const copy = join(dirs[0], `copy-${Date.now()}.db`);
      copyFileSync(join(dirs[0], 'x.db'), copy);
      const d = new Database(copy);
      const { n } = d.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number };
      d.close();
      return n;
    };
    insert.run('first');
    await pause();
    const sequence = startedOver();
    for (let i = 1; i <= 5; i++) {
      insert.run(`after pause ${i}`);
      await pause();
      expect(inDatabaseFile()).toBe(i + 1);
    }
    // Five commits, each after the thread had copied everything before it: the WAL never started over.
    expect(startedOver()).toBe(sequence);
    // Past startOverFrames it does, once.
    const batch = db.transaction(() => {
      for (let i = 0; i < 200; i++) insert.run('x'.repeat(2000));
    });
    batch();
    await pause();
    insert.run('after the WAL was let go');
    await pause();
    expect(startedOver()).toBe(sequence + 1);
    insert.run('pinned again');
    await pause();
    insert.run('and again');
    await pause();
    expect(startedOver()).toBe(sequence + 1);
    expect(inDatabaseFile()).toBe(209);
  });

  it('gives the checkpoints back to the committing connection when the thread cannot run', async () => {
    // The thread opens the database by its path: gone, it cannot.
    const { db } = open();
    rmSync(dirs[0], { recursive: true, force: true });
    const failures: string[] = [];
    await new Promise<void>((resolve) => {
      stops.push(
        checkpointInBackground(
          db,
          (why) => {
            failures.push(why);
            resolve();
          },
          { everyMs: 10 },
        ),
      );
    });
    expect(failures[0]).toMatch(/checkpoint thread/);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    db.close();
  }, 20_000);
});
