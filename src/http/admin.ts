import type { Context, Hono } from 'hono';
import type { Recorder } from '../core/records.js';
import type { Metrics } from '../obs/metrics.js';
import { isDecision, type PullFilter, type PullLog } from '../storage/meta-store.js';
import type { InventoryStore } from '../storage/inventory-store.js';
import { AirlockError } from '../core/errors.js';
import { parseTime } from '../core/time.js';
import { VERSION } from '../version.js';
import type { AppEnv } from './send.js';

export interface AdminDeps {
  metrics: Metrics;
  meta: PullLog & { inventories: InventoryStore };
  recorder: Recorder;
  /** What keeps this replica from serving now (database or blob store unreachable); empty when ready. */
  unready: () => Promise<string[]>;
  /** What an operator should know that does not stop serving (the record near its size budget); shown by /-/readyz. */
  warnings?: () => string[];
}

/** The admin area (/-/...): refuses in plain JSON. Its probes need no identity. */
export const ADMIN = {
  ecosystem: 'admin' as const,
  open: ['/-/healthz', '/-/readyz', '/-/metrics'],
  refuse: (c: Context<AppEnv>, status: 401 | 403 | 429, message: string): Response => {
    const h: Record<string, string> = { 'cache-control': 'no-store' };
    if (status === 401) h['www-authenticate'] = 'Basic realm="airlock"';
    return c.json({ error: status === 401 ? 'UNAUTHORIZED' : status === 429 ? 'TOO_MANY_REQUESTS' : 'DENIED', message }, status, h);
  },
};

/** The probes (health, readiness, metrics) and the admin endpoints (records, SBOM), on the root app. */
export function mountAdmin(app: Hono<AppEnv>, d: AdminDeps): void {
  // Red while pull records cannot be written: every artefact is withheld then (fail closed).
  app.get('/-/healthz', (c) => {
    const failing = d.recorder.health();
    if (!failing) return c.json({ status: 'ok' });
    return c.json({ status: 'failing', record: `pull records cannot be written since ${new Date(failing.at).toISOString()}: ${failing.message}` }, 503);
  });
  // Readiness (for a load balancer or Kubernetes): the stores answer and records can be written.
  // Liveness is /-/healthz.
  app.get('/-/readyz', async (c) => {
    const problems = await d.unready();
    const failing = d.recorder.health();
    if (failing) problems.push(`pull records cannot be written: ${failing.message}`);
    const warnings = d.warnings?.() ?? [];
    if (problems.length) return c.json({ status: 'unready', problems, ...(warnings.length ? { warnings } : {}) }, 503);
    return c.json(warnings.length ? { status: 'ready', warnings } : { status: 'ready' });
  });
  app.get('/-/metrics', async (c) => c.body(await d.metrics.registry.metrics(), 200, { 'content-type': d.metrics.registry.contentType }));
  app.get('/-/records', async (c) => {
    const q = c.req.query();
    const f: PullFilter = {
      ecosystem: q.ecosystem as PullFilter['ecosystem'],
      name: q.name,
      decision: q.decision as PullFilter['decision'],
      code: q.code || undefined,
      before: q.before && /^\d+$/.test(q.before) ? Number(q.before) : undefined,
      since: parseTime(q.since, 'since'),
      until: parseTime(q.until, 'until'),
      limit: q.limit ? Math.max(1, Math.min(Number(q.limit) || 100, 10_000)) : 100,
    };
    if (f.ecosystem && !['pypi', 'hf', 'oci', 'audit'].includes(f.ecosystem))
      throw new AirlockError('BAD_REQUEST', 'ecosystem: expected pypi, hf, oci or audit');
    if (f.decision && !isDecision(f.decision)) throw new AirlockError('BAD_REQUEST', 'decision: expected allow, deny or error');
    return c.json({ records: await d.meta.listPulls(f) });
  });

  app.get('/-/sbom', async (c) => {
    const q = c.req.query();
    if (q.ecosystem && !['pypi', 'hf', 'oci'].includes(q.ecosystem)) throw new AirlockError('BAD_REQUEST', 'ecosystem: expected pypi, hf or oci');
    // Loaded on first use: the CycloneDX library (and its validators) cost start-up time and memory.
    const { buildSbom } = await import('../audit/sbom.js');
    const json = await buildSbom(d.meta, {
      since: parseTime(q.since, 'since'),
      until: parseTime(q.until, 'until'),
      client: q.client,
      ecosystem: q.ecosystem as PullFilter['ecosystem'],
      version: VERSION,
    });
    return c.body(json, 200, { 'content-type': 'application/vnd.cyclonedx+json; version=1.6' });
  });
}
