import { html } from 'hono/html';
import type { LookalikeWarning } from '../names/lookalike.js';
import type { StoredPullRecord } from '../storage/meta-store.js';
import { approvalFor } from './approval.js';
import { RECORD_CODE_LIST } from '../core/record-codes.js';
import { artefact, layout, select, when, type H } from './layout.js';

/**
 * The refusals page (every refused pull, filtered by ecosystem, reason code and day, each with
 * what would approve it: approval.ts) and the reason codes its filter offers. The other pages
 * live in a module each (overview.ts, records.ts, artefact.ts, advisories.ts, login.ts), the
 * shared layout in layout.ts.
 */

export const CODES: string[] = [...RECORD_CODE_LIST];

export function pager(base: string, rows: StoredPullRecord[], limit: number): H {
  if (rows.length < limit) return html``;
  const next = new URLSearchParams(base);
  next.set('before', String(rows[rows.length - 1].id));
  return html`<p><a href="?${next.toString()}">Older</a></p>`;
}

export function refusalsPage(
  csrf: string,
  f: { ecosystem?: string; code?: string; from?: string; to?: string; query: string },
  rows: StoredPullRecord[],
  limit: number,
  lookalikes: (r: StoredPullRecord) => LookalikeWarning[] = () => [],
): H {
  return layout(
    'Refusals',
    'refusals',
    csrf,
    html`<form class="filters" method="get" action="/-/ui/refusals">
${select('ecosystem', 'Ecosystem', f.ecosystem, ['pypi', 'oci', 'hf', 'admin'])}
${select('code', 'Reason', f.code, CODES)}
<label for="from">From (UTC day)<input id="from" name="from" type="date" value="${f.from ?? ''}"></label>
<label for="to">To (UTC day)<input id="to" name="to" type="date" value="${f.to ?? ''}"></label>
<button type="submit">Filter</button></form>
${rows.length === 0 ? html`<p>No refusals match.</p>` : ''}
${rows.map((r) => {
  const a = approvalFor(r, lookalikes(r));
  return html`<section class="refusal" aria-label="Refusal ${r.id}">
<h2><span class="deny">${r.code ?? r.decision}</span> ${artefact(r)}</h2>
<p class="muted">${when(r.ts)}${r.count ? html` · ×${r.count} repeats until ${when(r.lastTs ?? r.ts)}` : ''} · ${r.ecosystem} · client <code>${r.client}</code> · rule <code>${r.rule ?? '-'}</code>${r.requestId ? html` · request <code>${r.requestId}</code>` : ''}</p>
<p>${r.reason ?? ''}</p>
${a.lookalike ? html`<p class="lookalike" role="note" aria-label="Look-alike warning">${a.lookalike}</p>` : ''}
<p>${a.note}</p>
${a.command ? html`<pre class="approval-command" aria-label="Approval command">${a.command}</pre>` : ''}
${a.yaml ? html`<pre class="approval-yaml" aria-label="Policy change">${a.yaml}</pre>` : ''}
</section>`;
})}
${pager(f.query, rows, limit)}`,
  );
}
