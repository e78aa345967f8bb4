import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fake upstream on two loopback ports: the service itself and a "CDN" on another port (another
 * host, as far as Authorization forwarding is concerned), with request counters.
 */
export abstract class TwoPortFake {
  readonly hits = new Map<string, number>();
  private server?: Server;
  private cdn?: Server;
  port = 0;
  cdnPort = 0;

  protected abstract handle(req: IncomingMessage, res: ServerResponse): void;
  protected abstract handleCdn(req: IncomingMessage, res: ServerResponse): void;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  count(key: string): number {
    return this.hits.get(key) ?? 0;
  }

  protected hit(key: string): void {
    this.hits.set(key, (this.hits.get(key) ?? 0) + 1);
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.cdn = createServer((req, res) => this.handleCdn(req, res));
    await new Promise<void>((r) => this.server!.listen(this.port || 0, '127.0.0.1', r));
    await new Promise<void>((r) => this.cdn!.listen(this.cdnPort || 0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    this.cdnPort = (this.cdn.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of [this.server, this.cdn]) {
      if (!s) continue;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}
