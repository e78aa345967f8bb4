import type { Context } from 'hono';
import { sendBytes, type AppEnv } from '../http/send.js';
import { deny, type OciDeps, type Target } from './context.js';
import { API_VERSION, OciError } from './errors.js';

/** The spec's n/last paging of a sorted list, with a Link to the next page under `path`. */
function page(c: Context<AppEnv>, sorted: string[], path: string): { items: string[]; headers: Record<string, string> } {
  let items = sorted;
  const last = c.req.query('last');
  if (last !== undefined) items = items.filter((x) => x > last);
  const nq = c.req.query('n');
  const headers: Record<string, string> = { ...API_VERSION, 'content-type': 'application/json' };
  if (nq !== undefined) {
    if (!/^\d{1,6}$/.test(nq)) throw new OciError(400, 'PAGINATION_NUMBER_INVALID', `n: expected a whole number, got ${JSON.stringify(nq.slice(0, 20))}`);
    const n = Number(nq);
    if (items.length > n) {
      items = items.slice(0, n);
      if (n > 0) headers.link = `<${path}?n=${n}&last=${encodeURIComponent(items[items.length - 1])}>; rel="next"`;
    }
  }
  return { items, headers };
}

export function tags(d: OciDeps, c: Context<AppEnv>, t: Target, name: string): Response {
  const policy = d.live.policy.oci;
  const dec = policy.decideRepository(t.repo);
  if (!dec.allow) deny(t, null, 'tags', dec);
  const { items, headers } = page(c, policy.tags(t.repo), `/v2/${name}/tags/list`);
  return sendBytes(c, 200, headers, Buffer.from(JSON.stringify({ name, tags: items })));
}

export function catalog(d: OciDeps, c: Context<AppEnv>): Response {
  const { items, headers } = page(c, d.live.policy.oci.repositories(), '/v2/_catalog');
  return sendBytes(c, 200, headers, Buffer.from(JSON.stringify({ repositories: items })));
}
