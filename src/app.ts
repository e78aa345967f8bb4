import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import type { Logger } from 'pino';
import type { AppEnv } from './http/send.js';
import type { Metrics } from './obs/metrics.js';
import type { MetaStore, PullFilter } from './storage/meta-store.js';
import { AirlockError } from './core/errors.js';
import { parseTime } from './core/time.js';
import { buildSbom } from './audit/sbom.js';
import { VERSION } from './version.js';

export interface AppDeps {
  log: Logger;
  metrics: Metrics;
  meta: MetaStore;
  /** Front-ends, mounted at their prefixes: { '/pypi': pypiApp }. */
  frontends: Record<string, Hono<AppEnv>>;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

function ecosystemOf(path: string): string {
  if (path.startsWith('/pypi/')) return 'pypi';
  if (path.startsWith('/hf/')) return 'hf';
  if (path.startsWith('/v2/') || path === '/v2') return 'oci';
  return 'admin';
}

/** The root app: shared middleware, admin endpoints under /-/, and the protocol front-ends. */
export function buildApp(d: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    const given = c.req.header('x-request-id');
    const id = given && REQUEST_ID.test(given) ? given : randomUUID();
    c.set('requestId', id);
    await next();
    // Bodies sent straight to the Node response (src/http/send.ts) carry their status there.
    const status = c.env?.outgoing?.headersSent ? c.env.outgoing.statusCode : c.res.status;
    d.metrics.requests.inc({ ecosystem: ecosystemOf(c.req.path), status: `${Math.floor(status / 100)}xx` });
  });

  app.get('/-/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/-/metrics', async (c) => c.body(await d.metrics.registry.metrics(), 200, { 'content-type': d.metrics.registry.contentType }));
  app.get('/-/records', async (c) => {
    const q = c.req.query();
    const f: PullFilter = {
      ecosystem: q.ecosystem as PullFilter['ecosystem'],
      name: q.name,
      decision: q.decision as PullFilter['decision'],
      since: parseTime(q.since, 'since'),
      until: parseTime(q.until, 'until'),
      limit: q.limit ? Math.max(1, Math.min(Number(q.limit) || 100, 10_000)) : 100,
    };
    if (f.ecosystem && !['pypi', 'hf', 'oci', 'audit'].includes(f.ecosystem)) throw new AirlockError('BAD_REQUEST', 'ecosystem: expected pypi, hf, oci or audit');
    if (f.decision && !['allow', 'deny', 'error'].includes(f.decision)) throw new AirlockError('BAD_REQUEST', 'decision: expected allow, deny or error');
    return c.json({ records: await d.meta.listPulls(f) });
  });

  app.get('/-/sbom', async (c) => {
    const q = c.req.query();
    if (q.ecosystem && !['pypi', 'hf', 'oci'].includes(q.ecosystem)) throw new AirlockError('BAD_REQUEST', 'ecosystem: expected pypi, hf or oci');
    const json = await buildSbom(d.meta, {
      since: parseTime(q.since, 'since'),
      until: parseTime(q.until, 'until'),
      client: q.client,
      ecosystem: q.ecosystem as PullFilter['ecosystem'],
      version: VERSION,
    });
    return c.body(json, 200, { 'content-type': 'application/vnd.cyclonedx+json; version=1.6' });
  });

  for (const [prefix, sub] of Object.entries(d.frontends)) app.route(prefix, sub);

  app.notFound((c) => c.text('not found\n', 404));
  app.onError((err, c) => {
    if (err instanceof AirlockError) return c.json({ error: err.code, message: err.message }, err.status as 400);
    d.log.error({ err, path: c.req.path }, 'unexpected error');
    return c.json({ error: 'INTERNAL', message: 'internal error (see the Airlock log)' }, 500);
  });
  return app;
}
