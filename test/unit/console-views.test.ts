import { html } from 'hono/html';
import { describe, expect, it } from 'vitest';
import { advisoriesPage } from '../../src/console/advisories.js';
import { artefactPage } from '../../src/console/artefact.js';
import { layout, type H } from '../../src/console/layout.js';
import { loginPage } from '../../src/console/login.js';
import { overviewPage } from '../../src/console/overview.js';
import { recordsPage } from '../../src/console/records.js';
import { refusalsPage } from '../../src/console/views.js';
import type { StoredPullRecord } from '../../src/storage/meta-store.js';

/**
 * The console's html`` templates are written as compact HTML: no indentation, no tag broken across
 * lines, no self-closing void elements. An HTML formatter run over them (as prettier's embedded
 * formatting once did) changes what the pages render: whitespace between inline elements, text
 * split across lines. Every page variant is rendered here and checked for those marks.
 */

const now = Date.UTC(2026, 11, 3, 12);
const DAY = 86_400_000;
const sha = 'a'.repeat(64);
const base = { client: 'ci-bot', size: 1234, cache: 'miss', ts: now - 3_600_000, durationMs: 5 } as const;
const rows = [
  {
    ...base,
    id: 9,
    ecosystem: 'pypi',
    name: 'requests',
    version: '2.31.0',
    filename: 'requests-2.31.0.tar.gz',
    sha256: sha,
    decision: 'allow',
    rule: 'pypi:requests',
  },
  {
    ...base,
    id: 8,
    ecosystem: 'pypi',
    name: 'evil',
    version: '1.0',
    sha256: sha,
    decision: 'deny',
    code: 'version_not_allowed',
    reason: 'outside >=2',
    requestId: 'r8',
  },
  { ...base, id: 7, ecosystem: 'oci', name: 'library/python', version: '3.12', decision: 'deny', code: 'tag_not_pinned', reason: 'tag not pinned' },
  { ...base, id: 6, ecosystem: 'hf', name: 'org/model', version: 'main', sha256: sha, decision: 'deny', code: 'content_refused', reason: 'pickle' },
] as unknown as StoredPullRecord[];

const overview = {
  blobs: 12,
  bytes: 5 * 2 ** 20,
  refusals: 3,
  pulls: 18,
  advisories: 40,
  recordOk: 'disk full',
  policy: { pypi: 3, oci: 2, hf: 1 },
  daily: [
    { day: Math.floor(now / DAY) * DAY, ecosystem: 'pypi', decision: 'allow', count: 5 },
    { day: Math.floor(now / DAY) * DAY, ecosystem: 'pypi', decision: 'deny', count: 2 },
  ],
  now,
  advisoriesNewest: '2026-11-20T10:00:00Z',
  hits: { hits: 3, served: 7 },
  policyVersion: { file: 'policy.yaml', sha256: 'c'.repeat(64) },
  scanner: 'scan/3',
  reload: { at: now, error: 'bad yaml' },
  upstreams: [{ host: 'pypi.org', failures: 3, openUntil: now + 1000 }],
};
const report = {
  query: 'PYSEC-1',
  advisory: { id: 'PYSEC-1', aliases: ['CVE-1'], summary: 'leaks', packages: ['pkg:pypi/requests'], withdrawn: true },
  images: [
    { digest: `sha256:${sha}`, repositories: ['library/python'], tags: ['3.12'], packages: [{ type: 'deb', name: 'openssl', version: '3.0.0', source: null }] },
  ],
  pulls: rows,
  counts: { pulls: 4, served: 1, clientsServed: 1 },
};
const detail = { ecosystem: 'pypi', name: 'requests', version: '2.31.0', sha256: sha, size: 1234, pulls: rows, rule: 'pypi:requests' };

