import { html } from 'hono/html';
import { affected, type AffectedReport } from '../audit/affected.js';
import type { StoredPullRecord } from '../storage/meta-store.js';
import { VERSION } from '../version.js';
import { page, type ConsoleApp } from './context.js';
import { feedsSection } from './feeds.js';
import { layout, pullsTable, TABLE_ROWS, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';

/**
 * Advisories and incidents: who pulled what an advisory (or a package URL) affects, the same
 * answer as `airlock affected`, with its pulls exported as CSV (cells never read as formulas) or
 * as a CycloneDX document.
 */

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** "N pulls (M served), K clients served." (a folded row counts the pulls it stands for) */
function pullCounts(rep: AffectedReport): string {
  const c = rep.counts;
  return `${plural(c.pulls, 'pull')} (${c.served} served), ${plural(c.clientsServed, 'client')} served.`;
}

export function advisoriesPage(csrf: string, q: string, rep: AffectedReport | null, error?: string, feeds: H | string = ''): H {
  const exportUrl = `/-/ui/advisories.csv?${new URLSearchParams({ q }).toString()}`;
  const cdxUrl = `/-/ui/advisories.cdx.json?${new URLSearchParams({ q }).toString()}`;
  return layout(
    'Advisories and incidents',
    'advisories',
    csrf,
    html`<form class="filters" method="get" action="/-/ui/advisories">
<label for="q">Advisory id, alias or package URL<input id="q" name="q" value="${q}" size="40" placeholder="PYSEC-2024-1, CVE-2024-1, pkg:pypi/name@1.0"></label>
<button type="submit">Search</button></form>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
${
  rep
    ? html`${rep.advisory ? html`<h2>${rep.advisory.id}${rep.advisory.aliases.length ? html` <span class="muted">(${rep.advisory.aliases.join(', ')})</span>` : ''}</h2><p>${rep.advisory.summary}</p><p class="muted">packages: ${rep.advisory.packages.join(', ') || 'none'}${rep.advisory.withdrawn ? ' · withdrawn' : ''}</p>` : ''}
${rep.images.length ? html`<h2>Images containing an affected package</h2><ul>${rep.images.map((i) => html`<li><code>${i.digest}</code> (${i.repositories.join(', ')}${i.tags.length ? html`; tags ${i.tags.join(', ')}` : ''}): ${i.packages.map((p) => `${p.name} ${p.version}`).join(', ')}</li>`)}</ul>` : ''}
<h2>Every pull of what it affects</h2>
<p>${pullCounts(rep)} <a href="${exportUrl}" download>Export CSV</a> · <a href="${cdxUrl}" download>Export CycloneDX</a></p>
${pullsTable(rep.pulls, rep.counts.pulls)}`
    : ''
}
${feeds}`,
  );
}

/** One CSV cell: quoted, and never read as a formula by a spreadsheet (names come from upstreams). */
function cell(v: unknown): string {
  let s = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

export function pullsCsv(rows: StoredPullRecord[]): string {
  // A folded row (core/fold.ts) stands for `count` pulls, the last at last_time.
  const head = [
    'time',
    'client',
    'ecosystem',
    'name',
    'version',
    'filename',
    'sha256',
    'cache',
    'decision',
    'code',
    'reason',
    'request_id',
    'count',
    'last_time',
  ];
  const lines = rows.map((r) =>
    [
      new Date(r.ts).toISOString(),
      r.client,
      r.ecosystem,
      r.name,
      r.version,
      r.filename,
      r.sha256,
      r.cache,
      r.decision,
      r.code,
      r.reason,
      r.requestId,
      r.count,
      r.count != null ? new Date(r.lastTs ?? r.ts).toISOString() : null,
    ]
      .map(cell)
      .join(','),
  );
  return [head.join(','), ...lines].join('\r\n') + '\r\n';
}

/** GET /advisories, /advisories.cdx.json and /advisories.csv */
export function advisoriesRoutes(app: ConsoleApp, d: ConsoleDeps): void {
  // "Who pulled what this advisory affects?" (the same answer as `airlock affected`), and its CSV.
  // The page lists the newest TABLE_ROWS pulls (all are counted); the exports hold every one.
  const affectedOf = async (q: string, keep?: number) => {
    try {
      const live = d.live.current();
      return { rep: await affected(d.meta, q, live.policy, keep, live.advisories), error: undefined };
    } catch (e) {
      return { rep: null, error: (e as Error).message };
    }
  };
  app.get('/advisories', async (c) => {
    const q = (c.req.query('q') ?? '').trim().slice(0, 300);
    const { rep, error } = q ? await affectedOf(q, TABLE_ROWS) : { rep: null, error: undefined };
    return page(c, advisoriesPage(c.get('session').csrf, q, rep, error, await feedsSection(d)), error ? 404 : 200);
  });
  app.get('/advisories.cdx.json', async (c) => {
    const q = (c.req.query('q') ?? '').trim().slice(0, 300);
    const { rep, error } = await affectedOf(q);
    if (!rep) return c.text(error ?? 'no query', 404);
    // Loaded on first use, as /-/sbom does: the CycloneDX library is large.
    const { buildSbom } = await import('../audit/sbom.js');
    const json = await buildSbom(d.meta, {
      rows: rep.pulls,
      subject: rep.advisory ? `${rep.advisory.id}: artefacts served that it affects` : q,
      version: VERSION,
    });
    const file = `airlock-affected-${q.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.cdx.json`;
    return c.body(json, 200, { 'content-type': 'application/vnd.cyclonedx+json; version=1.6', 'content-disposition': `attachment; filename="${file}"` });
  });
  app.get('/advisories.csv', async (c) => {
    const q = (c.req.query('q') ?? '').trim().slice(0, 300);
    const { rep, error } = await affectedOf(q);
    if (!rep) return c.text(error ?? 'no query', 404);
    const file = `airlock-affected-${q.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.csv`;
    return c.body(pullsCsv(rep.pulls), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': `attachment; filename="${file}"` });
  });
}
