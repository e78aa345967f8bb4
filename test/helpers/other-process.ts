import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Other processes beside a test's SQLite database, as a CLI command run beside the server is:
 * a script run from a file of its own, and one that holds the write lock.
 */
export interface OtherProcess {
  /** Resolves once the process prints "ready"; rejects if it exits first. */
  ready: Promise<void>;
  done: Promise<{ code: number | null; err: string }>;
  out: () => string;
}

let children = 0;
/** Run `script` (an ES module written into `dir`) with `args` in another process. */
export function otherProcess(dir: string, script: string, args: string[]): OtherProcess {
  // A file of its own (no --input-type flag for the store's checkpoint thread to inherit), as the CLI is run.
  const file = join(dir, `child-${process.pid}-${++children}.mjs`);
  writeFileSync(file, script);
  const p = spawn(process.execPath, [file, ...args], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    p.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    p.once('exit', () => reject(new Error(`the child exited before it was ready: ${err}`)));
  });
  return { ready, done: new Promise((r) => p.once('exit', (code) => r({ code, err }))), out: () => out };
}

/** Another process (a CLI command) holding the database's write lock for `ms` with a write in it, then committing. */
export const holdWriteLock = (dir: string, path: string, ms: number): OtherProcess =>
  otherProcess(
    dir,
    `import { createRequire } from 'node:module';
     const Database = createRequire(${JSON.stringify(join(process.cwd(), 'package.json'))})('better-sqlite3');
     const db = new Database(process.argv[2]);
     db.exec('BEGIN IMMEDIATE');
     db.prepare("INSERT OR REPLACE INTO pages (key, body, fetched_at) VALUES ('cli', 'x', 1)").run();
     process.stdout.write('ready\\n');
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.argv[3]));
     db.exec('COMMIT');
     db.close();`,
    [path, String(ms)],
  );
