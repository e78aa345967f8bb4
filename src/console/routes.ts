import { Hono, type Context } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import type { HtmlEscapedString } from 'hono/utils/html';
import { tokenHash } from '../auth/tokens.js';
import type { AppEnv } from '../http/send.js';
import type { Logger } from '../obs/logger.js';
import type { MetaStore, PullFilter } from '../storage/meta-store.js';
import type { Policy } from '../policy/index.js';
import { affected } from '../audit/affected.js';
import { VERSION } from '../version.js';
import { SCANNER_VERSION } from '../scan/report.js';
import { checkCsrf, issueSession, loginNonce, readSession, sameNonce, SESSION_MS, type Session } from './session.js';
import { verifyChain } from '../core/chain.js';
import type { Advisories } from '../policy/advisories.js';
import { advisoriesPage, artefactPage, CODES, CSS, type ChainStatus, loginPage, overviewPage, pullsCsv, recordsPage, refusalsPage } from './views.js';

export interface ConsoleDeps {
  meta: MetaStore;
  policy: () => Policy;
  /** The imported advisories as the server holds them (not re-read from the store per page). */
  advisories: () => Advisories;
  /** The last policy reload: when, and its error if it failed (null: none since start). */
  lastReload: () => { at: number; error?: string } | null;
  /** Upstream hosts failing to answer now. */
  upstreams: () => { host: string; failures: number; openUntil: number }[];
  /** Served pulls since start and how many were cache hits (this process's metrics). */
  hits: () => Promise<{ hits: number; served: number }>;
  /** The policy in force: its file and the SHA-256 of its bytes (the version a reviewed change can name). */
  policyVersion: () => { file: string; sha256: string };
  log: Logger;
  policySizes: () => { pypi: number; oci: number; hf: number };
  recordHealth: () => { message: string } | null;
  /** Cookies need Secure when the console is reached over HTTPS (behind a TLS proxy). */
  secureCookies?: boolean;
}

const COOKIE = 'airlock_console';
const NONCE = 'airlock_login';
const PAGE = 50;
/** No script, no inline style, no framing, forms only to itself. */
const CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * The console at /-/ui/: server-rendered pages behind admin tokens. A login form exchanges an
 * admin token for an HttpOnly, SameSite=Strict session cookie (session.ts); every form carries a
 * CSRF token; every answer carries a strict Content-Security-Policy. Nothing but the login form
 * and the stylesheet answers without a session.
 */
