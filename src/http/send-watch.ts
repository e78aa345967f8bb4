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
 */
export class SendTimeout extends Error {
  constructor(seconds: number) {
    super(`connection closed by Airlock: the client took none of the bytes sent to it for ${seconds} s (transfers.send_timeout)`);
  }
}

interface Watched {
  queued: number;
  since: number;
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
    this.live.set(socket, { queued: 0, since: Date.now() });
    socket.once('close', () => this.live.delete(socket));
  }

  private sweep(now: number): void {
    for (const [socket, w] of this.live) {
      const queued = socket.writableLength;
      if (queued === 0 || queued !== w.queued) {
        w.queued = queued;
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