const pages: Record<string, H> = {
  layout: layout('Title', 'records', 'csrf', html`<p>body</p>`),
  'layout without a session': layout('Title', 'login', null, html`<p>body</p>`),
  login: loginPage('nonce'),
  'login with an error': loginPage('nonce', 'That token is not valid.'),
  overview: overviewPage('csrf', overview),
  records: recordsPage('csrf', { query: '' }, rows, rows.length, { at: now, rows: 4, head: 'h' }),
  'records, chain broken': recordsPage('csrf', { query: '' }, [], 50, { at: now, rows: 4, head: null, problem: 'row 2: altered' }),
  'records, chain not verified': recordsPage('csrf', { query: '' }, rows, 50, null),
  'artefact (PyPI file)': artefactPage('csrf', {
    ...detail,
    scan: null,
    vulnerabilities: [{ id: 'PYSEC-1', aliases: ['CVE-1'], summary: 'leaks', severity: 'HIGH', fixed: '2.32.0' }],
    sbom: '[]',
  }),
  'artefact (image)': artefactPage('csrf', { ...detail, ecosystem: 'oci', name: 'library/python', scan: null, vulnerabilities: [], sbom: null }),
  'artefact (inspected model file)': artefactPage('csrf', {
    ...detail,
    ecosystem: 'hf',
    scan: { scanner: 's', report: '{"a":1}' },
    vulnerabilities: [],
    sbom: null,
  }),
  advisories: advisoriesPage('csrf', '', null),
  'advisories with an error': advisoriesPage('csrf', 'X', null, 'no advisory X'),
  'advisories with a report': advisoriesPage('csrf', 'PYSEC-1', report),
  'advisories with a report, newest only': advisoriesPage('csrf', 'PYSEC-1', { ...report, counts: { pulls: 250_000, served: 249_000, clientsServed: 40 } }),
  refusals: refusalsPage('csrf', { query: '' }, rows.slice(1), 3),
  'refusals, none': refusalsPage('csrf', { query: '' }, [], 50),
};

describe('console pages', () => {
  for (const [name, page] of Object.entries(pages)) {
    it(`${name}: compact HTML, as written (no formatter reflow)`, async () => {
      // <pre> holds text laid out on purpose (a policy change, an SBOM, a report).
      const text = String(await page).replace(/<pre[^>]*>[\s\S]*?<\/pre>/g, '<pre></pre>');
      expect(text.match(/^[ \t]+\S.*$/m)?.[0], 'an indented line').toBeUndefined();
      expect(text.match(/<[^<>]*\n[^<>]*>/)?.[0], 'a tag broken across lines').toBeUndefined();
      expect(text.match(/.{0,40}\/>/)?.[0], 'a self-closing tag').toBeUndefined();
      expect(text.match(/.{0,40}[ \t]+$/m)?.[0], 'trailing whitespace').toBeUndefined();
    });
  }

  it('text that reads as one line renders on one line', async () => {
    expect(String(await pages.overview)).toContain(
      '<div class="card"><span>Cache hit ratio</span><b>43%</b><span class="muted">3 of 7 served since this server started</span></div>',
    );
    expect(String(await pages.overview)).toMatch(/<text x="\d+" y="174" font-size="10" text-anchor="middle" fill="#57606a">12-03<\/text>/);
    expect(String(await pages['advisories with a report'])).toContain(
      '<p>4 pulls (1 served), 1 client served. <a href="/-/ui/advisories.csv?q=PYSEC-1" download>',
    );
    // An answer of more rows than a page lists says so (audit/affected.ts counts every row, lists the newest).
    expect(String(await pages['advisories with a report, newest only'])).toContain(
      '<p class="muted">The newest 4 of 250,000 rows are shown; the exports hold every row.</p>',
    );
    expect(String(await pages['advisories with a report'])).not.toContain('The newest');
    expect(String(await pages['artefact (image)'])).toContain(
      '<p>None among the imported advisories (for an image manifest whose inventory was read; a layer has none of its own).</p>',
    );
  });
});
