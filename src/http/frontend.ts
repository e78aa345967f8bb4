import type { Context, Hono } from 'hono';
import type { AppEnv } from './send.js';
import type { FastAnswer } from './fast.js';

/**
 * What a protocol front-end tells the root app about itself, so the root composes front-ends
 * without knowing any protocol: where it is mounted, which of its paths need no identity, and how
 * a refusal of identity looks in its clients' own terms (pip prompts on Basic, OCI clients run
 * the token flow, huggingface_hub prints X-Error-Message).
 */
export interface FrontEndInfo {
  /** The ecosystem label of its requests, records and metrics. */
  ecosystem: 'pypi' | 'oci' | 'hf';
  /** Mount prefix, without a trailing slash. */
  prefix: string;
  /** Full paths that need no identity (an OCI registry's token endpoint). */
  open?: string[];
  /** A 401 (no or bad credentials), 403 (not enough rights) or 429 (too many refusals: http/refusal.ts rateLimit) in the protocol's own format. */
  refuse(c: Context<AppEnv>, status: 401 | 403 | 429, message: string): Response;
}

export interface FrontEnd extends FrontEndInfo {
  app: Hono<AppEnv>;
  /** Answers some GETs at once outside the router (src/http/fast.ts), after the identity check. */
  fast?: FastAnswer;
}

/** Whether a request path falls under a front-end's prefix. */
export function under(prefix: string, path: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}
