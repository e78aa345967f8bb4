import { valid as validVersion } from '@renovatebot/pep440';
import { normalizeName } from '../names/pypi.js';

const SDIST_EXTS = ['.tar.gz', '.zip', '.tar.bz2', '.tgz', '.tar.xz'];

export interface ParsedFilename {
  kind: 'wheel' | 'sdist';
  /** Normalised project name as it appears in the filename. */
  name: string;
  version: string;
}

/**
 * The project and version a distribution file belongs to. Wheels: `{name}-{ver}(-{build})?-{py}-{abi}-{plat}.whl`
 * (name escaped with `_`). Sdists: `{name}-{ver}.{ext}`; legacy sdists may have dashes in the name,
 * so the project's own normalised name is used to find the split. Returns null for anything that
 * does not parse or whose version is not PEP 440: such files are never offered.
 */
export function parseFilename(filename: string, project: string): ParsedFilename | null {
  if (filename.endsWith('.whl')) {
    const parts = filename.slice(0, -4).split('-');
    if (parts.length !== 5 && parts.length !== 6) return null;
    const [name, version] = parts;
    if (!validVersion(version)) return null;
    return { kind: 'wheel', name: normalizeName(name), version };
  }
  const ext = SDIST_EXTS.find((e) => filename.toLowerCase().endsWith(e));
  if (!ext) return null;
  const stem = filename.slice(0, -ext.length);
  // Try every dash as the name/version split; take the one whose name matches the project.
  for (let i = stem.indexOf('-'); i > 0; i = stem.indexOf('-', i + 1)) {
    const name = normalizeName(stem.slice(0, i));
    const version = stem.slice(i + 1);
    if (name === project && validVersion(version)) return { kind: 'sdist', name, version };
  }
  return null;
}
