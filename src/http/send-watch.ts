import type { Socket } from 'node:net';

/**
 * transfers.send_timeout (nginx's send_timeout): a connection whose client has taken none of the
 * bytes queued for it for this long is closed. Without it a client that stops reading keeps what
 * was written for it (a warm hit's chunk buffer, core/hit-body.ts; a fill's pieces) and its open
 * file for as long as its TCP connection lives, which with a closed receive window is for ever.
 *
 * Measured on the socket, between the queue's changes: a connection with nothing queued (idle
 * keep-alive, or a request still waiting for its upstream or its verdict) never times out here,
 * and a client that goes on taking bytes, however slowly, keeps it open as long as each write
 * (at most a 1 MiB chunk) goes within the timeout.
 *
 * The queue's length alone is not progress: a client slower than Airlock always has one whole
 * chunk queued when the watch looks (the next is written as soon as the last is taken), so it
 * reads the same 1 MiB at every look. What the kernel has not yet taken of the writes handed to
 * it (libuv's write queue, which Node's own socket.setTimeout reads for the same reason) moves
 * with every byte the client takes.
 */
export class SendTimeout extends Error {
  constructor(seconds: number) {
    super(`connection closed by Airlock: the client took none of the bytes sent to it for ${seconds} s (transfers.send_timeout)`);
  }
}

interface Watched {
  /** The queue as last seen: Node's length and libuv's write queue. */
  seen: string;
  since: number;
}

/** Where the socket's queue stands: changes whenever the client takes bytes or more are queued. */
function mark(socket: Socket): string {
  const handle = (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle;
  return `${socket.writableLength}/${handle?.writeQueueSize ?? ''}`;
}

const cut = new WeakMap<Socket, SendTimeout>();

/** Why Airlock closed this connection, when the send timeout did (http/send.ts says so in the pull row). */
export function sendTimedOut(socket: Socket | null | undefined): SendTimeout | undefined {
  return socket ? cut.get(socket) : undefined;
}

export class SendWatch {
  private readonly live = new Map<Socket, Watched>();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ms: number,
    private readonly onCut: (socket: Socket, queued: number) => void = () => {},
  ) {
    if (ms <= 0) return;
    this.timer = setInterval(() => this.sweep(Date.now()), Math.max(10, Math.min(1000, ms / 4)));
    this.timer.unref();
  }

  /** Watch a connection from now until it closes (server 'connection'). */
  watch(socket: Socket): void {
    if (!this.timer) return;
    this.live.set(socket, { seen: '', since: Date.now() });
    socket.once('close', () => this.live.delete(socket));
  }

  private sweep(now: number): void {
    for (const [socket, w] of this.live) {
      const queued = socket.writableLength;
      const seen = mark(socket);
      if (queued === 0 || seen !== w.seen) {
        w.seen = seen;
        w.since = now;
        continue;
      }
      if (now - w.since < this.ms) continue;
      this.live.delete(socket);
      cut.set(socket, new SendTimeout(Math.round(this.ms / 1000)));
      this.onCut(socket, queued);
      socket.destroy();
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.live.clear();
  }
}
