import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import type { FastAnswer } from '../http/fast.js';
import { Refusal } from '../http/refusal.js';
import { sendBytes, type AppEnv } from '../http/send.js';
import { isValidProjectName, normalizeName } from '../names/pypi.js';
import type { Policy } from '../policy/index.js';
import type { RefusalCode } from '../policy/types.js';
import { negotiate, JSON_V1, type SimpleFormat } from './accept.js';
import { loadPage, reasonPhrase, refuse, type PypiDeps } from './context.js';
import { filterProject } from './filter.js';
import { PYPI } from './frontend.js';
import type { IndexSource, ProjectPage } from './index.js';
import type { FilteredProject } from './model.js';
import { renderHtml, renderJson, renderRootHtml, renderRootJson } from './render.js';

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

const NOT_ACCEPTABLE = 'none of the media types in Accept is offered: use application/vnd.pypi.simple.v1+json or text/html';

type Rendered = { filtered: FilteredProject; validUntil: number; bodies: Partial<Record<'json' | 'html' | 'json.gz' | 'html.gz', Buffer>> };

/**
 * The project pages' handlers and their render cache: rendered pages (bytes, and gzip on demand),
 * per parsed page object and policy object. A warm page costs two WeakMap lookups (the 5,000-file
 * row of the benchmark measures it); a reload makes a new policy object, so nothing rendered for
 * the old policy is served after it. A page filtered with a minimum age is filtered again once a
 * file left off for its age becomes old enough (`validUntil`): one comparison per request.
 */
export interface Pages {
  d: PypiDeps;
  rendered: WeakMap<object, WeakMap<object, Rendered>>;
}

export function newPages(d: PypiDeps): Pages {
  return { d, rendered: new WeakMap() };
}

function bodyOf(entry: Rendered, kind: 'json' | 'html', gzip: boolean, provenanceBase: string | null): Buffer {
  const plain = (entry.bodies[kind] ??= Buffer.from(kind === 'json' ? renderJson(entry.filtered, provenanceBase) : renderHtml(entry.filtered, provenanceBase)));
  if (!gzip) return plain;
  return (entry.bodies[`${kind}.gz`] ??= gzipSync(plain, { level: 6 }));
}

/** A project page's body and headers, for the route and for the fast path alike. */
export function pageAnswer(
  p: Pages,
  page: ProjectPage,
  policy: Policy,
  format: SimpleFormat,
  acceptEncoding: string | undefined,
): { headers: Record<string, string>; body: Buffer } {
  let perPolicy = p.rendered.get(page.project);
  if (!perPolicy) p.rendered.set(page.project, (perPolicy = new WeakMap()));
  let entry = perPolicy.get(policy);
  const now = Date.now();
  if (!entry || now >= entry.validUntil) {
    const filtered = filterProject(page.project, policy, now);
    perPolicy.set(policy, (entry = { filtered, validUntil: filtered.validUntil, bodies: {} }));
  }
  const gzip = acceptsGzip(acceptEncoding);
  const body = bodyOf(entry, format === JSON_V1 ? 'json' : 'html', gzip, p.d.provenanceBase);
  const headers: Record<string, string> = {
    'content-type': CONTENT_TYPE[format],
    vary: 'Accept, Accept-Encoding',
    'cache-control': `max-age=${p.d.pageMaxAge}`,
  };
  if (gzip) headers['content-encoding'] = 'gzip';
  if (page.stale) {
    headers['x-airlock-stale'] = `upstream failed (${reasonPhrase(page.staleReason ?? '')}); page fetched ${new Date(page.fetchedAt).toISOString()}`;
    headers['cache-control'] = 'no-store';
  }
  return { headers, body };
}

/**
 * What a request for a project page asks for, decided in one place for the route and the fast
 * path in the order the route answers: a bad name (400), a name to normalise (301), no offered
 * format (406), a name the policy refuses (403), or the page to serve. The fast path serves only
 * the last, so it can never serve what the route would refuse.
 */
function pageRequest(d: PypiDeps, raw: string, accept: string | undefined, formatQuery: string | undefined): PageRequest {
  if (!isValidProjectName(raw)) return { kind: 'bad-name' };
  const name = normalizeName(raw);
  if (name !== raw) return { kind: 'redirect', name };
  const format = negotiate(accept, formatQuery);
  if (!format) return { kind: 'not-acceptable' };
  const policy = d.live.policy;
  const decision = policy.pypi.decideProject(name);
  if (!decision.allow) return { kind: 'denied', name, rule: decision.rule, code: decision.code, reason: decision.reason };
  return { kind: 'page', name, format, policy, source: decision.source, rule: decision.rule };
}

/**
 * The fast path (src/http/fast.ts) for the most frequent request pip makes: a GET of a project
 * page that is parsed in memory, allowed, and asked for by its normalised name without a query.
 * Anything else, refusals and redirects included, returns false and takes the route.
 */
export function fastPages(p: Pages): FastAnswer {
  const answer = (req: IncomingMessage, res: ServerResponse): boolean => {
    const m = PAGE_PATH.exec(req.url ?? '');
    if (!m) return false;
    const r = pageRequest(p.d, m[1], req.headers.accept, undefined);
    if (r.kind !== 'page') return false;
    const page = p.d.index.warm(r.name, r.source);
    if (!page) return false;
    const a = pageAnswer(p, page, r.policy, r.format, req.headers['accept-encoding']);
    a.headers['content-length'] = String(a.body.length);
    res.writeHead(200, a.headers);
    res.end(a.body);
    return true;
  };
  return Object.assign(answer, { path: PAGE_PATH });
}

/** GET /simple/: the root page, listing the names the policy lists. */
export function rootPage(d: PypiDeps, c: Context<AppEnv>): Response {
  const format = negotiate(c.req.header('accept'), c.req.query('format'));
  if (!format) return refuse(c, 406, NOT_ACCEPTABLE);
  const names = d.live.policy.pypi.listedNames();
  const body = format === JSON_V1 ? renderRootJson(names) : renderRootHtml(names);
  return c.body(body, 200, { 'content-type': CONTENT_TYPE[format], vary: 'Accept', 'cache-control': `max-age=${d.pageMaxAge}` });
}

/** GET /simple/<name>/: a project page, filtered by the policy. */
export async function projectPage(p: Pages, c: Context<AppEnv, '/simple/:name/'>): Promise<Response> {
  const r = pageRequest(p.d, c.req.param('name'), c.req.header('accept'), c.req.query('format'));
  switch (r.kind) {
    case 'bad-name':
      throw new AirlockError('BAD_REQUEST', 'invalid project name: expected a PEP 508 name');
    case 'redirect':
      return c.redirect(`${PYPI.prefix}/simple/${r.name}/`, 301);
    case 'not-acceptable':
      return refuse(c, 406, NOT_ACCEPTABLE);
    case 'denied':
      // The refusal pip meets first ("No matching distribution"): on record like a refused file.
      throw new Refusal({ status: 403, code: r.code, rule: r.rule, reason: r.reason, row: { name: r.name } });
  }
  const page = await loadPage(p.d, r.source, r.rule, { name: r.name });
  const a = pageAnswer(p, page, r.policy, r.format, c.req.header('accept-encoding'));
  return sendBytes(c, 200, a.headers, a.body);
}
