import type { TrustRoots } from '../signing/trust.js';
import { Hono } from 'hono';
import type { Logger } from '../obs/logger.js';
import type { MetaStore, PullFilter } from '../storage/meta-store.js';
import type { LivePolicy } from '../core/live-policy.js';
import { advisoriesRoutes } from './advisories.js';
import { artefactRoutes } from './artefact.js';
import { filters, page, PAGE, type ConsoleApp } from './context.js';
import { incidentsRoutes } from './incidents.js';
import { CSS } from './layout.js';
import { loginRoutes, sessionRoutes } from './login.js';
import { lookalikesFor } from './lookalikes.js';
import { overviewRoutes } from './overview.js';
import { recordsRoutes } from './records.js';
import { CODES, refusalsPage } from './views.js';

export interface ConsoleDeps {
  meta: MetaStore;
  /** The policy in force, the advisories as the server holds them (not re-read from the store per page), its version and last reload. */
  live: LivePolicy;
  /** Upstream hosts failing to answer now. */
  upstreams: () => { host: string; failures: number; openUntil: number }[];
  /** Served pulls since start and how many were cache hits (this process's metrics). */
  hits: () => Promise<{ hits: number; served: number }>;
  log: Logger;
  recordHealth: () => { message: string } | null;
  /** The Sigstore trusted root in use (issue 26): its version and age on the overview. */
  trust?: Pick<TrustRoots, 'current' | 'ageSeconds' | 'problem'>;
  /** The advisory feeds' freshness (issue 28): shown on the advisories page with the recorded syncs. */
  feeds?: () => { source: string; syncedAt: number | null; ageSeconds: number | null }[];
  /** Cookies need Secure when the console is reached over HTTPS (behind a TLS proxy). */
  secureCookies?: boolean;
}

/** No script, no inline style, no framing, forms only to itself. */
const CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * The console at /-/ui/: server-rendered pages behind admin tokens. A login form exchanges an
 * admin token for an HttpOnly, SameSite=Strict session cookie (login.ts, session.ts); every form
 * carries a CSRF token; every answer carries a strict Content-Security-Policy. Nothing but the
 * login form and the stylesheet answers without a session. Each page is a module (overview.ts,
 * records.ts, artefact.ts, advisories.ts) registering its routes; the refusals page is here and
 * in views.ts. Registration order matters: the session check applies to what comes after it.
 */
export function createConsole(d: ConsoleDeps): ConsoleApp {
  const app: ConsoleApp = new Hono();

  app.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', CSP);
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    c.header('cache-control', 'no-store');
  });

  app.get('/static/console.css', (c) => c.body(CSS, 200, { 'content-type': 'text/css; charset=utf-8' }));

  loginRoutes(app, d);

  // Everything below needs a session.
  sessionRoutes(app, d);

  overviewRoutes(app, d);

  app.get('/refusals', async (c) => {
    const { q, before, query } = filters(c);
    const ecosystem = ['pypi', 'oci', 'hf', 'admin'].includes(q.ecosystem) ? q.ecosystem : undefined;
    const code = CODES.includes(q.code) ? q.code : undefined;
    const day = (s: string | undefined) => (s && /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) ? s : undefined);
    const from = day(q.from);
    const to = day(q.to);
    const f: PullFilter = {
      decision: 'deny',
      code,
      before,
      limit: PAGE,
      ecosystem: ecosystem === 'admin' ? 'audit' : (ecosystem as PullFilter['ecosystem']),
      since: from ? Date.parse(`${from}T00:00:00Z`) : undefined,
      until: to ? Date.parse(`${to}T00:00:00Z`) + 86_400_000 - 1 : undefined,
    };
    const rows = await d.meta.listPulls(f);
    return page(c, refusalsPage(c.get('session').csrf, { ecosystem, code, from, to, query }, rows, PAGE, lookalikesFor(d.live.policy, d.log)));
  });

  recordsRoutes(app, d);
  artefactRoutes(app, d);
  advisoriesRoutes(app, d);
  incidentsRoutes(app, d);

  return app;
}
