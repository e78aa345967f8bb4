import type { Context } from 'hono';
import { html } from 'hono/html';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { tokenHash } from '../auth/tokens.js';
import { page, type ConsoleApp } from './context.js';
import { layout, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';
import { checkCsrf, checkLoginNonce, endSession, issueSession, loginNonce, NONCE_MS, readSession, SESSION_MS, type NonceCheck } from './session.js';

/**
 * Logging in and out of the console, and the session check in front of every other page. The
 * login form carries a signed, short-lived nonce also set as a cookie (a login CSRF check), and
 * exchanges an admin token for an HttpOnly, SameSite=Strict session cookie (session.ts). Past the
 * check, a GET without a session is sent to the login page, anything else refused, and every POST
 * must carry the session's CSRF token. Logout ends the session in the store, for every replica.
 */

const COOKIE = 'airlock_console';
const NONCE = 'airlock_login';

/** Why a login form's nonce was refused, as the form says it. */
const NONCE_REFUSED: Record<Exclude<NonceCheck, 'ok'>, string> = {
  missing: 'This form did not come from this console (it carries no login nonce): try again.',
  mismatch: 'This form did not come from this console (its nonce is not the one given to this browser): try again.',
  forged: 'This form did not come from this console (its nonce was not signed by it): try again.',
  expired: `This login form expired (a form is valid for ${NONCE_MS / 60_000} minutes): try again.`,
};

const cookieOptions = (d: ConsoleDeps) => ({ httpOnly: true, sameSite: 'Strict' as const, secure: d.secureCookies ?? false, path: '/-/ui' });

export function loginPage(nonce: string, error?: string): H {
  return layout(
    'Log in',
    'login',
    null,
    html`<p>An admin token logs you in (create one with <code>airlock token create --name NAME --admin</code>).</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/-/ui/login">
<input type="hidden" name="nonce" value="${nonce}">
<label for="token">Admin token<input id="token" name="token" type="password" autocomplete="off" required></label>
<p><button type="submit">Log in</button></p></form>`,
  );
}

/** GET and POST /login: open to anyone. */
export function loginRoutes(app: ConsoleApp, d: ConsoleDeps): void {
  const cookieOpts = cookieOptions(d);
  // The console's secret never changes once made: read once (again after a failure).
  let secret: Promise<string> | undefined;
  const consoleSecret = () => (secret ??= d.meta.consoleSecret().catch((e) => ((secret = undefined), Promise.reject(e))));
  const fresh = async (c: Context) => {
    const n = loginNonce(await consoleSecret());
    setCookie(c, NONCE, n, { ...cookieOpts, maxAge: NONCE_MS / 1000 });
    return n;
  };

  app.get('/login', async (c) => page(c, loginPage(await fresh(c))));

  app.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const nonce = checkLoginNonce(await consoleSecret(), getCookie(c, NONCE), form.nonce);
    if (nonce !== 'ok') {
      d.log.warn({ reqId: c.get('requestId'), path: c.req.path, nonce }, `console login refused: login nonce ${nonce} (login CSRF check)`);
      return page(c, loginPage(await fresh(c), NONCE_REFUSED[nonce]), 403);
    }
    const secretGiven = typeof form.token === 'string' ? form.token.trim() : '';
    const token = secretGiven && secretGiven.length <= 512 ? await d.meta.findToken(tokenHash(secretGiven)) : null;
    if (!token || token.revokedAt !== null || !token.admin) {
      d.log.warn({ reqId: c.get('requestId'), token: token?.name ?? null, admin: token?.admin ?? null }, 'console login refused');
      return page(
        c,
        loginPage(await fresh(c), token && !token.admin ? `Token ${token.name} is not an admin token.` : 'That token is not valid (unknown or revoked).'),
        401,
      );
    }
    const { cookie } = await issueSession(token, d.meta);
    setCookie(c, COOKIE, cookie, { ...cookieOpts, maxAge: SESSION_MS / 1000 });
    deleteCookie(c, NONCE, { path: '/-/ui' });
    d.log.info({ reqId: c.get('requestId'), token: token.name }, 'console login');
    return c.redirect('/-/ui', 303);
  });
}

/** The session check for every route registered after it, then POST /logout. */
export function sessionRoutes(app: ConsoleApp, d: ConsoleDeps): void {
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

  app.post('/logout', async (c) => {
    const s = c.get('session');
    await endSession(s, d.meta);
    d.log.info({ reqId: c.get('requestId'), token: s.name }, 'console logout: session ended');
    deleteCookie(c, COOKIE, { path: '/-/ui' });
    return c.redirect('/-/ui/login', 303);
  });
}
