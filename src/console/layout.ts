import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { StoredPullRecord } from '../storage/meta-store.js';
import { parseSignature, signerLabel } from '../signing/record.js';

/**
 * What every console page shares: the stylesheet, the page layout (title, navigation, the log-out
 * form carrying the session's CSRF token), and the small pieces pages are built of (a time, an
 * artefact linked to its page, a filter select, the table of pull records). Pages are rendered
 * on the server with hono/html: every interpolated value is escaped (package, repository and file
 * names come from upstreams), and there is no script.
 */

export type H = HtmlEscapedString | Promise<HtmlEscapedString>;

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
.lookalike { color: var(--deny); border-left: 3px solid var(--deny); padding-left: .5rem; }
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
      ? html`<nav aria-label="Console">${link('', 'Overview')}${link('refusals', 'Refusals')}${link('advisories', 'Advisories')}${link('incidents', 'Incidents')}${link('records', 'Record')}</nav>
<form method="post" action="/-/ui/logout"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Log out</button></form>`
      : ''
  }</header>
<main id="main"><h1>${title}</h1>${body}</main></body></html>`;
}

export const when = (ts: number) => new Date(ts).toISOString().replace('T', ' ').slice(0, 19);
const artefactText = (r: StoredPullRecord) => `${r.name}${r.version ? ` ${r.version}` : ''}${r.filename ? ` · ${r.filename}` : ''}`;
/** The artefact's name, linked to its detail page (by digest when the row has one). */
export function artefact(r: StoredPullRecord): H {
  const q = new URLSearchParams({ ecosystem: r.ecosystem, name: r.name });
  if (r.version) q.set('version', r.version);
  if (r.sha256) q.set('sha256', r.sha256);
  return html`<a href="/-/ui/artefact?${q.toString()}">${artefactText(r)}</a>`;
}

export function select(name: string, label: string, value: string | undefined, options: string[]): H {
  return html`<label for="${name}">${label}<select id="${name}" name="${name}"><option value="">any</option>${options.map((o) => (o === value ? html`<option selected>${o}</option>` : html`<option>${o}</option>`))}</select></label>`;
}

/** What verified a row's artefact (issue 26), under its reason. */
function signerNote(r: StoredPullRecord): H | '' {
  const s = parseSignature(r.signature);
  return s ? html`<br><span class="muted signer">signer: ${signerLabel(s)}</span>` : '';
}

/** Rows a pulls table shows: an answer of 100,000s of rows is counted above it and exported whole, not drawn. */
export const TABLE_ROWS = 1000;

/** A table of the newest TABLE_ROWS of `all`, said to be `total` rows (all.length unless only those were kept), `whole` saying where the rest are. */
export function pullsTable(all: StoredPullRecord[], total = all.length, whole = 'the exports hold every row'): H {
  const rows = all.length > TABLE_ROWS ? all.slice(0, TABLE_ROWS) : all;
  const more =
    total > rows.length
      ? html`<p class="muted">The newest ${rows.length.toLocaleString('en')} of ${total.toLocaleString('en')} rows are shown; ${whole}.</p>`
      : '';
  return html`${more}<table><thead><tr><th scope="col">Time</th><th scope="col">Client</th><th scope="col">Artefact</th><th scope="col">Cache</th><th scope="col">Decision</th><th scope="col">Reason</th></tr></thead>
<tbody>${rows.map(
    (r) =>
      html`<tr><td>${when(r.ts)}</td><td><code>${r.client}</code></td><td>${r.ecosystem}: ${artefact(r)}</td><td>${r.cache}</td><td${r.decision === 'allow' ? '' : html` class="deny"`}>${r.decision}</td><td>${r.reason ?? ''}${r.count != null ? html`<br><span class="muted">×${r.count} until ${when(r.lastTs ?? r.ts)}</span>` : ''}${signerNote(r)}</td></tr>`,
  )}</tbody></table>`;
}
