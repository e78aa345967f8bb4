import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What an upstream does wrong, once, to the next request whose path contains the fault's key. */
export type Fault =
  /** Headers, half the body, then a TCP reset. */
  | 'reset'
  /** Headers with the full length, half the body, then a clean close. */
  | 'truncate'
  /** The full body with one byte flipped. */
  | 'flip'
  /** Another file's bytes (same length). */
  | 'wrong-file'
  /** A Content-Length 100 bytes longer than the body, then a close. */
  | 'long'
  /** A Content-Length 100 bytes shorter, and only that many bytes: a clean but short response. */
  | 'short'
  | '5xx'
  /** Headers, then nothing at all. */
  | 'stall'
  /** 100 bytes every 100 ms. */
  | 'drip'
  /** A redirect to a host no configuration allows. */
  | 'redirect-away'
  /** A redirect to itself, for ever. */
  | 'loop';

export const FAULTS: Fault[] = ['reset', 'truncate', 'flip', 'wrong-file', 'long', 'short', '5xx', 'stall', 'drip', 'redirect-away', 'loop'];

/**
 * An HTTP proxy in front of a fake upstream that injects faults on the wire. It rewrites the
 * listed host:port pairs in Location headers and text bodies (so file links and CDN redirects
 * keep going through proxies), forwards everything else untouched, and counts what it injected.
 */
export class FaultProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private readonly pending: { key: string; fault: Fault }[] = [];
  readonly injected = new Map<Fault, number>();
  port = 0;

  constructor(
    private readonly target: string,
    /** "127.0.0.1:1234" -> "127.0.0.1:5678" */
    readonly rewrite: Map<string, string> = new Map(),
    /** Forward the client's Host header (signed S3 requests cover it). */
    private readonly keepHost = false,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Inject `fault` into the next request whose path contains `key`. */
  inject(key: string, fault: Fault): void {
    this.pending.push({ key, fault });
  }

  /** Drop faults not yet injected. */
  clear(): void {
    this.pending.length = 0;
  }

  total(): number {
    let n = 0;
    for (const v of this.injected.values()) n += v;
    return n;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  private rewriteText(s: string): string {
    for (const [from, to] of this.rewrite) s = s.split(from).join(to);
    return s;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    // A loop, once started, goes on for every hop of that request (marked in the query).
    if (path.includes('faultloop='))
      return void res.writeHead(302, { location: path.replace(/faultloop=(\d+)/, (_, n) => `faultloop=${Number(n) + 1}`) }).end();
    const i = this.pending.findIndex((p) => path.includes(p.key));
    const fault = i >= 0 ? this.pending.splice(i, 1)[0].fault : undefined;
    if (fault) this.injected.set(fault, (this.injected.get(fault) ?? 0) + 1);
    if (fault === '5xx') return void res.writeHead(503, { 'content-type': 'text/plain' }).end('injected: service unavailable');
    if (fault === 'redirect-away') return void res.writeHead(302, { location: 'http://evil.example:8080/payload' }).end();
    if (fault === 'loop') return void res.writeHead(302, { location: `${path}${path.includes('?') ? '&' : '?'}faultloop=1` }).end();
    const t = new URL(this.target);
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path, headers: this.keepHost ? req.headers : { ...req.headers, host: t.host } },
      (ur) => {
        // Nothing to change: stream it through as the upstream sends it (throttled fakes stay throttled).
        if (!fault && !/json|html|text/.test(String(ur.headers['content-type'] ?? '')) && !ur.headers.location) {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
          res.on('close', () => ur.destroy());
          return;
        }
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => this.answer(res, ur, Buffer.concat(chunks), fault));
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  private answer(res: ServerResponse, ur: IncomingMessage, body: Buffer, fault: Fault | undefined): void {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection') headers[k] = v;
    if (typeof headers.location === 'string') headers.location = this.rewriteText(headers.location);
    const type = String(headers['content-type'] ?? '');
    if (/json|html|text/.test(type) && this.rewrite.size) body = Buffer.from(this.rewriteText(body.toString('utf8')));
    const status = ur.statusCode ?? 502;
    // Faults apply to bodies worth faulting; anything else (redirects, errors, HEAD) passes.
    if (!fault || status !== 200 || body.length < 200) {
      headers['content-length'] = String(body.length);
      return void res.writeHead(status, headers).end(body);
    }
    const half = body.subarray(0, body.length >> 1);
    headers['content-length'] = String(body.length);
    switch (fault) {
      case 'reset':
        res.writeHead(200, headers);
        res.write(half, () => res.socket?.resetAndDestroy());
        return;
      case 'truncate':
        res.writeHead(200, headers);
        res.write(half, () => res.socket?.end());
        return;
      case 'flip': {
        const b = Buffer.from(body);
        b[b.length >> 2] ^= 0x40;
        return void res.writeHead(200, headers).end(b);
      }
      case 'wrong-file':
        return void res.writeHead(200, headers).end(randomBytes(body.length));
      case 'long':
        headers['content-length'] = String(body.length + 100);
        res.writeHead(200, headers);
        res.write(body, () => res.socket?.end());
        return;
      case 'short':
        headers['content-length'] = String(body.length - 100);
        return void res.writeHead(200, headers).end(body.subarray(0, body.length - 100));
      case 'stall':
        res.writeHead(200, headers);
        res.flushHeaders();
        return;
      case 'drip': {
        res.writeHead(200, headers);
        let off = 0;
        const t = setInterval(() => {
          if (res.destroyed || off >= body.length) return clearInterval(t);
          res.write(body.subarray(off, off + 100));
          off += 100;
        }, 100);
        res.on('close', () => clearInterval(t));
        return;
      }
    }
  }
}
