import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Database } from 'better-sqlite3';

/**
 * WAL checkpoints of the server's SQLite database, run on a thread of their own (issue 29).
 *
 * Why: SQLite checkpoints from the connection that commits, once the WAL passes 1,000 pages, and a
 * checkpoint syncs the WAL and the database file (synchronous = NORMAL). With the pull record
 * group-committed on the main thread, that sync stalled the event loop: in the benchmark's warm
 * manifest row (a pull row per request) ~20 us of every request's wall time was checkpointing
 * (~3 us of it CPU), and the row went from 0.3x to 0.55-0.65x plain Node with the checkpoints
 * taken off the main thread. Commits themselves are unchanged: each is in the WAL before its
 * waiters are told (it survives a process crash, as before), and the checkpoint copies only
 * committed frames (PASSIVE: it never waits for, nor blocks, the writer).
 *
 * The thread opens its own connection and checkpoints every `everyMs`. If it fails or exits, the
 * main connection checkpoints itself again (SQLite's default), so the WAL never grows unbounded.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 1000');
// One checkpoint at a time; past maxFrames the next waits until the committing connection has
// finished one itself (so the two never collide and that one is never left busy).
let timer;
const tick = () => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    const frames = r ? r.log : 0;
    parentPort.postMessage({ frames });
    if (frames <= workerData.maxFrames) timer = setTimeout(tick, workerData.everyMs);
  } catch (e) {
    parentPort.postMessage({ error: String((e && e.message) || e) });
  }
};
timer = setTimeout(tick, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m === 'caught-up') timer = setTimeout(tick, workerData.everyMs);
  if (m !== 'stop') return;
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
`;

/** How often the thread checkpoints. */
const EVERY_MS = 200;
/** The WAL frames (4 KiB pages) past which the committing connection finishes a checkpoint itself: 64 MiB. */
const MAX_FRAMES = 16_384;

export interface Checkpointer {
  /** Stop the thread (the main connection checkpoints on close, as SQLite does for the last connection). */
  stop(): Promise<void>;
}

/** Take `db`'s WAL checkpoints off the calling thread; `onFailure` hears why they came back to it. */
export function checkpointInBackground(
  db: Database,
  onFailure: (why: string) => void = () => {},
  { everyMs = EVERY_MS, maxFrames = MAX_FRAMES }: { everyMs?: number; maxFrames?: number } = {},
): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3');
  db.pragma('wal_autocheckpoint = 0');
  // The WAL file is cut back to this size when it starts over (it stays at its largest otherwise).
  db.pragma(`journal_size_limit = ${maxFrames * 4096}`);
  // A small heap: the thread only runs a pragma (its isolate still costs a few MB of RSS).
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { module, path: db.name, everyMs, maxFrames },
    resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
  });
  worker.unref();
  let stopping = false;
  let failed = false;
  const fallBack = (why: string) => {
    if (failed || stopping) return;
    failed = true;
    if (db.open) db.pragma('wal_autocheckpoint = 1000');
    onFailure(why);
  };
  worker.on('message', (m: { error?: string; frames?: number }) => {
    // The thread copies and syncs what is committed, but while commits keep coming it never
    // catches up with the last one, and the WAL starts over only after a checkpoint that did: past
    // MAX_FRAMES this connection checkpoints the rest itself (a stall of tens of ms every ~15 s
    // under sustained load, where SQLite's own checkpoints stalled every ~35 commits).
    if ((m.frames ?? 0) > maxFrames && db.open) {
      db.pragma('wal_checkpoint(PASSIVE)');
      worker.postMessage('caught-up');
    }
    if (m.error) {
      fallBack(`the checkpoint thread failed: ${m.error}`);
      void worker.terminate();
    }
  });
  worker.on('error', (e) => fallBack(`the checkpoint thread failed: ${e.message}`));
  let gone = false;
  worker.on('exit', (code) => {
    gone = true;
    fallBack(`the checkpoint thread exited (code ${code})`);
  });
  return {
    async stop() {
      if (stopping) return;
      stopping = true;
      if (gone) return;
      // Waited for while referenced: an unref'd thread and timer would let a process with nothing
      // else to do end here (exit 13 under a top-level await), before the database is closed.
      worker.ref();
      const exited = new Promise<void>((r) => worker.once('exit', () => r()));
      worker.postMessage('stop');
      await Promise.race([exited, new Promise<void>((r) => setTimeout(r, 2000).unref())]);
      await worker.terminate();
    },
  };
}
