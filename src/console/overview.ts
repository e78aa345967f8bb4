import { html } from 'hono/html';
import { SCANNER_VERSION } from '../scan/report.js';
import { page, type ConsoleApp } from './context.js';
import { layout, when, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';

/**
 * The console's front page: pulls and refusals over the last 14 days (a chart and the same
 * numbers as a table), the cache, the hit ratio, the advisories, the policy in force and its last
 * reload, whether the record is being written, and which upstreams are failing.
 */

export interface DayCount {
  day: number;
  ecosystem: string;
  decision: string;
  count: number;
}

const COLOURS: Record<string, string> = { pypi: '#0b5cad', oci: '#1a7f37', hf: '#8250df', audit: '#57606a' };

/**
 * Pulls per day, served (stacked by ecosystem) beside refused, as server-rendered SVG with a
 * title and the same numbers in a table below it (screen readers read the table).
 */
function dailyChart(counts: DayCount[], days: number, now: number): H {
  const DAY = 86_400_000;
  const first = Math.floor(now / DAY) * DAY - (days - 1) * DAY;
  const cols = Array.from({ length: days }, (_, i) => first + i * DAY);
  const served = (d: number, e: string) => counts.filter((c) => c.day === d && c.ecosystem === e && c.decision === 'allow').reduce((s, c) => s + c.count, 0);
  const refused = (d: number) => counts.filter((c) => c.day === d && c.decision !== 'allow').reduce((s, c) => s + c.count, 0);
  const ecos = ['pypi', 'oci', 'hf'];
  const max = Math.max(
    1,
    ...cols.map((d) =>
      Math.max(
        ecos.reduce((s, e) => s + served(d, e), 0),
        refused(d),
      ),
    ),
  );
  const W = 40;
  const Hh = 160;
  const bars = cols.map((d, i) => {
    let y = Hh;
    const stack = ecos.map((e) => {
      const h = (served(d, e) / max) * (Hh - 10);
      y -= h;
      return h > 0 ? html`<rect x="${i * W + 4}" y="${y.toFixed(1)}" width="16" height="${h.toFixed(1)}" fill="${COLOURS[e]}"></rect>` : '';
    });
    const rh = (refused(d) / max) * (Hh - 10);
    return html`${stack}${rh > 0 ? html`<rect x="${i * W + 21}" y="${(Hh - rh).toFixed(1)}" width="14" height="${rh.toFixed(1)}" fill="#a40e26"></rect>` : ''}<text x="${i * W + 20}" y="${Hh + 14}" font-size="10" text-anchor="middle" fill="#57606a">${new Date(d).toISOString().slice(5, 10)}</text>`;
  });
  return html`<figure><svg role="img" aria-labelledby="chart-title" viewBox="0 0 ${days * W} ${Hh + 20}" width="${days * W}" height="${Hh + 20}"><title id="chart-title">Pulls per day over the last ${days} days: served by ecosystem, and refused</title>${bars}</svg>
<figcaption class="muted">Served: <span class="key-pypi">PyPI</span>, <span class="key-oci">OCI</span>, <span class="key-hf">Hugging Face</span> (stacked); refused: <span class="key-deny">red</span>.</figcaption></figure>
<table><caption class="muted">The same, per day</caption><thead><tr><th scope="col">Day</th><th scope="col">PyPI served</th><th scope="col">OCI served</th><th scope="col">Hugging Face served</th><th scope="col">Refused</th></tr></thead>
<tbody>${cols.map((d) => html`<tr><td>${new Date(d).toISOString().slice(0, 10)}</td>${ecos.map((e) => html`<td>${served(d, e)}</td>`)}<td>${refused(d)}</td></tr>`)}</tbody></table>`;
}

/** The trusted root in use (issue 26): version, source, age; null version when none is usable. */
export interface TrustCard {
  version: string | null;
  source?: string;
  ageSeconds: number | null;
  problem: string | null;
}

/** A root older than this is flagged: Sigstore rotates its keys and logs, and a rotation is imported by hand. */
export const TRUST_ROOT_OLD_DAYS = 365;

function trustCard(t: TrustCard): H {
  if (!t.version)
    return html`<div class="card"><span>Trusted root</span><b><span class="deny">missing</span></b><span class="error" role="alert">${t.problem ?? 'no usable Sigstore trusted root'}: every signature rule refuses until one is imported (airlock trust import FILE)</span></div>`;
  const days = Math.floor((t.ageSeconds ?? 0) / 86_400);
  const old = days > TRUST_ROOT_OLD_DAYS;
  return html`<div class="card"><span>Trusted root</span><b>${old ? html`<span class="deny">${days} days old</span>` : `${days} days old`}</b><span class="muted">version <code>${t.version}</code> (${t.source ?? 'unknown'})</span>${old ? html`<span class="error" role="alert">older than ${TRUST_ROOT_OLD_DAYS} days: check for a Sigstore root rotation and import it (airlock trust import FILE)</span>` : ''}</div>`;
}

export function overviewPage(
  csrf: string,
  o: {
    blobs: number;
    bytes: number;
    refusals: number;
    pulls: number;
    advisories: number;
    recordOk: string | null;
    policy: { pypi: number; oci: number; hf: number };
    daily: DayCount[];
    now: number;
    advisoriesNewest?: string;
    hits: { hits: number; served: number };
    policyVersion: { file: string; sha256: string };
    scanner: string;
    reload: { at: number; error?: string } | null;
    upstreams: { host: string; failures: number; openUntil: number }[];
    trust?: TrustCard;
    /** The alert outbox (issue 28): waiting, and failing delivery. */
    alerts?: { pending: number; failing: number };
  },
): H {
  const hitRatio = o.hits.served ? `${Math.round((100 * o.hits.hits) / o.hits.served)}%` : '-';
  return layout(
    'Overview',
    '',
    csrf,
    html`<div class="cards">
<div class="card"><span>Pulls, last 14 days</span><b>${o.pulls}</b></div>
<div class="card"><span>Refused among them</span><b>${o.refusals}</b><a href="/-/ui/refusals">see why</a></div>
<div class="card"><span>Cached blobs</span><b>${o.blobs}</b><span class="muted">${(o.bytes / 2 ** 20).toFixed(1)} MiB</span></div>
<div class="card"><span>Cache hit ratio</span><b>${hitRatio}</b><span class="muted">${o.hits.hits} of ${o.hits.served} served since this server started</span></div>
<div class="card"><span>Advisories imported</span><b>${o.advisories}</b><span class="muted">${o.advisoriesNewest ? `newest record modified ${o.advisoriesNewest.slice(0, 10)} (${Math.floor((o.now - Date.parse(o.advisoriesNewest)) / 86_400_000)} days ago)` : 'none imported: airlock advisories import'}</span></div>
<div class="card"><span>Policy</span><b>${o.policy.pypi + o.policy.oci + o.policy.hf}</b><span class="muted">${o.policy.pypi} PyPI, ${o.policy.oci} OCI, ${o.policy.hf} Hugging Face</span><span class="muted">version <code>${o.policyVersion.sha256.slice(0, 12)}</code> of ${o.policyVersion.file}</span><span class="muted">scanner ${o.scanner}</span></div>
<div class="card"><span>Record</span><b>${o.recordOk ? html`<span class="deny">failing</span>` : 'written'}</b>${o.recordOk ? html`<span class="error">${o.recordOk}</span>` : ''}</div>
<div class="card"><span>Last policy reload</span><b>${o.reload ? (o.reload.error ? html`<span class="deny">failed</span>` : 'applied') : 'none'}</b><span class="muted">${o.reload ? `${when(o.reload.at)} UTC` : 'since start'}</span>${o.reload?.error ? html`<span class="error">${o.reload.error}</span>` : ''}</div>
${o.trust ? trustCard(o.trust) : ''}
${o.alerts ? html`<div class="card"><span>Alerts</span><b>${o.alerts.failing ? html`<span class="deny">${o.alerts.failing} failing</span>` : `${o.alerts.pending} waiting`}</b><a href="/-/ui/incidents">incidents and deliveries</a></div>` : ''}
<div class="card"><span>Upstreams</span><b>${o.upstreams.length ? html`<span class="deny">${o.upstreams.length} failing</span>` : 'answering'}</b>${o.upstreams.map((u) => html`<span class="error">${u.host}: ${u.failures} failures${u.openUntil > o.now ? ', not asked for now' : ''}</span>`)}</div>
</div>
<h2>Pulls per day</h2>
${dailyChart(o.daily, 14, o.now)}`,
  );
}

/** GET / */
export function overviewRoutes(app: ConsoleApp, d: ConsoleDeps): void {
  app.get('/', async (c) => {
    const now = Date.now();
    const daily = await d.meta.dailyCounts(Math.floor(now / 86_400_000) * 86_400_000 - 13 * 86_400_000);
    const totals = await d.meta.blobTotals();
    const health = d.recordHealth();
    // The policy, advisories and version of one moment: a reload may land during the await below.
    const live = d.live.current();
    return page(
      c,
      overviewPage(c.get('session').csrf, {
        pulls: daily.reduce((s, x) => s + x.count, 0),
        refusals: daily.filter((x) => x.decision !== 'allow').reduce((s, x) => s + x.count, 0),
        daily,
        now,
        blobs: totals.count,
        bytes: totals.bytes,
        advisories: live.advisories.size,
        advisoriesNewest: live.advisories.newest,
        recordOk: health ? health.message : null,
        policy: { pypi: live.policy.pypi.size, oci: live.policy.oci.size, hf: live.policy.hf.size },
        reload: d.live.lastReload,
        upstreams: d.upstreams(),
        hits: await d.hits(),
        policyVersion: live.version,
        scanner: SCANNER_VERSION,
        alerts: await d.meta.alerts.alertCounts(),
        trust: d.trust
          ? { version: d.trust.current()?.version ?? null, source: d.trust.current()?.source, ageSeconds: d.trust.ageSeconds(now), problem: d.trust.problem }
          : undefined,
      }),
    );
  });
}
