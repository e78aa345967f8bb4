import { html } from 'hono/html';
import type { AdvisorySync } from '../storage/meta-store.js';
import { when, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';

/** "3 h 20 min": an age in words, for the freshness column. */
function age(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.round(seconds / 86_400)} days`;
}

/** The advisory feeds on the advisories page (issue 28): each source's freshness, then the recorded syncs, newest first. */
export async function feedsSection(d: ConsoleDeps): Promise<H> {
  const feeds = d.feeds?.() ?? [];
  if (feeds.length === 0) return html``;
  const syncs: AdvisorySync[] = await d.meta.advisorySyncs({ limit: 20 });
  return html`<h2>Advisory feeds</h2>
<table><thead><tr><th scope="col">Source</th><th scope="col">Last good sync</th><th scope="col">Age</th></tr></thead>
<tbody>${feeds.map(
    (f) =>
      html`<tr><td><code>${f.source}</code></td><td>${f.syncedAt === null ? 'never' : when(f.syncedAt)}</td><td class="age">${f.ageSeconds === null ? '' : age(f.ageSeconds)}</td></tr>`,
  )}</tbody></table>
<h3>Recent syncs</h3>
<table><thead><tr><th scope="col">Finished</th><th scope="col">Source</th><th scope="col">Mode</th><th scope="col">Outcome</th><th scope="col">Changed</th><th scope="col">Newest record</th><th scope="col">Error</th></tr></thead>
<tbody>${syncs.map(
    (s) =>
      html`<tr><td>${when(s.finishedAt)}</td><td><code>${s.source}</code></td><td>${s.mode}</td><td${s.outcome === 'failed' ? html` class="deny"` : ''}>${s.outcome}</td><td>${s.changed}</td><td>${s.highWater ?? ''}</td><td>${s.error ?? ''}</td></tr>`,
  )}</tbody></table>`;
}
