import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAKE_ZIP = new URL('./make_osv_zip.py', import.meta.url).pathname;

export interface OsvTestRecord {
  id: string;
  modified: string;
  [k: string]: unknown;
}

/**
 * An OSV export on loopback in osv.dev's layout: `/<Ecosystem>/all.zip` (written by Python's
 * zipfile, make_osv_zip.py), `/<Ecosystem>/modified_id.csv` (`<modified>,<id>`, newest first) and
 * `/<Ecosystem>/<ID>.json`. Every request's path is kept; `tamper` rewrites all.zip as served.
 */
export class OsvFeedServer {
  readonly records = new Map<string, Map<string, OsvTestRecord>>();
  readonly requests: string[] = [];
  tamper: ((zip: Buffer) => Buffer) | null = null;
  private server?: Server;
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  put(ecosystem: string, ...recs: OsvTestRecord[]): this {
    const m = this.records.get(ecosystem) ?? new Map<string, OsvTestRecord>();
    for (const r of recs) m.set(r.id, r);
    this.records.set(ecosystem, m);
    return this;
  }

  /** The paths requested so far that end in `suffix`, in order. */
  asked(suffix: string): string[] {
    return this.requests.filter((p) => p.endsWith(suffix));
  }

  zip(ecosystem: string): Buffer {
    const dir = mkdtempSync(join(tmpdir(), 'osv-export-'));
    try {
      for (const r of this.records.get(ecosystem)?.values() ?? []) writeFileSync(join(dir, `${r.id}.json`), JSON.stringify(r));
      const out = join(dir, 'all.zip');
      execFileSync('python3', [MAKE_ZIP, out, dir]);
      return readFileSync(out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  csv(ecosystem: string): string {
    const recs = [...(this.records.get(ecosystem)?.values() ?? [])].sort((a, b) => (a.modified < b.modified ? 1 : a.modified > b.modified ? -1 : 0));
    return recs.map((r) => `${r.modified},${r.id}\n`).join('');
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      this.requests.push(path);
      const [, eco, file] = path.split('/');
      const recs = this.records.get(eco);
      if (!recs || !file) return void res.writeHead(404).end('no such ecosystem');
      if (file === 'all.zip') {
        const z = this.zip(eco);
        return void res.writeHead(200, { 'content-type': 'application/zip' }).end(this.tamper ? this.tamper(z) : z);
      }
      if (file === 'modified_id.csv') return void res.writeHead(200, { 'content-type': 'text/csv' }).end(this.csv(eco));
      const rec = recs.get(file.replace(/\.json$/, ''));
      if (!rec || !file.endsWith('.json')) return void res.writeHead(404).end('not found');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(rec));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }
}
