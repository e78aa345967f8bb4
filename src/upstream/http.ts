import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { AirlockError } from '../core/errors.js';
import { HostSlots, type HostSlotStats, type TransferClass } from './host-slots.js';
import { LargeReadHttpAgent } from './large-reads.js';

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
  /** The URL that finally answered, after redirects. */
  url: URL;
}

export interface GetOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Every hop (the first URL and each redirect) must pass; the proxy never fetches an arbitrary URL. */
  allowUrl: (url: URL) => boolean;
  maxRedirects?: number;
  method?: 'GET' | 'HEAD';
  /**
   * The request is for a blob body (a file, a layer): large unless `size` is known and at most
   * `smallBytes`; large bodies share a host's connections fairly between clients (`client`, the
   * one whose request started the download). Absent: a page, manifest, token or metadata (small).
   */
  transfer?: { size?: number; client?: string };
}

/** One host's connections now, with the host's name (metrics). */
export interface HostQueue extends HostSlotStats {
  host: string;
}

export interface UpstreamHttpOptions {
  /** Time allowed for the response headers. */
  headersTimeoutMs?: number;
  /** Time allowed between two body chunks. */
  bodyTimeoutMs?: number;
  userAgent?: string;
  /** Consecutive failures to reach a host after which it is not asked for a while (0: never). */
  breakerFailures?: number;
  /** How long a host that keeps failing is not asked (then one request tries it again). */
  breakerCooldownMs?: number;
  /** Connections per upstream host (default 64). */
  connectionsPerHost?: number;
  /** Of which at most this many carry large bodies (default 48); the rest are kept for small requests. */
  largePerHost?: number;
  /** A blob body of known size up to this many bytes is small (default 1 MiB). */
  smallBytes?: number;
  /** Longest a request waits for one of its host's connections before a 503 (0: no limit; default 120 s). */
  queueWaitMs?: number;
}

/**
 * A host that keeps failing to answer (connection refused, reset, no headers before the timeout
 * that runs once a connection is the request's) is not asked again for a cooldown: every request would otherwise wait the full timeout before
 * its fallback (a stale page, a cached file) or its error. After the cooldown one request tries
 * the host again; an answer of any status closes the breaker. Waiting for one of the host's
 * connections (all busy with other downloads) is never counted: that host is busy, not failing.
 */
class Breaker {
  private readonly hosts = new Map<string, { failures: number; openUntil: number }>();
  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
  ) {}

  check(host: string): void {
    const h = this.hosts.get(host);
    if (!h || this.threshold <= 0 || h.failures < this.threshold) return;
    const now = Date.now();
    if (now < h.openUntil) {
      throw new AirlockError(
        'UPSTREAM_UNAVAILABLE',
        `upstream ${host} is not being asked: it failed ${h.failures} times in a row; it is tried again in ${Math.ceil((h.openUntil - now) / 1000)} s`,
      );
    }
    // Half-open: this request tries the host; the next ones wait for its answer's verdict.
    h.openUntil = now + this.cooldownMs;
  }

  failed(host: string): void {
    const h = this.hosts.get(host) ?? { failures: 0, openUntil: 0 };
    h.failures++;
    if (h.failures >= this.threshold) h.openUntil = Date.now() + this.cooldownMs;
    this.hosts.set(host, h);
  }

  answered(host: string): void {
    this.hosts.delete(host);
  }

  /** Hosts failing now: consecutive failures, and until when they are not asked (0: still asked). */
  failing(): { host: string; failures: number; openUntil: number }[] {
    return [...this.hosts].map(([host, h]) => ({ host, failures: h.failures, openUntil: h.failures >= this.threshold ? h.openUntil : 0 }));
  }
}

