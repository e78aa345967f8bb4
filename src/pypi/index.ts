import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import { SingleFlight } from '../core/flight.js';
import type { Metrics } from '../obs/metrics.js';
import type { PageCache } from '../storage/meta-store.js';
import { header, readBounded, redact, type UpstreamHttp } from '../upstream/http.js';
import { HTML_V1, JSON_V1, TEXT_HTML } from './accept.js';
import type { PyProject } from './model.js';
import { parseHtmlPage, parseJsonPage } from './parse.js';

export type IndexSource = 'public' | 'internal';

export interface IndexOptions {
  http: UpstreamHttp;
  meta: PageCache;
  metrics: Metrics;
  log: Logger;
  publicUrl: string;
  internalUrl?: string;
  /** Hosts (host or host:port) that file URLs may point at, besides the index's own host. */
  fileHosts: string[];
  ttlSeconds: number;
  maxPageBytes: number;
  now?: () => number;
}

export interface ProjectPage {
  project: PyProject;
  fetchedAt: number;
  /** Served from cache because the upstream failed. */
  stale: boolean;
  staleReason?: string;
}

const UPSTREAM_ACCEPT = `${JSON_V1}, ${HTML_V1};q=0.2, ${TEXT_HTML};q=0.01`;
const MEMO_LIMIT = 512;

/**
 * Project pages from the public and internal indexes: fetched, parsed into the model, cached
 * (SQLite) with a TTL and ETag revalidation, and served stale when the upstream fails.
 * Concurrent requests for the same page share one upstream request.
 */
export class PypiIndex {
  private readonly inflight = new SingleFlight<string, ProjectPage>();
  /** Parsed pages by key, so a warm page is not re-parsed from SQLite on every request. */
  private readonly memo = new Map<string, { fetchedAt: number; project: PyProject }>();
  private readonly now: () => number;
  private readonly fileHosts: Set<string>;

  constructor(private readonly o: IndexOptions) {
    this.now = o.now ?? Date.now;
    this.fileHosts = new Set(o.fileHosts.map((h) => h.toLowerCase()));
  }

  baseUrl(source: IndexSource): string {
    if (source === 'internal') {
      if (!this.o.internalUrl) throw new AirlockError('NOT_FOUND', 'no internal index is configured (pypi.internal)');
      return this.o.internalUrl;
    }
    return this.o.publicUrl;
  }

  /** Whether Airlock may fetch a file URL that a page of `source` points at. */
  allowFileUrl(url: URL, source: IndexSource): boolean {
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
    if (url.username || url.password) return false;
    const indexHost = new URL(this.baseUrl(source)).host.toLowerCase();
    const host = url.host.toLowerCase();
    return host === indexHost || this.fileHosts.has(host) || this.fileHosts.has(url.hostname.toLowerCase());
  }

  /** The page if it is parsed in memory and within its TTL, at once; otherwise null (ask project()). */
  warm(name: string, source: IndexSource): ProjectPage | null {
    const memo = this.memo.get(`pypi:${source}:${name}`);
    if (memo && this.now() - memo.fetchedAt < this.o.ttlSeconds * 1000) {
      return { project: memo.project, fetchedAt: memo.fetchedAt, stale: false };
    }
    return null;
  }

  async project(name: string, source: IndexSource): Promise<ProjectPage> {
    const warm = this.warm(name, source);
    if (warm) return warm;
    const key = `pypi:${source}:${name}`;
    return this.inflight.run(key, () => this.load(key, name, source));
  }

  private remember(key: string, fetchedAt: number, project: PyProject): void {
    this.memo.delete(key);
    this.memo.set(key, { fetchedAt, project });
    if (this.memo.size > MEMO_LIMIT) this.memo.delete(this.memo.keys().next().value!);
  }

  private async load(key: string, name: string, source: IndexSource): Promise<ProjectPage> {
    const cached = await this.o.meta.getPage(key);
    const cachedProject = (): PyProject => {
      const m = this.memo.get(key);
      return m && m.fetchedAt === cached!.fetchedAt ? m.project : (JSON.parse(cached!.body) as PyProject);
    };
    if (cached && this.now() - cached.fetchedAt < this.o.ttlSeconds * 1000) {
      const project = cachedProject();
      this.remember(key, cached.fetchedAt, project);
      return { project, fetchedAt: cached.fetchedAt, stale: false };
    }
    const pageUrl = new URL(`${encodeURIComponent(name)}/`, this.baseUrl(source));
    const started = performance.now();
    try {
      const res = await this.o.http.get(pageUrl, {
        headers: { accept: UPSTREAM_ACCEPT, ...(cached?.etag ? { 'if-none-match': cached.etag } : {}) },
        // Pages may redirect only within their own index host.
        allowUrl: (u) => u.host === pageUrl.host && (u.protocol === 'https:' || u.protocol === 'http:'),
      });
      this.o.metrics.upstreamLatency.observe({ ecosystem: 'pypi', kind: 'page', outcome: String(res.status) }, (performance.now() - started) / 1000);
      if (res.status === 304 && cached) {
        res.body.resume();
        const fetchedAt = this.now();
        await this.o.meta.putPage({ ...cached, fetchedAt });
        const project = cachedProject();
        this.remember(key, fetchedAt, project);
        return { project, fetchedAt, stale: false };
      }
      if (res.status === 404) {
        res.body.resume();
        throw new AirlockError('NOT_FOUND', `${source} index has no project ${name}`);
      }
      if (res.status !== 200) {
        res.body.resume();
        throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${source} index answered ${res.status} for ${redact(pageUrl)}`);
      }
      const ctype = (header(res.headers, 'content-type') ?? '').split(';')[0].trim().toLowerCase();
      const text = await readBounded(res.body, this.o.maxPageBytes);
      let project: PyProject;
      if (ctype === JSON_V1) project = parseJsonPage(text, res.url, name);
      else if (ctype === HTML_V1 || ctype === TEXT_HTML) project = parseHtmlPage(text, res.url, name);
      else throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${source} index answered content type ${JSON.stringify(ctype)}, which is not a simple-index page`);
      const fetchedAt = this.now();
      await this.o.meta.putPage({ key, body: JSON.stringify(project), fetchedAt, etag: header(res.headers, 'etag') ?? null });
      this.remember(key, fetchedAt, project);
      return { project, fetchedAt, stale: false };
    } catch (e) {
      const err = e as AirlockError;
      if (err.code === 'NOT_FOUND' || !cached) throw e;
      // Upstream down or answering garbage: the last good page keeps clients working.
      this.o.metrics.stalePages.inc({ ecosystem: 'pypi' });
      this.o.log.warn({ ecosystem: 'pypi', name, source, err: err.message, fetchedAt: cached.fetchedAt }, 'upstream failed; serving last good page');
      const project = cachedProject();
      this.remember(key, cached.fetchedAt - this.o.ttlSeconds * 1000, project);
      return { project, fetchedAt: cached.fetchedAt, stale: true, staleReason: err.message };
    }
  }
}
