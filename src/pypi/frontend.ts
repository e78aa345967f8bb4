import type { FrontEndInfo } from '../http/frontend.js';

/** The PyPI simple API at /pypi: pip and uv ask for Basic credentials on a 401. */
export const PYPI: FrontEndInfo = {
  ecosystem: 'pypi',
  prefix: '/pypi',
  refuse(c, status, message) {
    const h: Record<string, string> = { 'cache-control': 'no-store', 'x-airlock-reason': message };
    if (status === 401) h['www-authenticate'] = 'Basic realm="airlock"';
    return c.text(`${message}\n`, status, h);
  },
};
