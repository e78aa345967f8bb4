import { html } from 'hono/html';
import { parseSignature, signerLabel, type RecordSignature } from '../signing/record.js';
import { pullsIn, type PullFilter, type StoredPullRecord } from '../storage/meta-store.js';
import { VERSION } from '../version.js';
import { eachPull } from '../storage/pull-pages.js';
import { page, type ConsoleApp } from './context.js';
import { layout, pullsTable, TABLE_ROWS, type H } from './layout.js';
import type { ConsoleDeps } from './routes.js';

/**
 * The page of one artefact (a file, an image manifest, a layer): what it is, the rule that allows
 * it, its known vulnerabilities (an image's stored inventory judged as the gate does; a PyPI
 * release matched against the advisories), its SBOM fragment, its inspection report and every
 * pull of it.
 */

export interface ArtefactDetail {
  ecosystem: string;
  name: string;
  version?: string;
  sha256?: string;
  size: number | null;
  /** Its newest pulls (TABLE_ROWS are shown); `total` and `refused` count every pull of it when only those were kept. */
  pulls: StoredPullRecord[];
  total?: number;
  refused?: number;
  /** The newest allowed pull that was signature-checked, when only the newest pulls were kept. */
  signed?: StoredPullRecord | null;
  /** The rule of the newest allowed pull: what allows it. */
  rule: string | null;
  scan: { scanner: string; report: string } | null;
  vulnerabilities: { id: string; aliases: string[]; summary: string; severity?: string; fixed?: string; package?: string }[];
  /** Its CycloneDX components (JSON), when it was served. */
  sbom: string | null;
}

/** The signer of the newest allowed pull that was signature-checked (issue 26), with what verified it. */
function signedBy(pulls: StoredPullRecord[]): H {
  let s: RecordSignature | null = null;
  for (const p of pulls) if (p.decision === 'allow' && (s = parseSignature(p.signature))) break;
  if (!s) return html`<span class="muted">not checked (no signing rule applied to a served pull)</span>`;
  const facts = [
    s.identity && s.publisher ? `identity ${s.identity}` : null,
    s.bundleDigest ? `bundle ${s.bundleDigest}` : null,
    s.tlogIndex ? `log index ${s.tlogIndex}` : null,
    s.integratedTime ? `logged ${new Date(s.integratedTime * 1000).toISOString()}` : null,
    s.trustVersion ? `trusted root ${s.trustVersion}` : null,
    s.changedFrom ? `WARNING: earlier versions were signed by ${s.changedFrom}` : null,
  ].filter((x): x is string => x !== null);
  return html`<strong>${signerLabel(s)}</strong>${facts.length ? html`<br><span class="muted">${facts.join(' · ')}</span>` : ''}`;
}

