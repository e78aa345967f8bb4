import type { FrontEndInfo } from '../http/frontend.js';

/** The Hugging Face Hub API at /hf: clients print X-Error-Message. */
export const HF: FrontEndInfo = {
  ecosystem: 'hf',
  prefix: '/hf',
  refuse(c, status, message) {
    const h: Record<string, string> = { 'cache-control': 'no-store', 'x-error-message': message };
    if (status === 401) h['www-authenticate'] = 'Bearer realm="airlock"';
    return c.json({ error: message }, status, h);
  },
};
