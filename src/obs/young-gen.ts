import { setFlagsFromString } from 'node:v8';
import type { Worker } from 'node:worker_threads';

/**
 * The server's V8 young generation is kept at its initial size (1 MiB semi-spaces) instead of
 * growing to 16 MiB ones (issue 29).
 *
 * Why: with Node's default the young generation grew to two 16 MiB semi-spaces while the server
 * started (objects surviving scavenges as modules load), and a grown one stays resident: ~13 MB of
 * an idle server's RSS and more of the 50 concurrent cold pulls' peak (docs/performance.md).
 * Scavenges cost what survives them, not the garbage, and little survives in Airlock (requests
 * under way, a fill's state); the bodies travel in buffers outside the V8 heap, which a scavenge
 * frees sooner when it comes sooner. Cold and warm throughput: docs/performance.md.
 *
 * How: V8 reads --max-semi-space-size only when the process starts, but reads the growth factor
 * whenever the young generation would grow, so a factor of 1 set first thing (cli/main.ts, before
 * the rest of the CLI is loaded) has the same effect without a command-line flag. The factor is
 * process-wide (worker threads' young generations stay small too), and V8 sets it back to 2
 * whenever it creates an isolate (measured on Node 20), so it is set again once each worker thread
 * is online.
 */
const FLAG = '--semi-space-growth-factor=1';

/** Keep the young generation at its initial size in this process from now on (worker threads started later included). */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString(FLAG);
  process.on('worker', (w: Worker) => w.once('online', () => setFlagsFromString(FLAG)));
}
