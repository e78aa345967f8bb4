import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { StoredPullRecord } from '../storage/meta-store.js';
import type { AffectedReport } from '../audit/affected.js';
import { approvalFor } from './approval.js';
import { RECORD_CODE_LIST } from '../core/record-codes.js';

type H = HtmlEscapedString | Promise<HtmlEscapedString>;

/**
 * The console's pages, rendered on the server with hono/html: every interpolated value is
 * escaped (package, repository and file names come from upstreams), and there is no script.
 */
export const CSS = `
:root { color-scheme: light; --fg:#1b1f24; --muted:#57606a; --line:#d0d7de; --bg:#fff; --accent:#0b5cad; --deny:#a40e26; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display:flex; gap:1.5rem; align-items:center; padding:.6rem 1.2rem; border-bottom:1px solid var(--line); }
header strong { font-size:1.05rem; }
nav a { margin-right:1rem; color: var(--accent); }
nav a[aria-current=page] { font-weight:600; text-decoration:none; color: var(--fg); }
main { padding: 1rem 1.2rem; max-width: 80rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align:left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
th { font-weight:600; }
code, pre { font-family: ui-monospace, monospace; font-size: .85rem; }
pre { background:#f6f8fa; padding:.5rem; overflow-x:auto; margin:.3rem 0; }
.deny { color: var(--deny); font-weight:600; }
.muted { color: var(--muted); }
form.filters { display:flex; gap:.8rem; flex-wrap:wrap; align-items:end; margin-bottom:1rem; }
label { display:flex; flex-direction:column; font-size:.85rem; gap:.2rem; }
input, select, button { font: inherit; padding:.3rem .4rem; }
button { cursor:pointer; }
.cards { display:flex; gap:1rem; flex-wrap:wrap; }
.card { border:1px solid var(--line); padding:.7rem 1rem; min-width: 12rem; }
.card b { display:block; font-size:1.4rem; }
.error { color: var(--deny); }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #f0b429; outline-offset: 1px; }
figure { margin: .5rem 0 1rem; }
.key-pypi { color:#0b5cad; font-weight:600; } .key-oci { color:#1a7f37; font-weight:600; } .key-hf { color:#8250df; font-weight:600; } .key-deny { color:#a40e26; font-weight:600; }
`;

export function layout(title: string, current: string, csrf: string | null, body: H): H {
  const url = (href: string) => (href ? `/-/ui/${href}` : '/-/ui');
  const link = (href: string, label: string) =>
    current === href ? html`<a href="${url(href)}" aria-current="page">${label}</a>` : html`<a href="${url(href)}">${label}</a>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Airlock</title><link rel="stylesheet" href="/-/ui/static/console.css"></head>
<body><header><strong>Airlock</strong>${
    csrf
      ? html`<nav aria-label="Console">${link('', 'Overview')}${link('refusals', 'Refusals')}${link('advisories', 'Advisories')}${link('records', 'Record')}</nav>
<form method="post" action="/-/ui/logout"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Log out</button></form>`
      : ''
  }</header>
<main id="main"><h1>${title}</h1>${body}</main></body></html>`;
}

