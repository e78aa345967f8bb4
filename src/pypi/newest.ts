import { explain, rcompare } from '@renovatebot/pep440';
import { parseFilename } from './filenames.js';
import type { PyFile } from './model.js';

/**
 * The release pip would take (with `oldEnough`: among files old enough, issue 27's min_age) from a project's files: the newest final (not pre-, not dev-)
 * release with a file that is not yanked and has a sha256 (so it can be pinned). Null when there
 * is none.
 */
export function newestRelease(files: PyFile[], project: string, oldEnough: (f: PyFile) => boolean = () => true): string | null {
  const versions = new Set<string>();
  for (const f of files) {
    if (f.yanked !== false || !f.hashes.sha256 || !oldEnough(f)) continue;
    const p = parseFilename(f.filename, project);
    if (!p || p.name !== project) continue;
    const x = explain(p.version);
    if (x && !x.is_prerelease && !x.is_devrelease) versions.add(p.version);
  }
  return [...versions].sort(rcompare)[0] ?? null;
}
