import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { presentedSecret, type Authenticator, type Identity } from './auth/tokens.js';
import type { Logger } from 'pino';
import { under, type FrontEnd } from './http/frontend.js';
import { clientAddress, type AppEnv } from './http/send.js';
import type { FastPath } from './http/fast.js';
import type { Recorder } from './core/records.js';
import type { Metrics } from './obs/metrics.js';
import type { PullFilter, PullLog } from './storage/meta-store.js';
import type { InventoryStore } from './storage/inventory-store.js';
import { AirlockError } from './core/errors.js';
import { parseTime } from './core/time.js';
import { VERSION } from './version.js';

export interface AppDeps {
  auth: {
    authenticator: Authenticator;
    modes: { pypi: 'anonymous' | 'token'; hf: 'anonymous' | 'token'; oci: 'anonymous' | 'token'; admin: 'token' | 'open' };
  };
  log: Logger;
  metrics: Metrics;
  meta: PullLog & { inventories: InventoryStore };
  /** Refusals of wrong or revoked tokens go on record like any other refusal. */
  recorder: Recorder;
  /** The protocol front-ends, each describing its prefix and how it refuses (http/frontend.ts). */
  frontends: FrontEnd[];
  /** What keeps this replica from serving now (database or blob store unreachable); empty when ready. */
  unready: () => Promise<string[]>;
  /** The web console (src/console), mounted at /-/ui: it checks its own sessions. */
  console?: Hono<any>;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

type Area = FrontEnd | typeof ADMIN;
type Admission = { identity?: Identity } | { refuse: 401 | 403; message: string; badToken?: boolean };

/** The admin endpoints (/-/...) refuse in plain JSON. */
const ADMIN = {
  ecosystem: 'admin' as const,
  open: ['/-/healthz', '/-/readyz', '/-/metrics'],
  refuse: (c: Context<AppEnv>, status: 401 | 403, message: string): Response => {
    const h: Record<string, string> = { 'cache-control': 'no-store' };
    if (status === 401) h['www-authenticate'] = 'Basic realm="airlock"';
    return c.json({ error: status === 401 ? 'UNAUTHORIZED' : 'DENIED', message }, status, h);
  },
};

/** The root app: shared middleware, admin endpoints under /-/, and the protocol front-ends. */
export function buildApp(d: AppDeps): { app: Hono<AppEnv>; fast: FastPath } {
  const app = new Hono<AppEnv>();

  const areaOf = (path: string) => d.frontends.find((f) => under(f.prefix, path)) ?? ADMIN;

  // The request counter's children by label pair: prom-client's labelled inc() hashes its labels
  // on every call.
  const counted = new Map<string, { inc: () => void }>();
  const count = (ecosystem: string, status: number) => {
    const cls = `${Math.floor(status / 100)}xx`;
    const key = `${ecosystem} ${cls}`;
    let child = counted.get(key);
    if (!child) counted.set(key, (child = d.metrics.requests.labels({ ecosystem, status: cls })));
    child.inc();
  };

  /**
   * Identity: a client token as each client sends it. A wrong or revoked token is refused even
   * where anonymous pulls are allowed; a missing one only where a token is required. The same
   * check for the router and the fast path (src/http/fast.ts); only the router answers refusals.
   */
  const admit = async (area: Area, path: string, authorization: string | undefined): Promise<Admission> => {
    if (area.open?.includes(path)) return {};
    // The console authenticates by its own session cookie (src/console/session.ts).
    if (d.console && under('/-/ui', path)) return {};
    const secret = presentedSecret(authorization);
    const identity = secret ? await d.auth.authenticator.identify(secret) : null;
    const admin = area.ecosystem === 'admin';
    const required = d.auth.modes[area.ecosystem] === 'token';
    if (secret && !identity) return { refuse: 401, message: 'the token presented is not valid (unknown or revoked)', badToken: true };
    if (!identity && required)
      return { refuse: 401, message: `a client token is required here; create one with: airlock token create --name NAME${admin ? ' --admin' : ''}` };
    if (admin && required && !identity!.admin) return { refuse: 403, message: `token ${identity!.name} is not an admin token` };
    return identity ? { identity } : {};
  };

  // One middleware for every request: its id, its identity, and the request counter. (Two
  // middlewares cost a warm page more: each layer is another async frame and dispatch step.)
  app.use('*', async (c, next) => {
    const given = c.req.header('x-request-id');
    c.set('requestId', given && REQUEST_ID.test(given) ? given : randomUUID());
    const area = areaOf(c.req.path);
    const a = await admit(area, c.req.path, c.req.header('authorization'));
    if ('refuse' in a) {
      // A wrong or revoked token is an attempt worth keeping: a log line and a pull row (never the secret).
      if (a.badToken) {
        const admin = area.ecosystem === 'admin';
        void d.recorder.record({
          ts: Date.now(),
          client: clientAddress(c),
          ecosystem: admin ? 'audit' : area.ecosystem,
          name: admin ? 'admin' : c.req.path.slice(0, 300),
          cache: 'none',
          decision: 'deny',
          reason: a.message,
          rule: `auth.${area.ecosystem}`,
          requestId: c.get('requestId'),
          code: 'bad_token',
        });
      }
      count(area.ecosystem, a.refuse);
      return area.refuse(c, a.refuse, a.message);
    }
    if (a.identity) c.set('identity', a.identity);
    await next();
    // Bodies sent straight to the Node response (src/http/send.ts) carry their status there.
    count(area.ecosystem, c.env?.outgoing?.headersSent ? c.env.outgoing.statusCode : c.res.status);
  });

  // Red while pull records cannot be written: every artefact is withheld then (fail closed).
  app.get('/-/healthz', (c) => {
    const failing = d.recorder.health();
    if (!failing) return c.json({ status: 'ok' });
    return c.json({ status: 'failing', record: `pull records cannot be written since ${new Date(failing.at).toISOString()}: ${failing.message}` }, 503);
  });
  // Readiness (for a load balancer or Kubernetes): the stores answer and records can be written.
  // Liveness is /-/healthz.
  app.get('/-/readyz', async (c) => {
    const problems = await d.unready();
    const failing = d.recorder.health();
    if (failing) problems.push(`pull records cannot be written: ${failing.message}`);
    return problems.length ? c.json({ status: 'unready', problems }, 503) : c.json({ status: 'ready' });
  });
  app.get('/-/metrics', async (c) => c.body(await d.metrics.registry.metrics(), 200, { 'content-type': d.metrics.registry.contentType }));
  app.get('/-/records', async (c) => {
    const q = c.req.query();
    const f: PullFilter = {
      ecosystem: q.ecosystem as PullFilter['ecosystem'],
      name: q.name,
      decision: q.decision as PullFilter['decision'],
      code: q.code || undefined,
      before: q.before && /^\d+$/.test(q.before) ? Number(q.before) : undefined,
      since: parseTime(q.since, 'since'),
      until: parseTime(q.until, 'until'),
      limit: q.limit ? Math.max(1, Math.min(Number(q.limit) || 100, 10_000)) : 100,
    };
    if (f.ecosystem && !['pypi', 'hf', 'oci', 'audit'].includes(f.ecosystem))
      throw new AirlockError('BAD_REQUEST', 'ecosystem: expected pypi, hf, oci or audit');
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

  if (d.console) {
    // The console's overview is /-/ui; its pages are below it.
    app.get('/-/ui/', (c) => c.redirect('/-/ui', 308));
    app.route('/-/ui', d.console);
  }
  for (const f of d.frontends) app.route(f.prefix, f.app);

  app.notFound((c) => c.text('not found\n', 404));
  app.onError((err, c) => {
    if (err instanceof AirlockError) return c.json({ error: err.code, message: err.message }, err.status as 400);
    d.log.error({ err, path: c.req.path }, 'unexpected error');
    return c.json({ error: 'INTERNAL', message: 'internal error (see the Airlock log)' }, 500);
  });
  /**
   * The fast path (src/http/fast.ts): a GET a front-end answers at once from memory, after the
   * same identity check as above. A refusal is never made here: the router makes it (and its
   * record) when this returns false.
   */
  const withFast = d.frontends.filter((f) => f.fast);
  const fastPrefixes = withFast.map((f) => `${f.prefix}/`);
  const fast: FastPath = {
    candidate: (req) => req.method === 'GET' && req.url !== undefined && fastPrefixes.some((p) => req.url!.startsWith(p)),
    async serve(req, res) {
      const path = (req.url ?? '').split('?', 1)[0];
      const area = withFast.find((f) => under(f.prefix, path));
      if (!area) return false;
      const authorization = req.headers.authorization;
      // Repeated credentials: the router reads them as Hono joins them; it decides.
      if (authorization !== undefined && (req.headersDistinct.authorization?.length ?? 0) > 1) return false;
      const a = await admit(area, path, authorization);
      if ('refuse' in a || !area.fast!(req, res)) return false;
      count(area.ecosystem, res.statusCode);
      return true;
    },
  };
  return { app, fast };
}
