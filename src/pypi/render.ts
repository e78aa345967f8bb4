import type { FilteredProject } from './model.js';
import { provenancePath } from './provenance.js';

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": '#39' }[c]};`);
}

/** The URL of a file relative to the project page (`/pypi/simple/<name>/`), so it works behind any host or prefix. */
export function fileHref(project: string, filename: string): string {
  return `../../files/${encodeURIComponent(project)}/${encodeURIComponent(filename)}`;
}

/**
 * A file's provenance URL (PEP 740): only for files whose rule requires attested (Airlock verified
 * it, or refuses the file), and only under an https base (`provenanceBase`, from public_url);
 * otherwise none, as the simple API requires.
 */
function provenanceUrl(p: FilteredProject, f: FilteredProject['files'][number], base: string | null | undefined): string | null {
  return base && f.attested ? base + provenancePath(p.name, f.version, f.filename) : null;
}

function metadataSha256(f: FilteredProject['files'][number]): string | undefined {
  return f.coreMetadata && f.coreMetadata !== true ? f.coreMetadata.sha256 : undefined;
}

/** PEP 503 HTML, regenerated from the model: no upstream markup survives. */
export function renderHtml(p: FilteredProject, provenanceBase?: string | null): string {
  const lines = [
    '<!DOCTYPE html>',
    '<html>',
    '<head>',
    '<meta name="pypi:repository-version" content="1.1">',
    `<title>Links for ${esc(p.name)}</title>`,
    '</head>',
    '<body>',
    `<h1>Links for ${esc(p.name)}</h1>`,
  ];
  for (const f of p.files) {
    let a = `<a href="${esc(fileHref(p.name, f.filename))}#sha256=${f.hashes.sha256}"`;
    if (f.requiresPython) a += ` data-requires-python="${esc(f.requiresPython)}"`;
    if (f.yanked !== false) a += ` data-yanked="${esc(f.yanked)}"`;
    const md = metadataSha256(f);
    if (md) a += ` data-core-metadata="sha256=${md}" data-dist-info-metadata="sha256=${md}"`;
    const prov = provenanceUrl(p, f, provenanceBase);
    if (prov) a += ` data-provenance="${esc(prov)}"`;
    lines.push(`${a}>${esc(f.filename)}</a><br>`);
  }
  lines.push('</body>', '</html>', '');
  return lines.join('\n');
}

/** PEP 691 JSON (API 1.1 when every file has a size, as 1.1 requires; else 1.0). */
export function renderJson(p: FilteredProject, provenanceBase?: string | null): string {
  const allSized = p.files.every((f) => f.size !== undefined);
  const files = p.files.map((f) => {
    const o: Record<string, unknown> = {
      filename: f.filename,
      url: fileHref(p.name, f.filename),
      hashes: { sha256: f.hashes.sha256 },
    };
    if (f.requiresPython) o['requires-python'] = f.requiresPython;
    o.yanked = f.yanked === false ? false : f.yanked === '' ? true : f.yanked;
    const md = metadataSha256(f);
    if (md) o['core-metadata'] = { sha256: md };
    if (f.size !== undefined) o.size = f.size;
    if (f.uploadTime) o['upload-time'] = f.uploadTime;
    const prov = provenanceUrl(p, f, provenanceBase);
    if (prov) o.provenance = prov;
    return o;
  });
  return JSON.stringify({ meta: { 'api-version': allSized ? '1.1' : '1.0' }, name: p.name, files, versions: p.versions });
}

export function renderRootHtml(names: string[]): string {
  const links = names.map((n) => `<a href="${esc(encodeURIComponent(n))}/">${esc(n)}</a><br>`);
  return [
    '<!DOCTYPE html>',
    '<html>',
    '<head><meta name="pypi:repository-version" content="1.1"><title>Airlock: approved projects</title></head>',
    '<body>',
    ...links,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

export function renderRootJson(names: string[]): string {
  return JSON.stringify({ meta: { 'api-version': '1.1' }, projects: names.map((name) => ({ name })) });
}
