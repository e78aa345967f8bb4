import { AirlockError } from './errors.js';

/** A time filter given as ISO-8601 or epoch milliseconds (API query and CLI flag alike). */
export function parseTime(v: string | undefined, field: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(n)) throw new AirlockError('BAD_REQUEST', `${field}: expected an ISO-8601 time or epoch milliseconds, got ${JSON.stringify(v)}`);
  return n;
}