export function createConsole(d: ConsoleDeps): Hono<AppEnv & { Variables: { session: Session } }> {
  const app = new Hono<AppEnv & { Variables: { session: Session } }>();
  const cookieOpts = { httpOnly: true, sameSite: 'Strict' as const, secure: d.secureCookies ?? false, path: '/-/ui' };

  app.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', CSP);
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    c.header('cache-control', 'no-store');
  });

  const page = (c: Context, body: HtmlEscapedString | Promise<HtmlEscapedString>, status = 200) => c.html(body, status as 200);

  app.get('/static/console.css', (c) => c.body(CSS, 200, { 'content-type': 'text/css; charset=utf-8' }));

  app.get('/login', (c) => {
    const nonce = loginNonce();
    setCookie(c, NONCE, nonce, { ...cookieOpts, maxAge: 600 });
    return page(c, loginPage(nonce));
  });

  app.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const nonce = getCookie(c, NONCE);
    const again = () => {
      const n = loginNonce();
      setCookie(c, NONCE, n, { ...cookieOpts, maxAge: 600 });
      return n;
    };
    if (!nonce || typeof form.nonce !== 'string' || !sameNonce(nonce, form.nonce)) {
      d.log.warn({ reqId: c.get('requestId'), path: c.req.path }, 'console login refused: the form did not come from this console (CSRF)');
      return page(c, loginPage(again(), 'This form expired or did not come from this console: try again.'), 403);
    }
    const secret = typeof form.token === 'string' ? form.token.trim() : '';
    const token = secret && secret.length <= 512 ? await d.meta.findToken(tokenHash(secret)) : null;
    if (!token || token.revokedAt !== null || !token.admin) {
      d.log.warn({ reqId: c.get('requestId'), token: token?.name ?? null, admin: token?.admin ?? null }, 'console login refused');
      return page(
        c,
        loginPage(again(), token && !token.admin ? `Token ${token.name} is not an admin token.` : 'That token is not valid (unknown or revoked).'),
        401,
      );
    }
    const { cookie } = issueSession(token);
    setCookie(c, COOKIE, cookie, { ...cookieOpts, maxAge: SESSION_MS / 1000 });
    deleteCookie(c, NONCE, { path: '/-/ui' });
    d.log.info({ reqId: c.get('requestId'), token: token.name }, 'console login');
    return c.redirect('/-/ui', 303);
  });

  // Everything below needs a session.
  app.use('*', async (c, next) => {
    const s = await readSession(getCookie(c, COOKIE), d.meta);
    if (!s) {
      if (c.req.method !== 'GET') return c.text('not logged in', 401);
      return c.redirect('/-/ui/login', 303);
    }
    c.set('session', s);
    if (c.req.method === 'POST') {
      const form = await c.req.parseBody();
      if (!checkCsrf(s, typeof form.csrf === 'string' ? form.csrf : undefined)) {
        d.log.warn({ reqId: c.get('requestId'), token: s.name, path: c.req.path }, 'console request refused: bad CSRF token');
        return c.text('refused: this form did not come from your console session', 403);
      }
    }
    return next();
  });

  app.post('/logout', (c) => {
    deleteCookie(c, COOKIE, { path: '/-/ui' });
    return c.redirect('/-/ui/login', 303);
  });

  app.get('/', async (c) => {
    const now = Date.now();
    const daily = await d.meta.dailyCounts(Math.floor(now / 86_400_000) * 86_400_000 - 13 * 86_400_000);
    const totals = await d.meta.blobTotals();
    const health = d.recordHealth();
    return page(
      c,
      overviewPage(c.get('session').csrf, {
        pulls: daily.reduce((s, x) => s + x.count, 0),
        refusals: daily.filter((x) => x.decision !== 'allow').reduce((s, x) => s + x.count, 0),
        daily,
        now,
        blobs: totals.count,
        bytes: totals.bytes,
        advisories: d.advisories().size,
        advisoriesNewest: d.advisories().newest,
        recordOk: health ? health.message : null,
        policy: d.policySizes(),
        reload: d.lastReload(),
        upstreams: d.upstreams(),
        hits: await d.hits(),
        policyVersion: d.policyVersion(),
        scanner: SCANNER_VERSION,
      }),
    );
  });

  const filters = (c: Context) => {
    const q = c.req.query();
    const before = q.before && /^\d+$/.test(q.before) ? Number(q.before) : undefined;
    const query = new URLSearchParams(Object.entries(q).filter(([k, v]) => k !== 'before' && v)).toString();
    return { q, before, query };
  };

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
    return page(c, refusalsPage(c.get('session').csrf, { ecosystem, code, from, to, query }, rows, PAGE));
  });

  // The chain is walked on request (seconds for millions of rows), its last result shown.
  let chain: ChainStatus | null = null;
  app.get('/records', async (c) => {
    const { q, before, query } = filters(c);
    const ecosystem = ['pypi', 'oci', 'hf', 'audit'].includes(q.ecosystem) ? (q.ecosystem as PullFilter['ecosystem']) : undefined;
    const decision = ['allow', 'deny', 'error'].includes(q.decision) ? (q.decision as PullFilter['decision']) : undefined;
    const name = q.name ? q.name.slice(0, 300) : undefined;
    const rows = await d.meta.listPulls({ ecosystem, decision, name, before, limit: PAGE });
    return page(c, recordsPage(c.get('session').csrf, { name, ecosystem, decision, query }, rows, PAGE, chain));
  });

  app.post('/records/verify', async (c) => {
    const r = await verifyChain(d.meta);
    chain = { at: Date.now(), rows: r.rows, head: r.head, problem: r.problem ? `row ${r.problem.id}: ${r.problem.message}` : undefined };
    d.log[r.problem ? 'error' : 'info'](
      { reqId: c.get('requestId'), token: c.get('session').name, rows: r.rows, problem: chain.problem },
      'record chain verified from the console',
    );
    return c.redirect('/-/ui/records', 303);
  });

  // One artefact: identity, what allows it, its vulnerabilities, its inspection, every pull.
  app.get('/artefact', async (c) => {
    const q = c.req.query();
    const ecosystem = ['pypi', 'oci', 'hf'].includes(q.ecosystem) ? (q.ecosystem as PullFilter['ecosystem']) : undefined;
    const sha256 = q.sha256 && /^[0-9a-f]{64}$/.test(q.sha256) ? q.sha256 : undefined;
    const name = (q.name ?? '').slice(0, 300);
    if (!ecosystem || !name) return c.text('ecosystem and name are required', 400);
    const version = q.version ? q.version.slice(0, 300) : undefined;
    const pulls = await d.meta.listPulls(sha256 ? { sha256, limit: 1000 } : { ecosystem, name, version, limit: 1000 });
    const allowed = pulls.find((p) => p.decision === 'allow');
    const blob = sha256 ? await d.meta.getBlob(sha256) : null;
    let vulnerabilities: { id: string; aliases: string[]; summary: string; severity?: string; fixed?: string; package?: string }[] = [];
    if (ecosystem === 'oci' && sha256) {
      // An image manifest: its stored inventory judged against the advisories, as the gate does.
      const stored = await d.meta.inventories.getInventory(`sha256:${sha256}`);
      if (stored) {
        const verdict = d.policy().judgeImage(name, [`sha256:${sha256}`], JSON.parse(stored.inventory), Date.now());
        vulnerabilities = verdict.findings.map((f) => ({
          id: f.id,
          aliases: f.aliases,
          summary: f.summary,
          severity: f.severity.label,
          fixed: f.fixed,
          package: `${f.package.name} ${f.package.version}`,
        }));
      }
    } else if (ecosystem === 'pypi' && version) {
      vulnerabilities = d
        .advisories()
        .matchPypi(name, version, sha256)
        .map((m) => ({ id: m.id, aliases: m.aliases, summary: m.summary, severity: m.severity.label, fixed: m.fixed }));
    }
    return page(
      c,
      artefactPage(c.get('session').csrf, {
        ecosystem,
        name,
        version,
        sha256,
        size: blob?.size ?? allowed?.size ?? null,
        pulls,
        rule: allowed?.rule ?? null,
        scan: sha256 ? await d.meta.getScan(sha256) : null,
        vulnerabilities,
        // The SBOM fragment of what was served of it (the same document /-/sbom writes).
        sbom: allowed
          ? JSON.stringify(
              JSON.parse(await (await import('../audit/sbom.js')).buildSbom(d.meta, { rows: pulls, subject: name, version: VERSION })).components ?? [],
              null,
              2,
            )
          : null,
      }),
    );
  });

  // "Who pulled what this advisory affects?" (the same answer as `airlock affected`), and its CSV.
  const affectedOf = async (q: string) => {
    try {
      return { rep: await affected(d.meta, q, d.policy()), error: undefined };
    } catch (e) {
      return { rep: null, error: (e as Error).message };
    }
  };
  app.get('/advisories', async (c) => {
    const q = (c.req.query('q') ?? '').trim().slice(0, 300);
    const { rep, error } = q ? await affectedOf(q) : { rep: null, error: undefined };
    return page(c, advisoriesPage(c.get('session').csrf, q, rep, error), error ? 404 : 200);
  });
  app.get('/advisories.cdx.json', async (c) => {
    const q = (c.req.query('q') ?? '').trim().slice(0, 300);
    const { rep, error } = await affectedOf(q);
    if (!rep) return c.text(error ?? 'no query', 404);
    // Loaded on first use, as /-/sbom does: the CycloneDX library is large.
    const { buildSbom } = await import('../audit/sbom.js');
    const json = await buildSbom(d.meta, {
      rows: rep.pulls,
      subject: rep.advisory ? `${rep.advisory.id}: artefacts served that it affects` : q,
      version: VERSION,
    });
    const file = `airlock-affected-${q.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.cdx.json`;
    return c.body(json, 200, { 'content-type': 'application/vnd.cyclonedx+json; version=1.6', 'content-disposition': `attachment; filename="${file}"` });
  });
  app.get('/advisories.csv', async (c) => {
    const q = (c.req.query('q') ?? '').trim().slice(0, 300);
    const { rep, error } = await affectedOf(q);
    if (!rep) return c.text(error ?? 'no query', 404);
    const file = `airlock-affected-${q.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.csv`;
    return c.body(pullsCsv(rep.pulls), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': `attachment; filename="${file}"` });
  });

  return app;
}
