import http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Plain-HTTP upstream connections that read up to 1 MiB per read (issue 29: "reads into large
 * buffers") instead of the 64 KiB libuv asks for, for every socket Node's default reading
 * allocates.
 *
 * How: each connection is opened with `onread` (net.connect takes it), so libuv reads into one
 * buffer shared by every upstream connection of the process, and the callback hands the bytes to
 * Node's HTTP client as the socket's own 'data' would. That is safe because it is synchronous:
 * the client's parser copies a body's bytes out (each body chunk is a new buffer) and saves the
 * header pieces before it returns, the model Node's own HTTP server uses with one shared buffer
 * for all its connections, and no other read runs in between on this one thread. The tests
 * (test/unit/large-reads.test.ts, break-reads.test.ts) hold bodies of concurrent transfers past
 * later reads, with the buffer overwritten after each callback, and check them byte for byte;
 * were that ever not so, the fill's digest would refuse the bytes (never serve them). One view
 * into the buffer does outlive a callback: Node's parse error carries the raw bytes
 * (`rawPacket`), which may then be another connection's: UpstreamHttp drops it from the error.
 *
 * Pausing still works: the client pauses the socket when a body's reader is behind, which stops
 * an `onread` socket's reads as it stops any other (net.Socket pause/resume).
 *
 * How large: a body whose reader paused (a fill at its memory bound, core/spool.ts) has MiBs
 * waiting in the kernel, and the first read after it resumes takes as much as the read allows,
 * as one chunk past the fill's bound. So the reads of all the connections busy at once share
 * READS_MEMORY: a lone pull reads up to 1 MiB, 16 at once 256 KiB each, 64 or more Node's 64 KiB.
 * Counted over every agent of the process (one per UpstreamHttp: four in `airlock serve`), since
 * the buffer is the process's; a paused or pooled connection's next read is 64 KiB (next()).
 *
 * Measured (2 cores, load ~1, each build interleaved with the code before):
 * - Alone (`bench/profile-cold.mjs`, 1 GiB cold through `airlock serve`, 6 pulls a build): Airlock's
 *   main thread 0.80-0.96 CPU-s per GiB against 1.37-1.51 with Node's reads, all threads
 *   2.59-2.70 against 3.18-3.42; curl's 0.40-0.45 against 0.53-0.60 (larger writes to it too).
 *   Fixed 256 KiB reads saved only a third of that (main thread 1.15-1.42). Since a paused or
 *   pooled connection's next read is 64 KiB (next()): main thread 0.96-1.11 against 1.19-1.44.
 * - 50 concurrent cold pulls (`bench/many-cold.mjs`, 16 running at once): peak RSS 168-186 MB in
 *   10 of 11 runs (one 218) against 179-194, 250-339 against 202-256 MiB/s. Fixed 1 MiB reads had
 *   peaked at 193-210 (a paused fill's first read past its bound, above). Since next(): 174-191
 *   against 183-193 MB, 285-331 against 222-265 MiB/s (4 runs each).
 * - Without the server's glibc settings (src/obs/malloc.ts) larger copies cost more than they
 *   save (a plain http.get: 0.55-1.3 CPU-s per GiB against 0.32-1.1), which is one more reason
 *   `airlock serve` warns when they are missing.
 *
 * Not for HTTPS: tls.connect takes `onread` too, but Node's TLS layer hands it one 16 KiB record
 * per call, as it does without it (measured: 16 KiB at most either way), so it changes nothing there.
 */
export const READ_MAX = 1 << 20;
const READ_MIN = 64 << 10;
/** What the reads of all busy upstream connections may hold together past their fills' bounds. */
const READS_MEMORY = 4 << 20;

let shared: Buffer | undefined;
/** Every live agent of the process: the buffer is the process's, so its share is over all of them. */
const agents = new Set<LargeReadHttpAgent>();

/** Bytes one read may take while `busy` connections are in use. */
export function readBytes(busy: number): number {
  return Math.max(READ_MIN, Math.min(READ_MAX, Math.floor(READS_MEMORY / Math.max(1, busy) / READ_MIN) * READ_MIN));
}

/** Connections handed to requests now (not idle in a pool), over every host of every agent. */
function busyAll(): number {
  let n = 0;
  for (const a of agents) for (const k in a.sockets) n += a.sockets[k]?.length ?? 0;
  return n;
}

type Reading = Duplex & { isPaused(): boolean; parser?: { incoming?: { complete?: boolean } | null } | null };

/** Node's http.Agent whose connections read through the shared buffer. */
export class LargeReadHttpAgent extends http.Agent {
  constructor(opts?: http.AgentOptions) {
    super(opts);
    agents.add(this);
  }

  override destroy(): void {
    agents.delete(this);
    super.destroy();
  }

  override createConnection(options: http.ClientRequestArgs, cb?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    shared ??= Buffer.allocUnsafe(READ_MAX);
    const whole = shared;
    let s: Reading | null | undefined = null;
    // Node asks for the next read's buffer right after a read, and that read may come much later:
    // after a paused reader resumes, or a pooled connection is reused, when many more connections
    // may be busy. Such a connection (paused, between responses, not yet connected) gets the
    // smallest read; the read after it is sized by the connections busy then.
    const next = () => {
      const waiting = !s || s.isPaused() || !s.parser?.incoming || s.parser.incoming.complete === true;
      return whole.subarray(0, waiting ? READ_MIN : readBytes(busyAll()));
    };
    const onread = {
      // A function: Node asks it for the next read's buffer after every read (next(), above).
      buffer: next,
      callback: (n: number, buf: Buffer) => {
        s?.emit('data', buf.subarray(0, n));
      },
    };
    s = super.createConnection({ ...options, onread } as http.ClientRequestArgs, cb) as Reading | null | undefined;
    return s;
  }
}
