import { html } from 'hono/html';
import { verifyChain } from '../core/chain.js';
import { DECISIONS, isDecision, type PullFilter, type StoredPullRecord } from '../storage/meta-store.js';
import { filters, page, PAGE, type ConsoleApp } from './context.js';
import { layout, pullsTable, select, when, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';
import { pager } from './views.js';

/**
 * The record page: every pull record, searched by name, ecosystem and decision, newest first,
 * and the hash chain over them verified on request (the last result is shown; the walk takes
 * seconds for millions of rows, so it is never run per page view).
 */

export interface ChainStatus {
  at: number;
  rows: number;
  head: string | null;
  problem?: string;
}

function chainBlock(csrf: string, s: ChainStatus | null): H {
  return html`<section aria-label="Chain verification"><h2>Chain verification</h2>
${
  s
    ? s.problem
      ? html`<p class="error" role="alert">BROKEN: ${s.problem} (verified ${when(s.at)} UTC, ${s.rows} rows)</p>`
      : html`<p>Intact: ${s.rows} rows, head <code>${s.head ?? 'none'}</code> (verified ${when(s.at)} UTC). Keep the head elsewhere to detect removal of the newest rows.</p>`
    : html`<p class="muted">Not verified by this server since it started (<code>airlock audit verify</code> runs it from the command line).</p>`
}
<form method="post" action="/-/ui/records/verify"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Verify the chain now</button></form></section>`;
}

export function recordsPage(
  csrf: string,
  f: { name?: string; ecosystem?: string; decision?: string; query: string },
  rows: StoredPullRecord[],
  limit: number,
  chain: ChainStatus | null,
): H {
  return layout(
    'Record',
    'records',
    csrf,
    html`<form class="filters" method="get" action="/-/ui/records">
<label for="name">Name<input id="name" name="name" value="${f.name ?? ''}"></label>
${select('ecosystem', 'Ecosystem', f.ecosystem, ['pypi', 'oci', 'hf', 'audit'])}
${select('decision', 'Decision', f.decision, [...DECISIONS])}
<button type="submit">Search</button></form>
${pullsTable(rows)}
${pager(f.query, rows, limit)}
${chainBlock(csrf, chain)}`,
  );
}

/** GET /records and POST /records/verify. */
export function recordsRoutes(app: ConsoleApp, d: ConsoleDeps): void {
  // The chain is walked on request (seconds for millions of rows), its last result shown.
  let chain: ChainStatus | null = null;
  app.get('/records', async (c) => {
    const { q, before, query } = filters(c);
    const ecosystem = ['pypi', 'oci', 'hf', 'audit'].includes(q.ecosystem) ? (q.ecosystem as PullFilter['ecosystem']) : undefined;
    const decision = isDecision(q.decision) ? q.decision : undefined;
    const name = q.name ? q.name.slice(0, 300) : undefined;
    const rows = await d.meta.listPulls({ ecosystem, decision, name, before, limit: PAGE });
    return page(c, recordsPage(c.get('session').csrf, { name, ecosystem, decision, query }, rows, PAGE, chain));
  });

  app.post('/records/verify', async (c) => {
    const r = await verifyChain(d.meta);
    chain = { at: Date.now(), rows: r.rows, head: r.head, problem: r.problem ? `row ${r.problem.id}: ${r.problem.message}` : undefined };
    d.log[r.problem ? 'error' : 'info'](
      { reqId: c.get('requestId'), token: c.get('session').name, rows: r.rows, problem: chain.problem },
      'record chain verified from the console',
    );
    return c.redirect('/-/ui/records', 303);
  });
}
