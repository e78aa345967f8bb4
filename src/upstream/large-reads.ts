import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Large reads for the connections that carry large bodies (issue 29): while a connection carries a
 * blob body, its socket reads into the unused rest of a SLAB-byte buffer (a new one once the rest
 * is under MIN_READ), instead of Node's default of one fresh 64 KiB allocation per read. Reads of
 * a busy loopback or LAN socket then return up to the slab's rest at once: fewer, larger chunks
 * for the fill, its spool writes and its clients (a plain Node pipe went from 2.1-2.5 to 1.3-1.4
 * CPU-s per GiB with 1 MiB reads, docs/performance.md).
 *
 * The slabs are never reused: a chunk is a view of its slab, kept alive by whoever holds the
 * chunk (the fill's window, a client's socket queue) and freed by the collector, so no chunk can
 * ever be overwritten under its reader. 256 KiB rather than 1 MiB: a view pins its whole slab, and
 * 50 fills at once keep a 160 KiB window each (core/spool.ts); 1 MiB slabs raised that memory row
 * from 211 to 317 MB. Other connections (pages, manifests, tokens) read as Node does by default,
 * into 64 KiB buffers. Plain HTTP only: TLS sockets read through their own layer.
 */
const SLAB = 256 << 10;
const MIN_READ = 64 << 10;
const STATE = Symbol('airlock.largeReads');

interface ReadState {
  large: boolean;
  slab: Buffer | null;
  off: number;
}

/** Whether the connection now carries a large body (set by the request that holds it, cleared at the body's end). */
export function largeReads(socket: Socket | Duplex | null | undefined, on: boolean): void {
  const s = (socket as { [STATE]?: ReadState } | null | undefined)?.[STATE];
  if (s) s.large = on;
}

/** A keep-alive agent whose connections read as described above. */
export class LargeReadAgent extends http.Agent {
  override createConnection(...args: Parameters<http.Agent['createConnection']>): Duplex {
    const [opts, cb] = args;
    const state: ReadState = { large: false, slab: null, off: 0 };
    const onread = {
      buffer: (): Buffer => {
        if (!state.large) {
          state.slab = null;
          return Buffer.allocUnsafeSlow(MIN_READ);
        }
        if (state.slab === null || SLAB - state.off < MIN_READ) {
          state.slab = Buffer.allocUnsafeSlow(SLAB);
          state.off = 0;
        }
        return state.slab.subarray(state.off);
      },
      callback(this: Socket, n: number, buf: Buffer): boolean {
        if (state.slab !== null && buf.buffer === state.slab.buffer) state.off += n;
        return this.push(buf.subarray(0, n));
      },
    };
    // createConnection's declared type has no onread; net.connect reads it (a public option of net.Socket).
    const socket = (super.createConnection as (o: unknown, c?: unknown) => Duplex)({ ...opts, onread }, cb);
    (socket as unknown as { [STATE]: ReadState })[STATE] = state;
    return socket;
  }
}
