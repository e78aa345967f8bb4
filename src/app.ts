import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { presentedSecret, type Authenticator } from './auth/tokens.js';
import type { Logger } from 'pino';
import type { AppEnv } from './http/send.js';
import type { Metrics } from './obs/metrics.js';
import type { MetaStore, PullFilter } from './storage/meta-store.js';
import { AirlockError } from './core/errors.js';
import { parseTime } from './core/time.js';
import { VERSION } from './version.js';

export interface AppDeps {
  auth: { authenticator: Authenticator; modes: { pypi: 'anonymous' | 'token'; hf: 'anonymous' | 'token'; oci: 'anonymous' | 'token'; admin: 'token' | 'open' } };
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

/** A refusal in the client's own terms: pip prompts on Basic, OCI clients run the token flow. */
function unauthorized(c: Context<AppEnv>, area: string, message: string, status = 401): Response {
  const h: Record<string, string> = { 'cache-control': 'no-store' };
  if (status === 401) {
    if (area === 'oci') h['www-authenticate'] = `Bearer realm="${new URL(c.req.url).origin}/v2/token",service="airlock"`;
    else if (area === 'hf') h['www-authenticate'] = 'Bearer realm="airlock"';
    else h['www-authenticate'] = 'Basic realm="airlock"';
  }
  if (area === 'oci') {
    h['docker-distribution-api-version'] = 'registry/2.0';
    return c.json({ errors: [{ code: status === 401 ? 'UNAUTHORIZED' : 'DENIED', message, detail: null }] }, status as 401, h);
  }
  if (area === 'hf') return c.json({ error: message }, status as 401, { ...h, 'x-error-message': message });
  if (area === 'pypi') return c.text(`${message}\n`, status as 401, { ...h, 'x-airlock-reason': message });
  return c.json({ error: status === 401 ? 'UNAUTHORIZED' : 'DENIED', message }, status as 401, h);
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

  // Identity: a client token as each client sends it. A wrong or revoked token is refused even
  // where anonymous pulls are allowed; a missing one only where a token is required.
  app.use('*', async (c, next) => {
    const area = ecosystemOf(c.req.path);
    if (c.req.path === '/-/healthz' || c.req.path === '/-/metrics' || c.req.path === '/v2/token') return next();
    const secret = presentedSecret(c.req.header('authorization'));
    const identity = secret ? await d.auth.authenticator.identify(secret) : null;
    const mode = area === 'admin' ? d.auth.modes.admin : d.auth.modes[area as 'pypi' | 'hf' | 'oci'];
    const required = mode === 'token';
    if (identity) c.set('identity', identity);
    else if (secret) return unauthorized(c, area, 'the token presented is not valid (unknown or revoked)');
    else if (required) return unauthorized(c, area, `a client token is required here; create one with: airlock token create --name NAME${area === 'admin' ? ' --admin' : ''}`);
    if (area === 'admin' && required && !identity!.admin) return unauthorized(c, area, `token ${identity!.name} is not an admin token`, 403);
    return next();
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
    // Loaded on first use: the CycloneDX library (and its validators) cost start-up time and memory.
    const { buildSbom } = await import('./audit/sbom.js');
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