/**
 * The one HTTP client for upstreams: Node's own `http`/`https`, keep-alive agents of 64
 * connections per host (plain-HTTP ones reading up to 1 MiB at a time: upstream/large-reads.ts),
 * handed out by HostSlots (small requests first, large bodies fairly between clients, some
 * connections kept for small requests). Redirects are followed here, hop by hop, each hop
 * checked against the caller's allow rule; credentials never cross to another host.
 *
 * Why not undici (used until issue 17): on this kind of machine a cold 1 GiB body piped through
 * undici's `request` cost 2.5-3.6 CPU-s against 2.0-2.7 through `http.get` (three alternating
 * runs each, same loopback upstream, bench notes in docs/performance.md): undici's parser copies
 * every socket read into its WebAssembly memory, and its bodies left ~70% more page faults.
 */
export class UpstreamHttp {
  private readonly agents: { http: http.Agent; https: https.Agent };
  private readonly headersTimeout: number;
  private readonly bodyTimeout: number;
  private readonly userAgent: string;
  private readonly breaker: Breaker;
  private readonly hosts = new Map<string, HostSlots>();
  private readonly connections: number;
  private readonly largeMax: number;
  private readonly smallBytes: number;
  private readonly queueWaitMs: number;
  private readonly waitListeners: ((host: string, cls: TransferClass, seconds: number) => void)[] = [];

  constructor(opts: UpstreamHttpOptions = {}) {
    this.breaker = new Breaker(opts.breakerFailures ?? 3, opts.breakerCooldownMs ?? 15_000);
    this.connections = Math.max(2, opts.connectionsPerHost ?? 64);
    this.largeMax = Math.max(1, Math.min(opts.largePerHost ?? 48, this.connections - 1));
    this.smallBytes = opts.smallBytes ?? 1 << 20;
    this.queueWaitMs = opts.queueWaitMs ?? 120_000;
    const agent = { keepAlive: true, maxSockets: this.connections, maxFreeSockets: 16, scheduling: 'lifo' as const };
    this.agents = { http: new LargeReadHttpAgent(agent), https: new https.Agent(agent) };
    this.headersTimeout = opts.headersTimeoutMs ?? 30_000;
    this.bodyTimeout = opts.bodyTimeoutMs ?? 60_000;
    this.userAgent = opts.userAgent ?? 'airlock/0.1';
  }

