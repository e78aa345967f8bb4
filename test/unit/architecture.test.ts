import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import rules of the house (README Architecture), checked on every `npm test`:
 * - policy/ decides and does no I/O: it imports only itself, names/, versions/ and pure packages;
 * - names/ (each ecosystem's grammar) and versions/ (OS package version orders) import nothing else;
 * - the front-ends (pypi/, oci/, hf/) never import each other;
 * - core/, scan/ and image/ import no front-end;
 * - only the composition root (backends.ts) names concrete backends.
 */
const SRC = new URL('../../src/', import.meta.url).pathname;
const FRONT_ENDS = ['pypi', 'oci', 'hf'];
const PURE_FOLDERS = ['policy', 'names', 'versions'];
const PURE_PACKAGES = new Set(['picomatch', '@renovatebot/pep440']);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module a source file imports or re-exports from, resolved to a src-relative folder for local ones. */
function imports(file: string): { spec: string; folder: string | null }[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'";]*?from\s+'([^']+)'|(?:^|\n)\s*import\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)].map((m) => {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith('.')) return { spec, folder: null };
    const target = relative(SRC, join(file, '..', spec));
    return { spec, folder: target.includes('/') ? target.split('/')[0] : '.' };
  });
}

const all = files(SRC).map((f) => ({ rel: relative(SRC, f), folder: relative(SRC, f).includes('/') ? relative(SRC, f).split('/')[0] : '.', deps: imports(f) }));
const violations = (pred: (f: (typeof all)[number], d: { spec: string; folder: string | null }) => boolean) =>
  all.flatMap((f) => f.deps.filter((d) => pred(f, d)).map((d) => `${f.rel} imports ${d.spec}`));

describe('the import rules of the house', () => {
  it('reads the tree (the rules below are not vacuous)', () => {
    expect(all.length).toBeGreaterThan(50);
    expect(all.filter((f) => f.folder === 'policy').length).toBeGreaterThan(4);
  });
  it('policy imports only itself, names/, versions/ and pure packages (no I/O, no front-end)', () => {
    expect(violations((f, d) => f.folder === 'policy' && (d.folder === null ? !PURE_PACKAGES.has(d.spec) : !PURE_FOLDERS.includes(d.folder)))).toEqual([]);
  });
  it('names/ and versions/ import nothing but themselves', () => {
    expect(violations((f, d) => (f.folder === 'names' || f.folder === 'versions') && d.folder !== f.folder)).toEqual([]);
  });
  it('front-ends never import each other', () => {
    expect(violations((f, d) => FRONT_ENDS.includes(f.folder) && d.folder !== null && FRONT_ENDS.includes(d.folder) && d.folder !== f.folder)).toEqual([]);
  });
  it('core, scan and image import no front-end', () => {
    expect(violations((f, d) => ['core', 'scan', 'image'].includes(f.folder) && d.folder !== null && FRONT_ENDS.includes(d.folder))).toEqual([]);
  });
  it('concrete backends are named only where they are chosen (backends.ts)', () => {
    const named = all.filter((f) => /\b(FsBlobStore|SqliteMetaStore|PgMetaStore|S3BlobStore)\b/.test(readFileSync(join(SRC, f.rel), 'utf8'))).map((f) => f.rel);
    expect(named.filter((r) => !r.startsWith('storage/'))).toEqual(['backends.ts']);
  });
});
