import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestAirlock } from './airlock.js';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** What it was answered: a status, or 'hang' (never answered). */
  answered: number | 'hang';
  at: number;
}

/**
 * A webhook receiver on loopback for the alert tests: records every delivery and answers with
 * `status` (a number, or 'hang': the request is read and never answered).
 */
export class Receiver {
  readonly received: Received[] = [];
  status: number | 'hang' = 200;
  private server?: Server;
  port = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const answered = this.status;
        this.received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString(), answered, at: Date.now() });
        if (answered === 'hang') return;
        res.writeHead(answered, { 'content-type': 'text/plain' }).end(answered === 200 ? 'ok' : 'failing');
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Deliveries answered 200 at `path`. */
  delivered(path: string): Received[] {
    return this.received.filter((r) => r.path === path && r.answered === 200);
  }

  async until(what: () => boolean, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!what()) {
      if (Date.now() > end) throw new Error(`receiver: not seen within ${timeoutMs} ms: ${JSON.stringify(this.received.map((r) => [r.path, r.answered]))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

/** An OSV record for tinylib, fixed in 1.1, CRITICAL. */
export const tinylibAdvisory = (id = 'GHSA-tiny-0001', modified = '2026-12-01T00:00:00Z') => ({
  id,
  modified,
  aliases: ['CVE-2099-0101'],
  summary: 'tinylib runs code from its config file',
  severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
  affected: [
    {
      package: { ecosystem: 'PyPI', name: 'tinylib' },
      ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.1' }] as Record<string, string>[] }],
    },
  ],
});

export async function importAdvisory(a: TestAirlock, rec: { id: string; modified: string }): Promise<void> {
  await a.airlock.meta.putAdvisories([{ id: rec.id, modified: rec.modified, record: JSON.stringify(rec) }]);
  await a.airlock.reloadAdvisories();
}