export function loginPage(nonce: string, error?: string): H {
  return layout(
    'Log in',
    'login',
    null,
    html`<p>An admin token logs you in (create one with <code>airlock token create --name NAME --admin</code>).</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/-/ui/login">
<input type="hidden" name="nonce" value="${nonce}">
<label for="token">Admin token<input id="token" name="token" type="password" autocomplete="off" required></label>
<p><button type="submit">Log in</button></p></form>`,
  );
}

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
  },
): H {
  return layout(
    'Overview',
    '',
    csrf,
    html`<div class="cards">
<div class="card"><span>Pulls, last 14 days</span><b>${o.pulls}</b></div>
<div class="card"><span>Refused among them</span><b>${o.refusals}</b><a href="/-/ui/refusals">see why</a></div>
<div class="card"><span>Cached blobs</span><b>${o.blobs}</b><span class="muted">${(o.bytes / 2 ** 20).toFixed(1)} MiB</span></div>
<div class="card"><span>Cache hit ratio</span><b>${o.hits.served ? `${Math.round((100 * o.hits.hits) / o.hits.served)}%` : '-'}</b><span class="muted">${o.hits.hits} of ${o.hits.served} served since this server started</span></div>
<div class="card"><span>Advisories imported</span><b>${o.advisories}</b><span class="muted">${o.advisoriesNewest ? `newest record modified ${o.advisoriesNewest.slice(0, 10)} (${Math.floor((o.now - Date.parse(o.advisoriesNewest)) / 86_400_000)} days ago)` : 'none imported: airlock advisories import'}</span></div>
<div class="card"><span>Policy</span><b>${o.policy.pypi + o.policy.oci + o.policy.hf}</b><span class="muted">${o.policy.pypi} PyPI, ${o.policy.oci} OCI, ${o.policy.hf} Hugging Face</span><span class="muted">version <code>${o.policyVersion.sha256.slice(0, 12)}</code> of ${o.policyVersion.file}</span><span class="muted">scanner ${o.scanner}</span></div>
<div class="card"><span>Record</span><b>${o.recordOk ? html`<span class="deny">failing</span>` : 'written'}</b>${o.recordOk ? html`<span class="error">${o.recordOk}</span>` : ''}</div>
<div class="card"><span>Last policy reload</span><b>${o.reload ? (o.reload.error ? html`<span class="deny">failed</span>` : 'applied') : 'none'}</b><span class="muted">${o.reload ? `${when(o.reload.at)} UTC` : 'since start'}</span>${o.reload?.error ? html`<span class="error">${o.reload.error}</span>` : ''}</div>
<div class="card"><span>Upstreams</span><b>${o.upstreams.length ? html`<span class="deny">${o.upstreams.length} failing</span>` : 'answering'}</b>${o.upstreams.map((u) => html`<span class="error">${u.host}: ${u.failures} failures${u.openUntil > o.now ? ', not asked for now' : ''}</span>`)}</div>
</div>
<h2>Pulls per day</h2>
${dailyChart(o.daily, 14, o.now)}`,
  );
}

const when = (ts: number) => new Date(ts).toISOString().replace('T', ' ').slice(0, 19);
const artefactText = (r: StoredPullRecord) => `${r.name}${r.version ? ` ${r.version}` : ''}${r.filename ? ` · ${r.filename}` : ''}`;
/** The artefact's name, linked to its detail page (by digest when the row has one). */
function artefact(r: StoredPullRecord): H {
  const q = new URLSearchParams({ ecosystem: r.ecosystem, name: r.name });
  if (r.version) q.set('version', r.version);
  if (r.sha256) q.set('sha256', r.sha256);
  return html`<a href="/-/ui/artefact?${q.toString()}">${artefactText(r)}</a>`;
}

function select(name: string, label: string, value: string | undefined, options: string[]): H {
  return html`<label for="${name}">${label}<select id="${name}" name="${name}"><option value="">any</option>${options.map((o) => (o === value ? html`<option selected>${o}</option>` : html`<option>${o}</option>`))}</select></label>`;
}

/** The console's refusal filter: every code a row can carry (core/record-codes.ts), none that is never written. */
export const CODES: string[] = [...RECORD_CODE_LIST];

function pager(base: string, rows: StoredPullRecord[], limit: number): H {
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
  const a = approvalFor(r);
  return html`<section class="refusal" aria-label="Refusal ${r.id}">
<h2><span class="deny">${r.code ?? r.decision}</span> ${artefact(r)}</h2>
<p class="muted">${when(r.ts)} · ${r.ecosystem} · client <code>${r.client}</code> · rule <code>${r.rule ?? '-'}</code>${r.requestId ? html` · request <code>${r.requestId}</code>` : ''}</p>
<p>${r.reason ?? ''}</p>
<p>${a.note}</p>
${a.command ? html`<pre class="approval-command" aria-label="Approval command">${a.command}</pre>` : ''}
${a.yaml ? html`<pre class="approval-yaml" aria-label="Policy change">${a.yaml}</pre>` : ''}
</section>`;
})}
${pager(f.query, rows, limit)}`,
  );
}

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
${select('decision', 'Decision', f.decision, ['allow', 'deny', 'error'])}
<button type="submit">Search</button></form>
${pullsTable(rows)}
${pager(f.query, rows, limit)}
${chainBlock(csrf, chain)}`,
  );
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function pullsTable(rows: StoredPullRecord[]): H {
  return html`<table><thead><tr><th scope="col">Time</th><th scope="col">Client</th><th scope="col">Artefact</th><th scope="col">Cache</th><th scope="col">Decision</th><th scope="col">Reason</th></tr></thead>
<tbody>${rows.map(
    (r) =>
      html`<tr><td>${when(r.ts)}</td><td><code>${r.client}</code></td><td>${r.ecosystem}: ${artefact(r)}</td><td>${r.cache}</td><td${r.decision === 'allow' ? '' : html` class="deny"`}>${r.decision}</td><td>${r.reason ?? ''}</td></tr>`,
  )}</tbody></table>`;
}

