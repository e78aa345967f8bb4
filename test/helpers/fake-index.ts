import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  filename: string;
  bytes: Buffer;
  requiresPython?: string;
  /** true = yanked without reason, string = reason. */
  yanked?: boolean | string;
  /** PEP 658 metadata file bytes, advertised with its sha256. */
  metadata?: Buffer;
  /** Advertise this sha256 instead of the real one (to simulate a tampered file). */
  advertisedSha256?: string | null;
  /** PEP 700 upload-time on JSON pages (a fixed 2024 time when absent; null: none given). */
  uploadTime?: string | null;
  /** Serve these bytes instead of `bytes` (tampering on the wire). */
  servedBytes?: Buffer;
  /** Absolute URL override for the file link. */
  url?: string;
  /** Answer the file's URL with a 302 to this location (a CDN, or a host that is not allowed). */
  redirectTo?: string;
  /** Its PEP 740 provenance, served at /integrity/<project>/<version>/<filename>/provenance (404 when absent). */
  provenance?: Buffer;
  /** Send the provenance without Content-Length (chunked), so only reading it bounds it. */
  provenanceChunked?: boolean;
  /** Answer the provenance URL with this status (an integrity API failing). */
  provenanceStatus?: number;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/**
 * A local PyPI-shaped index for tests: PEP 503 HTML or PEP 691 JSON pages, files, metadata files,
 * and switches for the failure modes Airlock must survive.
 */
export class FakeIndex {
  readonly projects = new Map<string, FakeFile[]>();
  format: 'html' | 'json' = 'json';
  mode: 'ok' | 'down' | 'garbage' | 'error-page' = 'ok';
  /** Raw HTML to inject into project pages (only in html format). */
  inject = '';
  /** Bytes per second for file bodies; 0 = unthrottled. */
  throttle = 0;
  /** File bodies sent without Content-Length (chunked), as some file hosts and proxies do. */
  noLength = false;
  hits = new Map<string, number>();
  private server?: Server;
  port = 0;

  add(project: string, file: FakeFile): this {
    const list = this.projects.get(project) ?? [];
    list.push(file);
    this.projects.set(project, list);
    return this;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get simpleUrl(): string {
    return `${this.base}/simple/`;
  }

  count(path: string): number {
    return this.hits.get(path) ?? 0;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }

  private fileUrl(f: FakeFile): string {
    return f.url ?? `${this.base}/files/${encodeURIComponent(f.filename)}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent(new URL(req.url!, this.base).pathname);
    this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
    if (this.mode === 'down') {
      res.writeHead(503).end('upstream down');
      return;
    }
    const page = /^\/simple\/([^/]+)\/$/.exec(path);
    if (page) {
      if (this.mode === 'garbage') {
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<html><head><title>Sign in to the guest Wi-Fi</title></head><body>Please log in</body></html>');
        return;
      }
      if (this.mode === 'error-page') {
        res.writeHead(200, { 'content-type': 'application/vnd.pypi.simple.v1+json' }).end('{"message": "internal error"}');
        return;
      }
      const files = this.projects.get(page[1]);
      if (!files) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      if (this.format === 'json') this.json(res, page[1], files);
      else this.html(res, page[1], files);
      return;
    }
    const integrity = /^\/integrity\/([^/]+)\/([^/]+)\/([^/]+)\/provenance$/.exec(path);
    if (integrity) {
      const f = this.projects.get(integrity[1])?.find((x) => x.filename === integrity[3]);
      if (f?.provenanceStatus) {
        res.writeHead(f.provenanceStatus, { 'content-type': 'text/plain' }).end('integrity API failing');
        return;
      }
      if (!f?.provenance) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"message": "No provenance available"}');
        return;
      }
      const ctype = { 'content-type': 'application/vnd.pypi.integrity.v1+json' };
      if (f.provenanceChunked) {
        res.writeHead(200, ctype);
        for (let off = 0; off < f.provenance.length; off += 64 * 1024) res.write(f.provenance.subarray(off, off + 64 * 1024));
        res.end();
      } else res.writeHead(200, { ...ctype, 'content-length': String(f.provenance.length) }).end(f.provenance);
      return;
    }
    const file = /^\/files\/(.+?)(\.metadata)?$/.exec(path);
    if (file) {
      for (const files of this.projects.values()) {
        const f = files.find((x) => x.filename === file[1]);
        if (!f) continue;
        if (f.redirectTo && !file[2]) {
          res.writeHead(302, { location: f.redirectTo }).end();
          return;
        }
        const body = file[2] ? f.metadata : (f.servedBytes ?? f.bytes);
        if (!body) break;
        this.send(req, res, body);
        return;
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }

  private send(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(this.noLength ? {} : { 'content-length': String(body.length) }) });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const rate = this.throttle;
    if (!rate) {
      res.end(body);
      return;
    }
    let off = 0;
    const step = 16 * 1024;
    const tick = () => {
      if (off >= body.length) return res.end();
      res.write(body.subarray(off, off + step));
      off += step;
      if (res.destroyed) return;
      setTimeout(tick, (step / rate) * 1000);
    };
    tick();
  }

  private json(res: ServerResponse, name: string, files: FakeFile[]): void {
    const doc = {
      meta: { 'api-version': '1.1' },
      name,
      versions: [],
      files: files.map((f) => ({
        filename: f.filename,
        url: this.fileUrl(f),
        hashes: f.advertisedSha256 === null ? {} : { sha256: f.advertisedSha256 ?? sha256(f.bytes) },
        'requires-python': f.requiresPython,
        yanked: f.yanked ?? false,
        size: f.bytes.length,
        ...(f.uploadTime === null ? {} : { 'upload-time': f.uploadTime ?? '2024-01-01T00:00:00.000000Z' }),
        ...(f.metadata ? { 'core-metadata': { sha256: sha256(f.metadata) } } : {}),
      })),
    };
    res.writeHead(200, { 'content-type': 'application/vnd.pypi.simple.v1+json', etag: `"${sha256(JSON.stringify(doc))}"` }).end(JSON.stringify(doc));
  }

  private html(res: ServerResponse, name: string, files: FakeFile[]): void {
    const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
    const links = files.map((f) => {
      const hash = f.advertisedSha256 === null ? '' : `#sha256=${f.advertisedSha256 ?? sha256(f.bytes)}`;
      let a = `<a href="${esc(this.fileUrl(f))}${hash}"`;
      if (f.requiresPython) a += ` data-requires-python="${esc(f.requiresPython)}"`;
      if (f.yanked !== undefined && f.yanked !== false) a += f.yanked === true ? ' data-yanked' : ` data-yanked="${esc(f.yanked)}"`;
      if (f.metadata) a += ` data-core-metadata="sha256=${sha256(f.metadata)}"`;
      return `${a}>${esc(f.filename)}</a><br/>`;
    });
    const body = `<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0"><title>Links for ${name}</title>${this.inject}</head><body><h1>Links for ${name}</h1>${links.join('\n')}</body></html>`;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(body);
  }
}
