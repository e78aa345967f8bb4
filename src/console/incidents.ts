import { html } from 'hono/html';
import { impactOf, type Impact } from '../alerts/impact.js';
import type { AlertDocument } from '../alerts/message.js';
import { affected, type AffectedReport } from '../audit/affected.js';
import type { AlertRow } from '../storage/alert-store.js';
import { page, type ConsoleApp } from './context.js';
import { layout, pullsTable, TABLE_ROWS, when, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';

/**
 * Incidents (issue 28): where an alert links to. The list shows the alerts sent or waiting, and
 * those whose delivery is failing; an advisory's page shows what it affects among the artefacts
 * served now (alerts/impact.ts), every client that pulled them and when, every pull of what it
 * affects since (the refusals of the old version, the pulls of the fixed one: the verification),
 * the exports of that record, and each alert's deliveries.
 */

const LIMIT = 500;

function status(r: AlertRow, now: number): H {
  if (r.deliveredAt) return html`delivered ${when(r.deliveredAt)}`;
  if (r.lastError) return html`<span class="deny">failing</span>: ${r.lastError} (attempt ${r.attempts}; next ${when(Math.max(r.nextAt, now))})`;
  return html`waiting`;
}

function deliveriesTable(rows: AlertRow[], now: number): H {
  return html`<table aria-label="Alert deliveries"><thead><tr><th scope="col">Queued</th><th scope="col">Advisory</th><th scope="col">Artefact</th><th scope="col">Channel</th><th scope="col">Delivery</th></tr></thead>
<tbody>${rows.map(
    (r) =>
      html`<tr><td>${when(r.createdAt)}</td><td><a href="/-/ui/incidents/${encodeURIComponent(r.advisoryId)}">${r.advisoryId}</a> <span class="muted">${r.modified}</span></td><td><code>${r.artefact}</code></td><td>${r.channel}</td><td>${status(r, now)}</td></tr>`,
  )}</tbody></table>`;
}

export function incidentsPage(csrf: string, rows: AlertRow[], counts: { pending: number; failing: number }, now: number): H {
  return layout(
    'Incidents',
    'incidents',
    csrf,
    html`<div class="cards"><div class="card"><span>Alerts waiting</span><b>${counts.pending}</b></div><div class="card"><span>Failing delivery</span><b>${counts.failing ? html`<span class="deny">${counts.failing}</span>` : '0'}</b>${counts.failing ? html`<span class="error" role="alert">a channel is not taking alerts: see the errors below (retried with backoff)</span>` : ''}</div></div>
<h2>Alerts, newest first</h2>
${rows.length ? deliveriesTable(rows, now) : html`<p>No alerts yet. Alerts are sent when an imported advisory newly affects an artefact Airlock served (notify.webhooks).</p>`}`,
  );
}

function artefactSection(i: Impact): H {
  const sev = i.malicious ? 'MALICIOUS' : (i.severity.label ?? 'unrated');
  return html`<section aria-label="Affected ${i.artefact}"><h3><code>${i.artefact}</code> <span class="deny">${sev}${i.severity.score !== undefined ? ` ${i.severity.score}` : ''}</span></h3>
<p>${i.packages.map((p) => `${p.name} ${p.version}`).join(', ')} (${i.ecosystem}) · ${i.fixed ? html`fixed in <b>${i.fixed}</b>` : 'no fixed version named'}${i.repositories.length ? html` · repositories ${i.repositories.join(', ')}` : ''}${i.tags.length ? html` · tags ${i.tags.join(', ')}` : ''}</p>
<ul>${i.files.map((f) => html`<li>${f.filename ?? ''} <code>${f.sha256}</code></li>`)}</ul>
<table aria-label="Clients that pulled ${i.artefact}"><thead><tr><th scope="col">Client</th><th scope="col">Pulls</th><th scope="col">First</th><th scope="col">Last</th></tr></thead>
<tbody>${i.clients.map((c) => html`<tr><td><code>${c.client}</code></td><td>${c.pulls}</td><td>${when(c.first)}</td><td>${when(c.last)}</td></tr>`)}</tbody></table></section>`;
}

export function incidentPage(
  csrf: string,
  id: string,
  head: { summary: string; aliases: string[]; withdrawn: boolean } | null,
  impacts: Impact[],
  rep: Pick<AffectedReport, 'pulls' | 'counts'> | null,
  alerts: AlertRow[],
  now: number,
): H {
  const q = new URLSearchParams({ q: id }).toString();
  return layout(
    `Incident ${id}`,
    'incidents',
    csrf,
    html`${head ? html`<p>${head.summary}${head.aliases.length ? html` <span class="muted">(${head.aliases.join(', ')})</span>` : ''}${head.withdrawn ? html` <b>withdrawn or no longer imported</b>` : ''}</p>` : html`<p class="error">The advisory is no longer imported; its alerts are below.</p>`}
<h2>Affected artefacts served, and who pulled them</h2>
${impacts.length ? impacts.map(artefactSection) : html`<p>No artefact Airlock served is affected now.</p>`}
<h2>Every pull of what it affects</h2>
<p>After a re-pin, the next pulls of the old version are refused and those of the fixed version served: both show here. <a href="/-/ui/advisories.csv?${q}" download>Export CSV</a> · <a href="/-/ui/advisories.cdx.json?${q}" download>Export CycloneDX</a></p>
${pullsTable(rep?.pulls ?? [], rep?.counts.pulls)}
<h2>Alert deliveries</h2>
${alerts.length ? deliveriesTable(alerts, now) : html`<p>No alert was queued for this advisory.</p>`}`,
  );
}

/** GET /incidents and /incidents/:id */
export function incidentsRoutes(app: ConsoleApp, d: ConsoleDeps): void {
  app.get('/incidents', async (c) => {
    const [rows, counts] = await Promise.all([d.meta.alerts.listAlerts({ limit: LIMIT }), d.meta.alerts.alertCounts()]);
    return page(c, incidentsPage(c.get('session').csrf, rows, counts, Date.now()));
  });
  app.get('/incidents/:id', async (c) => {
    const id = c.req.param('id').slice(0, 200);
    const live = d.live.current();
    const rec = live.advisories.get(id);
    const alerts = await d.meta.alerts.listAlerts({ advisoryId: id, limit: LIMIT });
    if (!rec && !alerts.length)
      return page(c, layout('Incident', 'incidents', c.get('session').csrf, html`<p class="error">No imported advisory ${id}, and no alert for it.</p>`), 404);
    const impacts = rec ? await impactOf(d.meta, rec, live.policy) : [];
    const rep = rec ? await affected(d.meta, id, live.policy, TABLE_ROWS, live.advisories) : null;
    const doc = alerts[0] ? (JSON.parse(alerts[0].payload) as AlertDocument) : null;
    const head = rec
      ? { summary: rec.summary ?? '', aliases: [...new Set([...(rec.aliases ?? []), ...(rec.upstream ?? [])])], withdrawn: false }
      : doc && { summary: doc.advisory.summary, aliases: doc.advisory.aliases, withdrawn: true };
    return page(c, incidentPage(c.get('session').csrf, id, head, impacts, rep, alerts, Date.now()));
  });
}
