import type { FrontEndInfo } from '../http/frontend.js';

/** The OCI distribution API at /v2: a 401 names Airlock's token endpoint (the registry token flow). */
export const OCI: FrontEndInfo = {
  ecosystem: 'oci',
  prefix: '/v2',
  open: ['/v2/token'],
  refuse(c, status, message) {
    const h: Record<string, string> = { 'cache-control': 'no-store', 'docker-distribution-api-version': 'registry/2.0' };
    if (status === 401) h['www-authenticate'] = `Bearer realm="${new URL(c.req.url).origin}/v2/token",service="airlock"`;
    return c.json({ errors: [{ code: status === 401 ? 'UNAUTHORIZED' : status === 429 ? 'TOOMANYREQUESTS' : 'DENIED', message, detail: null }] }, status, h);
  },
};
