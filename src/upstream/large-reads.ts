import http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Plain-HTTP upstream connections that read up to READ_BYTES per read (issue 29: "reads into
 * large buffers"), instead of the 64 KiB libuv asks for, for every socket Node's default reading
 * allocates.
 *
 * How: each connection is opened with `onread` (net.connect takes it), so
 * libuv reads into one buffer shared by every upstream connection of the process, and the
 * callback hands the bytes to Node's HTTP client as the socket's own 'data' would. That is safe
 * because it is synchronous: the client's parser copies a body's bytes out (each body chunk is
 * a new buffer) and saves the header pieces before it returns, the model Node's own HTTP server
 * uses with one shared buffer for all its connections, and no other read runs in between on
 * this one thread. test/unit/large-reads.test.ts holds bodies of concurrent transfers past later
 * reads and checks them against their digests; were that ever not so, the fill's digest would
 * refuse the bytes (never serve them).
 *
 * Pausing still works: the client pauses the socket when a body's reader is behind, which stops
 * an `onread` socket's reads as it stops any other (net.Socket pause/resume).
 *
 * Measured (a 1 GiB body through http.get, the server's glibc settings, loopback): 0.20-0.22
 * CPU-s per GiB against 0.30-0.38 for Node's default reads, ~220 KiB per read against 64 KiB;
 * 256 KiB and 1 MiB buffers read the same (the kernel has ~220 KiB ready at a time). Without the
 * glibc settings (src/obs/malloc.ts) the larger copies cost more than they save (0.55-1.3 against
 * 0.32-1.1): that is why `airlock serve` warns when they are missing.
 *
 * Why 256 KiB and not more: a body whose reader paused (a fill at its memory bound, src/core/spool.ts,
 * 128 KiB at least when many run) has MiBs waiting in the kernel, and the first read after it
 * resumes takes as much as the buffer holds, as one body chunk past the fill's bound. With 1 MiB
 * that was up to 1 MiB per fill: 50 concurrent cold 8 MiB pulls peaked at 161-202 MB (8 runs) against
 * 155-166 with 256 KiB (5 runs; 158-179 with Node's default reads, 8 runs); test/unit/break-reads.test.ts.
 *
 * Not for HTTPS: tls.connect takes `onread` too, but Node's TLS layer hands it one 16 KiB record
 * per call, as it does without it (measured: 16 KiB at most either way, 24 MiB bodies on loopback),
 * so it would change nothing there.
 */
export const READ_BYTES = 256 << 10;

let shared: Buffer | undefined;

function withLargeReads<T extends object>(options: T, socket: () => Duplex | null | undefined): T {
  shared ??= Buffer.allocUnsafe(READ_BYTES);
  const onread = {
    buffer: shared,
    callback: (n: number, buf: Buffer) => {
      socket()?.emit('data', buf.subarray(0, n));
    },
  };
  return { ...options, onread };
}

type Done = (err: Error | null, stream: Duplex) => void;

/** Node's http.Agent whose connections read through the shared buffer. */
export class LargeReadHttpAgent extends http.Agent {
  override createConnection(options: http.ClientRequestArgs, cb?: Done): Duplex | null | undefined {
    let s: Duplex | null | undefined = null;
    s = super.createConnection(
      withLargeReads(options, () => s),
      cb,
    );
    return s;
  }
}