  async get(url: URL, opts: GetOptions): Promise<UpstreamResponse> {
    let current = url;
    let headers: Record<string, string> = { 'user-agent': this.userAgent, ...(opts.headers ?? {}) };
    const max = opts.maxRedirects ?? 5;
    const method = opts.method ?? 'GET';
    const t = opts.transfer;
    // A body of undeclared size starts as small and moves to a large share once its response says it is large (request()).
    const cls: TransferClass | 'unknown' = method === 'GET' && t ? (t.size === undefined ? 'unknown' : t.size <= this.smallBytes ? 'small' : 'large') : 'small';
    for (let hop = 0; ; hop++) {
      if (!opts.allowUrl(current)) {
        throw new AirlockError(
          'UPSTREAM_HOST_NOT_ALLOWED',
          `refusing to fetch ${redact(current)}: host ${current.host} is not a configured upstream or file host`,
        );
      }
      let res: IncomingMessage;
      this.breaker.check(current.host);
      const attempt = () => this.request(current, method, headers, cls, t?.client ?? '', opts.signal);
      try {
        res = await attempt().catch((e: Error & { staleSocket?: boolean }) => {
          // A pooled connection the server closed as it was reused: GET and HEAD are safe to send
          // again, once, on a new connection (what Node's documentation advises for reusedSocket).
          if (!e.staleSocket || opts.signal?.aborted) throw e;
          return attempt();
        });
      } catch (e) {
        // Waiting for a connection (busy, or cancelled there) says nothing about the host.
        if (e instanceof AirlockError) throw e;
        // Nor does a request the caller cancelled; only what happened once a socket was the request's counts.
        if (!opts.signal?.aborted && (e as HostFault).hostFault) this.breaker.failed(current.host);
        throw new AirlockError('UPSTREAM_UNAVAILABLE', `upstream ${current.host} unreachable: ${(e as Error).message}`, { cause: e });
      }
      this.breaker.answered(current.host);
      const status = res.statusCode ?? 0;
      const loc = res.headers.location;
      if (status >= 300 && status < 400 && typeof loc === 'string') {
        res.resume();
        if (hop >= max) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `too many redirects from ${redact(url)}`);
        const next = new URL(loc, current);
        if (next.host !== current.host && headers.authorization) {
          const { authorization: _drop, ...rest } = headers;
          headers = rest;
        }
        current = next;
        continue;
      }
      return { status, headers: distinct(res), body: res, url: current };
    }
  }

  /**
   * One request: a connection of the host taken from its HostSlots (held until the response body
   * is over), then its response once the headers are in. The headers timeout runs from when a
   * socket is the request's (connecting, sending, the host thinking), never while it waits for
   * one. Errors from then on are the host's (`hostFault`). Between two body chunks at most
   * bodyTimeout may pass (the socket's own idle timer, refreshed by Node on every read: no timer
   * per chunk); the body then fails. The timer is cleared when the body ends, so an idle pooled
   * connection is not cut by it.
   */
  private async request(
    url: URL,
    method: string,
    headers: Record<string, string>,
    asked: TransferClass | 'unknown',
    client: string,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const cls = asked === 'unknown' ? 'small' : asked;
    const started = performance.now();
    const slots = this.slotsFor(url.host);
    let release = await slots.acquire(cls, client, { signal, waitMs: this.queueWaitMs });
    const tls = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      let req: http.ClientRequest;
      try {
        req = (tls ? https : http).request(url, { method, headers, agent: tls ? this.agents.https : this.agents.http, signal });
      } catch (e) {
        release();
        throw e;
      }
      let timer: NodeJS.Timeout | undefined;
      let assigned = false;
      // A response or an error came (a close after either is not a failure of its own).
      let settled = false;
      req.once('socket', () => {
        assigned = true;
        const waited = (performance.now() - started) / 1000;
        for (const l of this.waitListeners) l(url.host, cls, waited);
        timer = setTimeout(() => req.destroy(new Error(`no response headers within ${this.headersTimeout} ms`)), this.headersTimeout);
        timer.unref();
      });
      req.once('error', (e: NodeJS.ErrnoException & HostFault & { rawPacket?: unknown }) => {
        settled = true;
        clearTimeout(timer);
        // A parse error's raw bytes are a view of the read buffer all connections share (large-reads.ts).
        delete e.rawPacket;
        release();
        if (req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) e.staleSocket = true;
        if (assigned) e.hostFault = true;
        reject(e);
      });
      // Closed with neither a response nor an error: Node's client does that to a 101 (an upgrade
      // nobody asked for). Without this the request would wait forever, holding its host slot.
      req.once('close', () => {
        if (settled) return;
        clearTimeout(timer);
        release();
        reject(Object.assign(new Error('upstream closed the connection without a usable response'), { hostFault: assigned }));
      });
      req.once('response', (res) => {
        settled = true;
        clearTimeout(timer);
        const status = res.statusCode ?? 0;
        const length = Number(res.headers['content-length'] ?? NaN);
        if (asked === 'unknown' && status >= 200 && status < 300 && !(length <= this.smallBytes)) {
          // A large body (or one of no stated length) on a small connection: it keeps the connection
          // as a large one if one is free and nobody waits for it, else asks again as large (fair queue).
          const large = slots.promote(client);
          if (!large) {
            res.destroy();
            release();
            resolve(this.request(url, method, headers, 'large', client, signal));
            return;
          }
          release = large;
        }
        // The connection is the request's until its body is over (read to its end, or destroyed).
        res.once('end', release);
        res.once('close', release);
        const socket = res.socket;
        const idle = () => res.destroy(new Error(`no body bytes for ${this.bodyTimeout} ms`));
        socket.setTimeout(this.bodyTimeout, idle);
        // Cleared at the body's end, before the agent takes the socket back into its pool (a tick
        // later): a pooled connection waiting for its next request is not cut by a body timer.
        res.once('end', () => {
          socket.setTimeout(0);
          socket.off('timeout', idle);
        });
        res.once('close', () => socket.off('timeout', idle));
        // An error after the headers belongs to the body (its reader sees it), not to the request.
        req.on('error', () => {});
        resolve(res);
      });
      req.end();
    });
  }

  private slotsFor(host: string): HostSlots {
    let s = this.hosts.get(host);
    if (!s) {
      s = new HostSlots(host, this.connections, this.largeMax);
      this.hosts.set(host, s);
    }
    return s;
  }

  /** Each host's connections in use and requests waiting for one (metrics). */
  queues(): HostQueue[] {
    const out: HostQueue[] = [];
    for (const [host, s] of this.hosts) {
      if (s.idle()) this.hosts.delete(host);
      else out.push({ host, ...s.stats() });
    }
    return out;
  }

  /** Called with each request's wait for a connection of its host, in seconds (metrics). */
  onQueueWait(listener: (host: string, cls: TransferClass, seconds: number) => void): void {
    this.waitListeners.push(listener);
  }

  /** Upstream hosts that failed to answer their last requests (the console's overview). */
  failing(): { host: string; failures: number; openUntil: number }[] {
    return this.breaker.failing();
  }

  async close(): Promise<void> {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/** An error once the request had its socket: connect refused or reset, no headers in time (the breaker counts it). */
interface HostFault {
  hostFault?: boolean;
  staleSocket?: boolean;
}

/** Response headers as undici gave them: a repeated header (several challenges) as an array. */
function distinct(res: IncomingMessage): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(res.headersDistinct)) if (v) out[k] = v.length === 1 ? v[0] : v;
  return out;
}

