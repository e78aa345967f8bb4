import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono } from 'hono';
import { presentedSecret, type Authenticator, type Identity } from './auth/tokens.js';
import type { Logger } from 'pino';
import { under, type FrontEnd } from './http/frontend.js';
import { clientAddress, type AppEnv } from './http/send.js';
import { clientResolver } from './http/client-address.js';
import type { FastClient, FastPath } from './http/fast.js';
import { ADMIN, mountAdmin, type AdminDeps } from './http/admin.js';
import { rateLimit, requestName } from './http/refusal.js';
import { AirlockError } from './core/errors.js';

export interface AppDeps extends AdminDeps {
  auth: {
    authenticator: Authenticator;
    modes: { pypi: 'anonymous' | 'token'; hf: 'anonymous' | 'token'; oci: 'anonymous' | 'token'; admin: 'token' | 'open' };
  };
  log: Logger;
  /** The protocol front-ends, each describing its prefix and how it refuses (http/frontend.ts). */
  frontends: FrontEnd[];
  /** The web console (src/console), mounted at /-/ui: it checks its own sessions. */
  console?: Hono<any>;
  /** Proxies whose X-Forwarded-For is believed (trusted_proxies; addresses or CIDR blocks). */
  trustedProxies?: readonly string[];
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

type Area = FrontEnd | typeof ADMIN;
type Admission = { identity?: Identity } | { refuse: 401 | 403; message: string; badToken?: boolean };

/**
 * The root app: shared middleware (request id, identity, the request counter), the admin
 * endpoints (http/admin.ts), the console and the protocol front-ends, and the fast path.
 */
export function buildApp(d: AppDeps): { app: Hono<AppEnv>; fast: FastPath } {
  const app = new Hono<AppEnv>();
  const areaOf = (path: string) => d.frontends.find((f) => under(f.prefix, path)) ?? ADMIN;

  const count = requestCounter(d.metrics);
  const clientOf = clientResolver(d.trustedProxies ?? []);

  /**
   * Identity: a client token as each client sends it. A wrong or revoked token is refused even
   * where anonymous pulls are allowed; a missing one only where a token is required. The same
   * check for the router and the fast path (src/http/fast.ts); only the router answers refusals.
   */
  const admit = (area: Area, path: string, authorization: string | undefined): Admission | Promise<Admission> => {
    if (area.open?.includes(path)) return {};
    // The console authenticates by its own session cookie (src/console/session.ts).
    if (d.console && under('/-/ui', path)) return {};
    const secret = presentedSecret(authorization);
    // No token presented: decided at once, without a turn of the event loop (the fast path's pages and manifests).
    if (!secret) return judge(area, null, null);
    return d.auth.authenticator.identify(secret).then((identity) => judge(area, secret, identity));
  };
  const judge = (area: Area, secret: string | null, identity: Identity | null): Admission => {
    const admin = area.ecosystem === 'admin';
    const required = d.auth.modes[area.ecosystem] === 'token';
    if (secret && !identity) return { refuse: 401, message: 'the token presented is not valid (unknown or revoked)', badToken: true };
    if (!identity && required)
      return { refuse: 401, message: `a client token is required here; create one with: airlock token create --name NAME${admin ? ' --admin' : ''}` };
    if (admin && required && !identity!.admin) return { refuse: 403, message: `token ${identity!.name} is not an admin token` };
    return identity ? { identity } : {};
  };
  /**
   * What the fast path found for a request it then left to the router: identity is looked up once
   * per request (a database round trip on PostgreSQL), never again by the router.
   */
  const admitted = new WeakMap<IncomingMessage, { area: Area; admission: Admission }>();

  // One middleware for every request: its id, its identity, and the request counter. (Two
  // middlewares cost a warm page more: each layer is another async frame and dispatch step.)
  app.use('*', async (c, next) => {
    c.set('requestId', requestIdOf(c.req.header('x-request-id')));
    // The client's address, once per request: every limit and record keyed by client uses it.
    c.set('client', clientOf(c.env?.incoming?.socket?.remoteAddress, c.req.header('x-forwarded-for')));
    const area = areaOf(c.req.path);
    const incoming = c.env?.incoming;
    const found = incoming ? admitted.get(incoming) : undefined;
    const a = found?.area === area ? found.admission : await admit(area, c.req.path, c.req.header('authorization'));
    if ('refuse' in a) {
      // A wrong or revoked token is an attempt worth keeping: a log line and a pull row (never the
      // secret), for HEAD too (the row is about the credential, not a probe of an artefact).
      if (a.badToken) {
        const admin = area.ecosystem === 'admin';
        const row = {
          ts: Date.now(),
          client: clientAddress(c),
          ecosystem: admin ? ('audit' as const) : area.ecosystem,
          name: admin ? 'admin' : requestName(c),
          cache: 'none' as const,
          decision: 'deny' as const,
          reason: a.message,
          rule: `auth.${area.ecosystem}`,
          requestId: c.get('requestId'),
        };
        // Past the client's refusal rate limit: a 429 (its front-end's own error), counted in one folded row.
        const limited = rateLimit(c, d.recorder, row);
        if (limited) {
          count(area.ecosystem, 429);
          return area.refuse(c, 429, limited.message);
        }
        void d.recorder.record({ ...row, code: 'bad_token' });
      }
      count(area.ecosystem, a.refuse);
      return area.refuse(c, a.refuse, a.message);
    }
    if (a.identity) c.set('identity', a.identity);
    await next();
    // Bodies sent straight to the Node response (src/http/send.ts) carry their status there.
    count(area.ecosystem, c.env?.outgoing?.headersSent ? c.env.outgoing.statusCode : c.res.status);
  });

  mountAdmin(app, d);
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
  return { app, fast: fastPath(d.frontends, admit, admitted, count, clientOf) };
}

/** A request's id: the client's X-Request-Id when well-formed, else a new one. */
function requestIdOf(given: string | undefined): string {
  return given && REQUEST_ID.test(given) ? given : randomUUID();
}

/** The request counter (airlock_http_requests_total), its children kept by label pair: prom-client's labelled inc() hashes its labels on every call. */
function requestCounter(metrics: AppDeps['metrics']): (ecosystem: string, status: number) => void {
  const counted = new Map<string, { inc: () => void }>();
  return (ecosystem, status) => {
    const cls = `${Math.floor(status / 100)}xx`;
    const key = `${ecosystem} ${cls}`;
    let child = counted.get(key);
    if (!child) counted.set(key, (child = metrics.requests.labels({ ecosystem, status: cls })));
    child.inc();
  };
}

/**
 * The fast path (src/http/fast.ts): a GET a front-end answers at once from memory, after the
 * router's identity check (`admit`). A refusal is never made here: the router makes it (and its
 * record) when this returns false, with the identity found here (`admitted`).
 */
function fastPath(
  frontends: FrontEnd[],
  admit: (area: Area, path: string, authorization: string | undefined) => Admission | Promise<Admission>,
  admitted: WeakMap<IncomingMessage, { area: Area; admission: Admission }>,
  count: (ecosystem: string, status: number) => void,
  clientOf: (peer: string | undefined, forwardedFor: string | undefined) => string,
): FastPath {
  const withFast = frontends.filter((f) => f.fast);
  return {
    candidate: (req) => req.method === 'GET' && req.url !== undefined && withFast.some((f) => f.fast!.path.test(req.url!)),
    serve(req, res) {
      const path = (req.url ?? '').split('?', 1)[0];
      const area = withFast.find((f) => under(f.prefix, path) && f.fast!.path.test(req.url!));
      if (!area) return false;
      const authorization = req.headers.authorization;
      // Repeated credentials: the router reads them as Hono joins them; it decides.
      if (authorization !== undefined && (req.headersDistinct.authorization?.length ?? 0) > 1) return false;
      const admission = admit(area, path, authorization);
      // Synchronous where nothing is looked up (no token presented): no promise, no extra turn.
      return admission instanceof Promise ? admission.then((a) => answer(req, res, area, a)) : answer(req, res, area, admission);
    },
  };

  /** The front-end's fast answer for an admitted request; false (the router's) for a refused one or one it declines. */
  function answer(req: IncomingMessage, res: ServerResponse, area: FrontEnd, a: Admission): boolean | Promise<boolean> {
    if ('refuse' in a) {
      admitted.set(req, { area, admission: a });
      return false;
    }
    // Who is asking, as the router's middleware sets it (for an answer that writes a pull record).
    const who: FastClient = {
      client: () => {
        // Repeated X-Forwarded-For headers arrive joined with ", ", as the router reads them.
        const addr = clientOf(req.socket?.remoteAddress, req.headers['x-forwarded-for'] as string | undefined);
        return a.identity ? `${a.identity.name}@${addr}` : addr;
      },
      requestId: () => requestIdOf(req.headers['x-request-id'] as string | undefined),
    };
    const done = (served: boolean): boolean => {
      if (!served) {
        admitted.set(req, { area, admission: a });
        return false;
      }
      count(area.ecosystem, res.statusCode);
      return true;
    };
    const answered = area.fast!(req, res, who);
    return typeof answered === 'boolean' ? done(answered) : answered.then(done);
  }
}
