import type { IncomingMessage, ServerResponse } from 'node:http';
import { PYPI } from './frontend.js';
import { gzipSync } from 'node:zlib';
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import type { FillSpec } from '../core/fill.js';
import type { BlobCache } from '../core/cache.js';
import type { Recorder } from '../core/records.js';
import { serveBlob } from '../http/serve-blob.js';
import { errorHandler, Refusal, type RefusalRow } from '../http/refusal.js';
import { clientAddress, sendBytes, sendStream, type AppEnv } from '../http/send.js';
import type { Policy } from '../policy/index.js';
import type { RefusalCode } from '../policy/types.js';
import { contentLength, type UpstreamHttp } from '../upstream/http.js';
import { negotiate, JSON_V1, type SimpleFormat } from './accept.js';
import { admitFile } from './admit.js';
import { parseFilename } from './filenames.js';
import { newestRelease } from './newest.js';
import { filterProject } from './filter.js';
import type { FilteredProject } from './model.js';
import { isValidFilename, isValidProjectName, normalizeName } from '../names/pypi.js';
import type { IndexSource, ProjectPage, PypiIndex } from './index.js';
import type { FastAnswer } from '../http/fast.js';
import { renderHtml, renderJson, renderRootHtml, renderRootJson } from './render.js';

export interface PypiDeps {
  policy: () => Policy;
  index: PypiIndex;
  cache: BlobCache;
  http: UpstreamHttp;
  recorder: Recorder;
  log: Logger;
  /** Seconds clients may cache a project page. */
  pageMaxAge: number;
}

/** HTTP reason phrases carry the policy's reason too: pip prints them ("403 Client Error: <reason>"). */
function reasonPhrase(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}

function refuse(c: Context<AppEnv>, status: number, message: string): Response {
  const outgoing = c.env?.outgoing;
  if (outgoing) outgoing.statusMessage = reasonPhrase(message);
  return c.text(`${message}\n`, status as 400, { 'x-airlock-reason': reasonPhrase(message), 'cache-control': 'no-store' });
}

/** Whether Accept-Encoding admits gzip (q > 0). Index pages are served gzipped to clients that ask (pip, uv do). */
function acceptsGzip(h: string | undefined): boolean {
  if (!h) return false;
  return h.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding.trim() !== 'gzip' && coding.trim() !== 'x-gzip') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return !q || Number(q.slice(2)) > 0;
  });
}

/** A project page by its name, as the fast path takes it: no query, nothing after the slash. */
const PAGE_PATH = new RegExp(`^${PYPI.prefix}/simple/([^/?#]+)/$`);

type PageRequest =
  | { kind: 'bad-name' }
  | { kind: 'redirect'; name: string }
  | { kind: 'not-acceptable' }
  | { kind: 'denied'; name: string; rule: string; code: RefusalCode; reason: string }
  | { kind: 'page'; name: string; format: SimpleFormat; policy: Policy; source: IndexSource; rule: string };

const CONTENT_TYPE: Record<SimpleFormat, string> = {
  'application/vnd.pypi.simple.v1+json': 'application/vnd.pypi.simple.v1+json',
  'application/vnd.pypi.simple.v1+html': 'application/vnd.pypi.simple.v1+html; charset=utf-8',
  'text/html': 'text/html; charset=utf-8',
};

/**
 * The PyPI front-end, mounted at /pypi: the simple API (PEP 503/691) at /pypi/simple/ and
 * verified file downloads at /pypi/files/<project>/<filename>. Thin: parse, ask policy,
 * fetch through the core, answer in PyPI's format. A factory of small handlers closing over one
 * set of dependencies (decisions in admit.ts and filter.ts, rendering in render.ts).
 */