/** Read a body as text, refusing more than maxBytes (a multi-MB index page is fine; 1 GB is not). */
export async function readBounded(body: Readable, maxBytes: number, deadlineMs?: number): Promise<string> {
  return (await readBoundedBytes(body, maxBytes, deadlineMs)).toString('utf8');
}

/**
 * Time a whole page or manifest body may take: a host that drips a page a few bytes at a time
 * never trips the between-chunks timeout, and every request for that page would wait on it.
 */
export const PAGE_DEADLINE_MS = 120_000;

/** Read a body whole as bytes, refusing more than maxBytes or taking longer than deadlineMs. */
export async function readBoundedBytes(body: Readable, maxBytes: number, deadlineMs = PAGE_DEADLINE_MS): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    body.destroy();
  }, deadlineMs);
  timer.unref();
  const tooLate = () =>
    new AirlockError('UPSTREAM_UNAVAILABLE', `upstream response took longer than ${Math.round(deadlineMs / 1000)} s (${n} bytes read); cut`);
  try {
    for await (const chunk of body) {
      n += (chunk as Buffer).length;
      if (n > maxBytes) {
        body.destroy();
        throw new AirlockError('UPSTREAM_BAD_RESPONSE', `upstream response exceeds ${maxBytes} bytes`);
      }
      parts.push(chunk as Buffer);
    }
  } catch (e) {
    throw late ? tooLate() : e;
  } finally {
    clearTimeout(timer);
  }
  // A destroyed body may also just end: the deadline still decides.
  if (late) throw tooLate();
  return Buffer.concat(parts);
}

export function header(h: UpstreamResponse['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export function contentLength(h: UpstreamResponse['headers']): number | undefined {
  const v = header(h, 'content-length');
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** A host against a configured pattern: exact (host or host:port), or "*.domain" for its subdomains. */
export function hostMatches(pattern: string, host: string): boolean {
  const h = host.toLowerCase();
  const p = pattern.toLowerCase();
  return p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
}

/**
 * May an upstream client follow this URL? HTTPS (or plain HTTP when the upstream itself is plain
 * HTTP, as on loopback), to the upstream's own host (`sameHost`) or a host matching a pattern.
 */
export function upstreamUrlAllowed(u: URL, base: URL, patterns: string[], sameHost: (u: URL) => boolean = (x) => x.host === base.host): boolean {
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && base.protocol === 'http:')) return false;
  return sameHost(u) || patterns.some((p) => hostMatches(p, u.host));
}

/** A URL without userinfo or query, safe for logs and error messages. */
export function redact(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}
