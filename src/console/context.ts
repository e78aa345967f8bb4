import type { Context, Hono } from 'hono';
import type { AppEnv } from '../http/send.js';
import type { H } from './layout.js';
import type { Session } from './session.js';

/**
 * The plumbing the console's route modules share: the app type (every request past the session
 * check carries its Session), the page size of the record lists, sending a rendered page, and
 * reading the list filters (the "before" cursor of the pager, and the rest of the query kept for
 * its "Older" link).
 */

export type ConsoleApp = Hono<AppEnv & { Variables: { session: Session } }>;

export const PAGE = 50;

export const page = (c: Context, body: H, status = 200) => c.html(body, status as 200);

export const filters = (c: Context) => {
  const q = c.req.query();
  const before = q.before && /^\d+$/.test(q.before) ? Number(q.before) : undefined;
  const query = new URLSearchParams(Object.entries(q).filter(([k, v]) => k !== 'before' && v)).toString();
  return { q, before, query };
};
