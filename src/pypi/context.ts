import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { BlobCache } from '../core/cache.js';
import { AirlockError } from '../core/errors.js';
import type { LivePolicy } from '../core/live-policy.js';
import type { Recorder } from '../core/records.js';
import { Refusal, type RefusalRow } from '../http/refusal.js';
import type { AppEnv } from '../http/send.js';
import type { UpstreamHttp } from '../upstream/http.js';
import type { IndexSource, PypiIndex } from './index.js';
import type { Provenances } from './provenance.js';
import type { Continuity } from '../signing/continuity.js';

/** What the PyPI front-end's handlers (pages.ts, files.ts) are given. */
export interface PypiDeps {
  /** The policy in force (swapped whole on reload). */
  live: LivePolicy;
  index: PypiIndex;
  cache: BlobCache;
  http: UpstreamHttp;
  recorder: Recorder;
  log: Logger;
  /** Seconds clients may cache a project page. */
  pageMaxAge: number;
  /** PEP 740 provenance of files whose rule requires attested (provenance.ts). */
  provenance: Provenances;
  /** Continuity of signers per project (signing/continuity.ts), shared by the front-ends. */
  continuity: Continuity;
  /** Where pages link Airlock's verified provenance (https public_url + /pypi/integrity/), or null: no links. */
  provenanceBase: string | null;
}

/** HTTP reason phrases carry the policy's reason too: pip prints them ("403 Client Error: <reason>"). */
export function reasonPhrase(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}

/** An answer pip shows: the message as the body, the status line's reason and X-Airlock-Reason. */
export function refuse(c: Context<AppEnv>, status: number, message: string): Response {
  const outgoing = c.env?.outgoing;
  if (outgoing) outgoing.statusMessage = reasonPhrase(message);
  return c.text(`${message}\n`, status as 400, { 'x-airlock-reason': reasonPhrase(message), 'cache-control': 'no-store' });
}

/**
 * The page for a project, mapping "internal index lacks it" to the refusal it must be (dependency
 * confusion), and an upstream failure to its row (upstream_failed).
 */
export async function loadPage(d: PypiDeps, source: IndexSource, rule: string, row: RefusalRow) {
  const name = row.name;
  try {
    return await d.index.project(name, source);
  } catch (e) {
    if (e instanceof AirlockError && e.code === 'NOT_FOUND') {
      if (source === 'internal') {
        throw new Refusal({
          status: 403,
          code: 'internal_missing',
          rule,
          reason: `${name} is an internal name (policy rule ${rule}) but the internal index has no such project; the public project of that name is never served`,
          row,
        });
      }
      throw new AirlockError('NOT_FOUND', `the upstream index has no project ${name}`);
    }
    // The index failed (down, an unexpected answer) and no stale page could stand in (index.ts
    // serves one when it has it): on record as upstream_failed, answered as before.
    if (e instanceof AirlockError && e.code.startsWith('UPSTREAM_')) {
      throw new Refusal({ status: e.status, code: 'upstream_failed', decision: 'error', rule, reason: e.message, row, answer: e });
    }
    throw e;
  }
}