export function createPypiApp(d: PypiDeps): { app: Hono<AppEnv>; fast: FastAnswer } {
  const app = new Hono<AppEnv>();
  // Rendered pages (bytes, and gzip on demand), per parsed page object and policy object: a warm
  // page costs two WeakMap lookups; the 5,000-file row of the benchmark measures it.
  type Rendered = { filtered: FilteredProject; bodies: Partial<Record<'json' | 'html' | 'json.gz' | 'html.gz', Buffer>> };
  const rendered = new WeakMap<object, WeakMap<object, Rendered>>();
  const bodyOf = (entry: Rendered, kind: 'json' | 'html', gzip: boolean): Buffer => {
    const plain = (entry.bodies[kind] ??= Buffer.from(kind === 'json' ? renderJson(entry.filtered) : renderHtml(entry.filtered)));
    if (!gzip) return plain;
    return (entry.bodies[`${kind}.gz`] ??= gzipSync(plain, { level: 6 }));
  };
  const maxAge = `max-age=${d.pageMaxAge}`;
  /** A project page's body and headers, for the route below and for the fast path alike. */
  const pageAnswer = (
    page: ProjectPage,
    policy: Policy,
    format: SimpleFormat,
    acceptEncoding: string | undefined,
  ): { headers: Record<string, string>; body: Buffer } => {
    let perPolicy = rendered.get(page.project);
    if (!perPolicy) rendered.set(page.project, (perPolicy = new WeakMap()));
    let entry = perPolicy.get(policy);
    if (!entry) perPolicy.set(policy, (entry = { filtered: filterProject(page.project, policy), bodies: {} }));
    const gzip = acceptsGzip(acceptEncoding);
    const body = bodyOf(entry, format === JSON_V1 ? 'json' : 'html', gzip);
    const headers: Record<string, string> = { 'content-type': CONTENT_TYPE[format], vary: 'Accept, Accept-Encoding', 'cache-control': maxAge };
    if (gzip) headers['content-encoding'] = 'gzip';
    if (page.stale) {
      headers['x-airlock-stale'] = `upstream failed (${reasonPhrase(page.staleReason ?? '')}); page fetched ${new Date(page.fetchedAt).toISOString()}`;
      headers['cache-control'] = 'no-store';
    }
    return { headers, body };
  };

  /**
   * What a request for a project page asks for, decided in one place for the route and the fast
   * path in the order the route answers: a bad name (400), a name to normalise (301), no offered
   * format (406), a name the policy refuses (403), or the page to serve. The fast path serves only
   * the last, so it can never serve what the route would refuse.
   */
  const pageRequest = (raw: string, accept: string | undefined, formatQuery: string | undefined): PageRequest => {
    if (!isValidProjectName(raw)) return { kind: 'bad-name' };
    const name = normalizeName(raw);
    if (name !== raw) return { kind: 'redirect', name };
    const format = negotiate(accept, formatQuery);
    if (!format) return { kind: 'not-acceptable' };
    const policy = d.policy();
    const decision = policy.pypi.decideProject(name);
    if (!decision.allow) return { kind: 'denied', name, rule: decision.rule, code: decision.code, reason: decision.reason };
    return { kind: 'page', name, format, policy, source: decision.source, rule: decision.rule };
  };

  /**
   * The fast path (src/http/fast.ts) for the most frequent request pip makes: a GET of a project
   * page that is parsed in memory, allowed, and asked for by its normalised name without a query.
   * Anything else, refusals and redirects included, returns false and takes the route below.
   */
  const answer = (req: IncomingMessage, res: ServerResponse): boolean => {
    const m = PAGE_PATH.exec(req.url ?? '');
    if (!m) return false;
    const r = pageRequest(m[1], req.headers.accept, undefined);
    if (r.kind !== 'page') return false;
    const page = d.index.warm(r.name, r.source);
    if (!page) return false;
    const a = pageAnswer(page, r.policy, r.format, req.headers['accept-encoding']);
    a.headers['content-length'] = String(a.body.length);
    res.writeHead(200, a.headers);
    res.end(a.body);
    return true;
  };
  const fast: FastAnswer = Object.assign(answer, { path: PAGE_PATH });

  app.get('/simple', (c) => c.redirect(`${PYPI.prefix}/simple/`, 301));

  app.get('/simple/', (c) => {
    const format = negotiate(c.req.header('accept'), c.req.query('format'));
    if (!format) return refuse(c, 406, 'none of the media types in Accept is offered: use application/vnd.pypi.simple.v1+json or text/html');
    const names = d.policy().pypi.listedNames();
    const body = format === JSON_V1 ? renderRootJson(names) : renderRootHtml(names);
    return c.body(body, 200, { 'content-type': CONTENT_TYPE[format], vary: 'Accept', 'cache-control': `max-age=${d.pageMaxAge}` });
  });

  app.get('/simple/:name', (c) => {
    const raw = c.req.param('name');
    if (!isValidProjectName(raw)) throw new AirlockError('BAD_REQUEST', 'invalid project name: expected a PEP 508 name');
    return c.redirect(`${PYPI.prefix}/simple/${normalizeName(raw)}/`, 301);
  });

  app.get('/simple/:name/', async (c) => {
    const r = pageRequest(c.req.param('name'), c.req.header('accept'), c.req.query('format'));
    switch (r.kind) {
      case 'bad-name':
        throw new AirlockError('BAD_REQUEST', 'invalid project name: expected a PEP 508 name');
      case 'redirect':
        return c.redirect(`${PYPI.prefix}/simple/${r.name}/`, 301);
      case 'not-acceptable':
        return refuse(c, 406, 'none of the media types in Accept is offered: use application/vnd.pypi.simple.v1+json or text/html');
      case 'denied':
        // The refusal pip meets first ("No matching distribution"): on record like a refused file.
        throw new Refusal({ status: 403, code: r.code, rule: r.rule, reason: r.reason, row: { name: r.name, version: await askedFor(c, r) } });
    }
    const page = await loadPage(r.source, r.rule, { name: r.name });
    const a = pageAnswer(page, r.policy, r.format, c.req.header('accept-encoding'));
    return sendBytes(c, 200, a.headers, a.body);
  });

  /**
   * The version a refused page stands for. pip names none, so a project that is only missing from
   * the allowlist records the release pip would have taken (the public index's newest final
   * release, looked up for at most 2 s and never served): its approval is then a pin of it. A
   * project the policy denies records none (nothing to pin), nor does a HEAD.
   */
  async function askedFor(c: Context<AppEnv>, r: PageRequest & { kind: 'denied' }): Promise<string | null> {
    if (r.code !== 'not_allowlisted' || c.req.method === 'HEAD') return null;
    let timer: NodeJS.Timeout | undefined;
    try {
      const page = await Promise.race([d.index.project(r.name, 'public'), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 2000)))]);
      return page ? newestRelease(page.project.files, r.name) : null;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The page for a project, mapping "internal index lacks it" to the refusal it must be (dependency confusion). */
  async function loadPage(source: IndexSource, rule: string, row: RefusalRow) {
    const name = row.name;
    try {
      return await d.index.project(name, source);
    } catch (e) {
      if (e instanceof AirlockError && e.code === 'NOT_FOUND') {
        if (source === 'internal') {
          throw new Refusal({
            status: 403,
            code: 'internal_missing',
            rule,
            reason: `${name} is an internal name (policy rule ${rule}) but the internal index has no such project; the public project of that name is never served`,
            row,
          });
        }
        throw new AirlockError('NOT_FOUND', `the upstream index has no project ${name}`);
      }
      throw e;
    }
  }

  app.get('/files/:name/:filename', async (c) => {
    const name = c.req.param('name');
    const requested = c.req.param('filename');
    if (!isValidProjectName(name) || normalizeName(name) !== name) throw new AirlockError('BAD_REQUEST', 'invalid project name in file URL');
    if (!isValidFilename(requested)) throw new AirlockError('BAD_REQUEST', 'invalid filename in file URL');
    const isMetadata = requested.endsWith('.metadata');
    const filename = isMetadata ? requested.slice(0, -'.metadata'.length) : requested;
    const client = clientAddress(c);
    const requestId = c.get('requestId');
    const isHead = c.req.method === 'HEAD';
    const base = { ts: Date.now(), client, ecosystem: 'pypi' as const, name, filename: requested, requestId };
    // The version the file name gives: what a refusal's approval pins (the file may not be on any page).
    const named = parseFilename(filename, name);
    const row: RefusalRow = { name, filename: requested, version: named?.name === name ? named.version : null };

    const policy = d.policy();
    const pd = policy.pypi.decideProject(name);
    if (!pd.allow) throw new Refusal({ status: 403, code: pd.code, rule: pd.rule, reason: pd.reason, row });
    const page = await loadPage(pd.source, pd.rule, row);
    const file = page.project.files.find((f) => f.filename === filename);
    if (!file) return refuse(c, 404, `${filename} is not a file of ${name} on the ${pd.source} index`);
    // The same decision that put the file on the page (admit.ts).
    const fd = admitFile(policy, name, file, pd.source);
    if (!fd.allow) {
      if (fd.status === 404) return refuse(c, 404, fd.reason);
      throw new Refusal({ status: 403, code: fd.code, rule: fd.rule, reason: fd.reason, row: { ...row, version: fd.version, sha256: fd.sha256 } });
    }
    const parsed = { version: fd.version };
    const sha = fd.sha256;
    let expected: string;
    let expectedSize: number | undefined;
    if (isMetadata) {
      const mdSha = file.coreMetadata && file.coreMetadata !== true ? file.coreMetadata.sha256 : undefined;
      if (!mdSha) return refuse(c, 404, `${filename} has no verifiable core metadata (PEP 658) on the ${pd.source} index`);
      expected = mdSha;
    } else {
      expected = sha;
      expectedSize = file.size;
    }
    const upstreamUrl = new URL(file.url + (isMetadata ? '.metadata' : ''));
    if (!d.index.allowFileUrl(upstreamUrl, pd.source)) {
      const reason = `${filename}: the index points at host ${upstreamUrl.host}, which is not in pypi.file_hosts`;
      throw new Refusal({ status: 502, code: 'file_host', rule: 'pypi.file_hosts', reason, row: { ...row, version: parsed.version, sha256: expected } });
    }

    const headers: Record<string, string> = {
      'content-type': isMetadata ? 'text/plain; charset=utf-8' : 'application/octet-stream',
      'accept-ranges': 'bytes',
      etag: `"${expected}"`,
      'cache-control': 'public, max-age=31536000, immutable',
      'x-airlock-sha256': expected,
    };
    if (isHead) {
      const size = (await d.cache.cachedSize(expected)) ?? expectedSize;
      if (size !== undefined) headers['content-length'] = String(size);
      return sendStream(c, 200, headers, null);
    }

    const spec: FillSpec = {
      sha256: expected,
      size: expectedSize,
      open: async (signal) => {
        const res = await d.http.get(upstreamUrl, { signal, allowUrl: (u) => d.index.allowFileUrl(u, pd.source) });
        if (res.status !== 200) {
          res.body.resume();
          throw new AirlockError('UPSTREAM_BAD_RESPONSE', `upstream answered ${res.status} for ${filename}`);
        }
        return { body: res.body, size: contentLength(res.headers) };
      },
    };
    return serveBlob(c, d.cache, spec, headers, {
      recorder: d.recorder,
      base: { ...base, version: parsed.version, sha256: expected },
      rule: fd.rule,
      label: filename,
    });
  });

  app.onError(
    errorHandler({
      ecosystem: 'pypi',
      recorder: d.recorder,
      log: d.log,
      wire: (err) => (err instanceof Refusal || err instanceof AirlockError ? { status: err.status, code: err.code, message: err.message } : null),
      internal: () => ({ status: 500, message: 'internal error (see the Airlock log)' }),
      render: (c, e) => refuse(c, e.status, e.message),
    }),
  );

  return { app, fast };
}
