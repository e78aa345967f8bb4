/**
 * Long work on the server's event loop, cut into slices with a turn of the loop between them, so
 * that every client's requests (and the pull rows' commits, on timers) go on meanwhile: an advisory
 * feed's 20,000-record export read, checked and written at once stopped the loop for 1.5-2 s.
 */

/** One turn of the event loop: timers and I/O callbacks run before the caller goes on. */
export const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Slices of at most this long (a request waits at most about this for one of them). */
const SLICE_MS = 10;

/** A check to await between steps of long work: it takes a turn once the slice has run `ms`, else resolves at once. */
export function slicer(ms = SLICE_MS): () => Promise<void> {
  let since = performance.now();
  return async () => {
    if (performance.now() - since < ms) return;
    await turn();
    since = performance.now();
  };
}
