import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ConsoleSessionStore, TokenRecord } from '../storage/meta-store.js';

/** How long a console session lasts. */
export const SESSION_MS = 8 * 3600_000;
/** How long a login form's nonce is accepted. */
export const NONCE_MS = 10 * 60_000;

/**
 * Console sessions, held server-side so that logging out or revoking the token ends them on every
 * replica: the cookie is `id.expiry.mac`, the id 32 random bytes, the MAC an HMAC-SHA256 keyed by
 * the admin token's stored hash (never sent to the browser). The metadata store (shared by the
 * replicas) keeps a row per live session under a hash of its id, joined to its token; a request
 * costs one indexed lookup of it (ConsoleSessionStore.findConsoleSession). Logout deletes the row;
 * revoking the token deletes its rows, and a revoked token's session would fail the join's check
 * anyway. The CSRF token of a session is another MAC under the same key, embedded in its forms.
 */
export interface Session {
  name: string;
  expires: number;
  csrf: string;
  /** The store's key for this session (a hash of the cookie's id): what logout deletes. */
  key: string;
}

const mac = (key: string, msg: string) => createHmac('sha256', key).update(msg).digest('base64url');
const keyOf = (id: string) => createHash('sha256').update(`console-session.${id}`).digest('hex');
const ID = /^[A-Za-z0-9_-]{43}$/;

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Start a session for an admin token: its row in the store, and the cookie that names it. */
export async function issueSession(token: TokenRecord, store: ConsoleSessionStore, now = Date.now()): Promise<{ cookie: string; session: Session }> {
  const id = randomBytes(32).toString('base64url');
  const expires = now + SESSION_MS;
  const body = `${id}.${expires}`;
  await store.createConsoleSession({ key: keyOf(id), tokenHash: token.hash, expiresAt: expires }, now);
  return {
    cookie: `${body}.${mac(token.hash, `session.${body}`)}`,
    session: { name: token.name, expires, key: keyOf(id), csrf: mac(token.hash, `csrf.${body}`) },
  };
}

/** The session a cookie proves, or null (malformed, expired, forged, logged out, token revoked or no longer admin). */
export async function readSession(cookie: string | undefined, store: ConsoleSessionStore, now = Date.now()): Promise<Session | null> {
  if (!cookie || cookie.length > 512) return null;
  const parts = cookie.split('.');
  if (parts.length !== 3) return null;
  const [id, exp, m] = parts;
  const expires = Number(exp);
  if (!ID.test(id) || !Number.isSafeInteger(expires) || expires <= now) return null;
  const row = await store.findConsoleSession(keyOf(id));
  if (!row || row.expiresAt !== expires) return null;
  const { token } = row;
  if (token.revokedAt !== null || !token.admin) return null;
  const body = `${id}.${exp}`;
  if (!same(m, mac(token.hash, `session.${body}`))) return null;
  return { name: token.name, expires, key: keyOf(id), csrf: mac(token.hash, `csrf.${body}`) };
}

/** Logout: the session's row goes, so its cookie is refused by every replica from now on. */
export async function endSession(session: Session, store: ConsoleSessionStore): Promise<boolean> {
  return store.endConsoleSession(session.key);
}

export function checkCsrf(session: Session, given: string | undefined): boolean {
  return typeof given === 'string' && same(given, session.csrf);
}

/**
 * The login form's nonce (there is no session yet to bind a CSRF token to): `random.expiry.mac`,
 * the MAC an HMAC-SHA256 keyed by the console's secret (the same on every replica), set both as a
 * SameSite=Strict cookie and in the form. A POST must carry the same value in both, with a MAC
 * this console made and an expiry not passed.
 */
export function loginNonce(secret: string, now = Date.now()): string {
  const body = `${randomBytes(18).toString('base64url')}.${now + NONCE_MS}`;
  return `${body}.${mac(secret, `login-nonce.${body}`)}`;
}

export type NonceCheck = 'ok' | 'missing' | 'mismatch' | 'forged' | 'expired';

/** Check a login POST's nonce: the cookie's and the form's. The MAC is checked before the expiry, so only a genuine nonce is called expired. */
export function checkLoginNonce(secret: string, cookie: string | undefined, form: unknown, now = Date.now()): NonceCheck {
  if (!cookie || typeof form !== 'string' || !form) return 'missing';
  if (!same(cookie, form)) return 'mismatch';
  const parts = form.split('.');
  if (form.length > 256 || parts.length !== 3) return 'forged';
  const [r, exp, m] = parts;
  if (!same(m, mac(secret, `login-nonce.${r}.${exp}`))) return 'forged';
  const expires = Number(exp);
  if (!Number.isSafeInteger(expires) || expires <= now) return 'expired';
  return 'ok';
}