export function advisoriesPage(csrf: string, q: string, rep: AffectedReport | null, error?: string): H {
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
<p>${plural(rep.pulls.length, 'pull')} (${rep.pulls.filter((p) => p.decision === 'allow').length} served), ${plural(new Set(rep.pulls.filter((p) => p.decision === 'allow').map((p) => p.client)).size, 'client')} served. <a href="${exportUrl}" download>Export CSV</a> · <a href="${cdxUrl}" download>Export CycloneDX</a></p>
${pullsTable(rep.pulls)}`
    : ''
}`,
  );
}

/** One CSV cell: quoted, and never read as a formula by a spreadsheet (names come from upstreams). */
function cell(v: unknown): string {
  let s = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

export function pullsCsv(rows: StoredPullRecord[]): string {
  const head = ['time', 'client', 'ecosystem', 'name', 'version', 'filename', 'sha256', 'cache', 'decision', 'code', 'reason', 'request_id'];
  const lines = rows.map((r) =>
    [new Date(r.ts).toISOString(), r.client, r.ecosystem, r.name, r.version, r.filename, r.sha256, r.cache, r.decision, r.code, r.reason, r.requestId]
      .map(cell)
      .join(','),
  );
  return [head.join(','), ...lines].join('\r\n') + '\r\n';
}

export interface ArtefactDetail {
  ecosystem: string;
  name: string;
  version?: string;
  sha256?: string;
  size: number | null;
  pulls: StoredPullRecord[];
  /** The rule of the newest allowed pull: what allows it. */
  rule: string | null;
  scan: { scanner: string; report: string } | null;
  vulnerabilities: { id: string; aliases: string[]; summary: string; severity?: string; fixed?: string; package?: string }[];
  /** Its CycloneDX components (JSON), when it was served. */
  sbom: string | null;
}

export function artefactPage(csrf: string, a: ArtefactDetail): H {
  const refused = a.pulls.filter((p) => p.decision !== 'allow');
  let scan: string | null = null;
  if (a.scan) {
    try {
      scan = JSON.stringify(JSON.parse(a.scan.report), null, 2);
    } catch {
      scan = a.scan.report;
    }
  }
  return layout(
    `${a.name}${a.version ? ` ${a.version}` : ''}`,
    'artefact',
    csrf,
    html`<table><tbody>
<tr><th scope="row">Ecosystem</th><td>${a.ecosystem}</td></tr>
<tr><th scope="row">Name</th><td>${a.name}</td></tr>
<tr><th scope="row">Version or reference</th><td>${a.version ?? '-'}</td></tr>
<tr><th scope="row">SHA-256</th><td><code>${a.sha256 ?? '-'}</code></td></tr>
<tr><th scope="row">Size</th><td>${a.size ?? '-'}</td></tr>
<tr><th scope="row">Allowed by</th><td><code>${a.rule ?? 'no pull was allowed'}</code></td></tr>
</tbody></table>
<h2>Vulnerabilities</h2>
${a.vulnerabilities.length ? html`<ul>${a.vulnerabilities.map((v) => html`<li><strong>${v.id}</strong>${v.aliases.length ? ` (${v.aliases.join(', ')})` : ''}${v.package ? ` in ${v.package}` : ''}${v.severity ? ` · ${v.severity}` : ''}${v.fixed ? ` · fixed in ${v.fixed}` : ''}: ${v.summary}</li>`)}</ul>` : html`<p>None among the imported advisories${a.ecosystem === 'oci' ? ' (for an image manifest whose inventory was read; a layer has none of its own)' : ''}.</p>`}
<h2>SBOM fragment</h2>
${a.sbom ? html`<pre aria-label="CycloneDX components">${a.sbom}</pre>` : html`<p class="muted">Not served: no SBOM entry.</p>`}
<h2>Inspection</h2>
${scan ? html`<p class="muted">scanner ${a.scan!.scanner}</p><pre>${scan}</pre>` : html`<p class="muted">No inspection report (only model files are inspected).</p>`}
<h2>Pulls (${a.pulls.length}, ${refused.length} refused)</h2>
${pullsTable(a.pulls)}`,
  );
}
