import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TokenRecord, TokenStore } from '../storage/meta-store.js';

/** How long a console session lasts. */
export const SESSION_MS = 8 * 3600_000;

/**
 * Console sessions without server-side state, so any replica accepts them: the cookie is
 * `name.expiry.mac`, the MAC an HMAC-SHA256 keyed by the admin token's stored hash (never sent
 * to the browser). Revoking the token, or its expiry, ends every session made with it. The CSRF
 * token of a session is another MAC under the same key, embedded in its forms.
 */
export interface Session {
  name: string;
  expires: number;
  csrf: string;
}

const mac = (key: string, msg: string) => createHmac('sha256', key).update(msg).digest('base64url');

export function issueSession(token: TokenRecord, now = Date.now()): { cookie: string; session: Session } {
  const expires = now + SESSION_MS;
  const body = `${Buffer.from(token.name).toString('base64url')}.${expires}`;
  return { cookie: `${body}.${mac(token.hash, `session.${body}`)}`, session: { name: token.name, expires, csrf: mac(token.hash, `csrf.${body}`) } };
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The session a cookie proves, or null (malformed, expired, forged, token revoked or no longer admin). */
export async function readSession(cookie: string | undefined, tokens: TokenStore, now = Date.now()): Promise<Session | null> {
  if (!cookie || cookie.length > 512) return null;
  const parts = cookie.split('.');
  if (parts.length !== 3) return null;
  const [n, exp, m] = parts;
  const expires = Number(exp);
  if (!Number.isSafeInteger(expires) || expires <= now) return null;
  const name = Buffer.from(n, 'base64url').toString('utf8');
  // The name's live token: a revoked token's name may have been issued again (its old rows stay listed).
  const token = (await tokens.listTokens()).find((t) => t.name === name && t.revokedAt === null);
  if (!token || token.revokedAt !== null || !token.admin) return null;
  const body = `${n}.${exp}`;
  if (!same(m, mac(token.hash, `session.${body}`))) return null;
  return { name, expires, csrf: mac(token.hash, `csrf.${body}`) };
}

export function checkCsrf(session: Session, given: string | undefined): boolean {
  return typeof given === 'string' && same(given, session.csrf);
}

/** A random value for the login form's double-submit cookie (there is no session yet to bind it to). */
export const loginNonce = (): string => randomBytes(24).toString('base64url');
export const sameNonce = same;
