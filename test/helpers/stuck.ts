import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether `cond` came true within `ms` (looked at every 50 ms, and once more at the end). */
export async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await cond()) return true;
    await sleep(50);
  }
  return cond();
}

/** A raw client: one request (its own request id), reads nothing until told, says when the server closed it. */
export class Stuck {
  readonly socket: Socket;
  readonly id = randomUUID();
  private got: Buffer[] = [];
  readonly closed: Promise<void>;

  constructor(port: number, path: string, headers: Record<string, string> = {}, method = 'GET') {
    this.socket = connect(port, '127.0.0.1');
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    this.socket.write(`${method} ${path} HTTP/1.1\r\nHost: airlock\r\nX-Request-Id: ${this.id}\r\n${extra}Connection: close\r\n\r\n`);
    this.socket.on('data', (b: Buffer) => this.got.push(b));
    this.socket.pause();
    this.closed = new Promise((r) => this.socket.once('close', () => r()));
    this.socket.on('error', () => {});
  }

  resume(): void {
    this.socket.resume();
  }

  all(): Buffer {
    return Buffer.concat(this.got);
  }

  head(): string {
    const all = this.all();
    return all.subarray(0, all.indexOf('\r\n\r\n')).toString();
  }

  body(): Buffer {
    const all = this.all();
    return all.subarray(all.indexOf('\r\n\r\n') + 4);
  }
}
