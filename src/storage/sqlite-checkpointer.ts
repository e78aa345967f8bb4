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
 * The thread opens its own connection and checkpoints every `everyMs` when something was committed
 * since its last look, or its last checkpoint left commits in the WAL alone. If it fails or exits,
 * the main connection checkpoints itself again (SQLite's default), so the WAL never grows unbounded.
 *
 * **The WAL starts over once per `startOverFrames`, not after every pause (2026-12-05).** The
 * first commit after a checkpoint that copied every frame starts the WAL over, and SQLite syncs
 * the new WAL header in that commit, on the committing thread. A checkpoint that caught up at every
 * pause of 200 ms put an fsync in most pull rows' commits, and on ext4 (data=ordered) that fsync
 * waits for whatever another fsync is writing out: at the end of a cold 1 GiB pull, the blob's own
 * commit. Measured (bench/profile-cold.mjs, the row's insert): 6-480 ms with the event loop
 * stopped, against 1.0-1.1 ms without the restart. So a second connection here holds a read
 * transaction (the pin, as Litestream does): while it holds a snapshot that is in the WAL, no
 * writer can start the WAL over. Before each checkpoint the pin moves to the newest commit (there
 * are frames past the last checkpoint then, so the WAL cannot start over while it moves), and the
 * checkpoint copies up to it: the database file and the syncs keep up as before. Past
 * `startOverFrames` the pin is let go until the WAL has started over.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 1000');
const pin = new Database(workerData.path, { fileMustExist: true });
const pinRead = pin.prepare('SELECT 1 FROM sqlite_master LIMIT 1');
let pinned = false;
const unpin = () => {
  if (pinned) pin.exec('COMMIT');
  pinned = false;
};
// One checkpoint at a time; past maxFrames the next waits until the committing connection has
// finished one itself (so the two never collide and that one is never left busy).
let timer;
// data_version when the pin last moved (the first tick checkpoints whatever it is: behind).
let seen = -1;
// Committed frames left in the WAL alone: at first (what was committed before the thread started)
// and after a checkpoint that did not copy them all (a reader held them back, another connection's
// checkpoint was running, a commit landed as the pin moved). The next tick goes again, committed
// since or not, so the database file catches up once writes pause.
let behind = true;
let releasing = false;
let lastFrames = 0;
const tick = () => {
  try {
    if (!behind && db.pragma('data_version', { simple: true }) === seen) {
      timer = setTimeout(tick, workerData.everyMs);
      return;
    }
    // Committed since the pin moved, or left behind: there are frames past the last checkpoint, so
    // the WAL cannot start over while the pin moves to the newest commit.
    unpin();
    pin.exec('BEGIN');
    pinRead.get();
    pinned = true;
    // Read after the pin moved: a commit in between is past it, and the checkpoint leaves it behind.
    seen = db.pragma('data_version', { simple: true });
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    const frames = r ? r.log : 0;
    // Busy (log -1): another connection's checkpoint is running (a CLI's autocheckpoint, after each
    // of its commits past 1,000 frames). Let go, so that it copies everything and its next commit
    // starts the WAL over: held, the pin would keep it from ever doing so.
    const busy = !!r && r.busy !== 0;
    behind = busy || (!!r && r.checkpointed < r.log);
    if (!busy) {
      // Let go until the WAL has started over (fewer frames than at the last look); then kept.
      if (releasing) releasing = frames >= lastFrames;
      else releasing = frames >= workerData.startOverFrames;
      lastFrames = frames;
    }
    if (releasing || busy) unpin();
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
  unpin();
  pin.close();
  db.close();
  parentPort.close();
});
`;

/** How often the thread looks for commits to checkpoint. */
const EVERY_MS = 200;
/** The WAL frames (4 KiB pages) past which the committing connection finishes a checkpoint itself: 64 MiB. */
const MAX_FRAMES = 16_384;
/** The WAL frames after which the pin lets the WAL start over: 16 MiB. */
const START_OVER_FRAMES = 4_096;

export interface Checkpointer {
  /** Stop the thread (the main connection checkpoints on close, as SQLite does for the last connection). */
  stop(): Promise<void>;
}

/** Take `db`'s WAL checkpoints off the calling thread; `onFailure` hears why they came back to it. */
export function checkpointInBackground(
  db: Database,
  onFailure: (why: string) => void = () => {},
  { everyMs = EVERY_MS, maxFrames = MAX_FRAMES, startOverFrames = START_OVER_FRAMES }: { everyMs?: number; maxFrames?: number; startOverFrames?: number } = {},
): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3');
  db.pragma('wal_autocheckpoint = 0');
  // The WAL file is cut back to this size when it starts over (it stays at its largest otherwise).
  db.pragma(`journal_size_limit = ${maxFrames * 4096}`);
  // A small heap: the thread only runs a pragma (its isolate still costs a few MB of RSS).
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { module, path: db.name, everyMs, maxFrames, startOverFrames: Math.min(startOverFrames, maxFrames) },
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
      try {
        db.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // Not while this connection is in a transaction or iterating a statement (a page of a
        // search read on a later turn): it throws, here in a listener that would crash the
        // process. That read holds the checkpoints back, so the thread says so again next tick.
      }
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