export function artefactPage(csrf: string, a: ArtefactDetail): H {
  const total = a.total ?? pullsIn(a.pulls);
  const refused = a.refused ?? pullsIn(a.pulls.filter((p) => p.decision !== 'allow'));
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
<tr><th scope="row">Signed by</th><td>${signedBy(a.signed !== undefined ? (a.signed ? [a.signed] : []) : a.pulls)}</td></tr>
</tbody></table>
<h2>Vulnerabilities</h2>
${a.vulnerabilities.length ? html`<ul>${a.vulnerabilities.map((v) => html`<li><strong>${v.id}</strong>${v.aliases.length ? ` (${v.aliases.join(', ')})` : ''}${v.package ? ` in ${v.package}` : ''}${v.severity ? ` · ${v.severity}` : ''}${v.fixed ? ` · fixed in ${v.fixed}` : ''}: ${v.summary}</li>`)}</ul>` : html`<p>None among the imported advisories${a.ecosystem === 'oci' ? ' (for an image manifest whose inventory was read; a layer has none of its own)' : ''}.</p>`}
<h2>SBOM fragment</h2>
${a.sbom ? html`<pre aria-label="CycloneDX components">${a.sbom}</pre>` : html`<p class="muted">Not served: no SBOM entry.</p>`}
<h2>Inspection</h2>
${scan ? html`<p class="muted">scanner ${a.scan!.scanner}</p><pre>${scan}</pre>` : html`<p class="muted">No inspection report (only model files are inspected).</p>`}
<h2>Pulls (${total}, ${refused} refused)</h2>
${pullsTable(a.pulls, total, 'the counts above are of every pull')}`,
  );
}

/** GET /artefact */
export function artefactRoutes(app: ConsoleApp, d: ConsoleDeps): void {
  // One artefact: identity, what allows it, its vulnerabilities, its inspection, every pull.
  app.get('/artefact', async (c) => {
    const q = c.req.query();
    const ecosystem = ['pypi', 'oci', 'hf'].includes(q.ecosystem) ? (q.ecosystem as PullFilter['ecosystem']) : undefined;
    const sha256 = q.sha256 && /^[0-9a-f]{64}$/.test(q.sha256) ? q.sha256 : undefined;
    const name = (q.name ?? '').slice(0, 300);
    if (!ecosystem || !name) return c.text('ecosystem and name are required', 400);
    const version = q.version ? q.version.slice(0, 300) : undefined;
    const filter: PullFilter = sha256 ? { sha256 } : { ecosystem, name, version };
    // Every pull of it is counted (a popular artefact has 100,000s), the newest TABLE_ROWS kept for the table.
    const pulls: StoredPullRecord[] = [];
    let total = 0;
    let refused = 0;
    let allowed: StoredPullRecord | undefined;
    let signed: StoredPullRecord | null = null;
    await eachPull(d.meta, filter, (p) => {
      // A folded row stands for `count` refusals.
      total += p.count ?? 1;
      if (p.decision !== 'allow') refused += p.count ?? 1;
      else {
        allowed ??= p;
        if (!signed && parseSignature(p.signature)) signed = p;
      }
      if (pulls.length < TABLE_ROWS) pulls.push(p);
    });
    const blob = sha256 ? await d.meta.getBlob(sha256) : null;
    let vulnerabilities: { id: string; aliases: string[]; summary: string; severity?: string; fixed?: string; package?: string }[] = [];
    if (ecosystem === 'oci' && sha256) {
      // An image manifest: its stored inventory judged against the advisories, as the gate does.
      const stored = await d.meta.inventories.getInventory(`sha256:${sha256}`);
      if (stored) {
        const verdict = d.live.policy.judgeImage(name, [`sha256:${sha256}`], JSON.parse(stored.inventory), Date.now());
        vulnerabilities = verdict.findings.map((f) => ({
          id: f.id,
          aliases: f.aliases,
          summary: f.summary,
          severity: f.severity.label,
          fixed: f.fixed,
          package: `${f.package.name} ${f.package.version}`,
        }));
      }
    } else if (ecosystem === 'pypi' && version) {
      vulnerabilities = d.live.advisories
        .matchPypi(name, version, sha256)
        .map((m) => ({ id: m.id, aliases: m.aliases, summary: m.summary, severity: m.severity.label, fixed: m.fixed }));
    }
    return page(
      c,
      artefactPage(c.get('session').csrf, {
        ecosystem,
        name,
        version,
        sha256,
        size: blob?.size ?? allowed?.size ?? null,
        pulls,
        total,
        refused,
        signed,
        rule: allowed?.rule ?? null,
        scan: sha256 ? await d.meta.getScan(sha256) : null,
        vulnerabilities,
        // The SBOM fragment of what was served of it (the same document /-/sbom writes).
        sbom: allowed
          ? JSON.stringify(
              JSON.parse(await (await import('../audit/sbom.js')).buildSbom(d.meta, { pulls: filter, subject: name, version: VERSION })).components ?? [],
              null,
              2,
            )
          : null,
      }),
    );
  });
}
