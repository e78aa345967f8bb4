import { compare } from '@renovatebot/pep440';
import type { Policy } from '../policy/index.js';
import type { FilteredProject, PyProject } from './model.js';
import { admitFile } from './admit.js';

/**
 * Apply the policy to a parsed page: keep only the files admitFile admits (the same decision a
 * file GET makes) at `now`. `versions` lists exactly the versions that still have files.
 * `validUntil`: when a file left off for its age becomes old enough (the page must be filtered
 * again from then), Infinity when none will.
 */
export function filterProject(project: PyProject, policy: Policy, now: number): FilteredProject & { validUntil: number } {
  let validUntil = Infinity;
  const files: FilteredProject['files'] = [];
  const seen = new Set<string>();
  const versions = new Set<string>();
  for (const f of project.files) {
    if (seen.has(f.filename)) continue;
    const a = admitFile(policy, project.name, f, 'upstream', now);
    if (!a.allow) {
      if (a.status === 403 && a.until) validUntil = Math.min(validUntil, a.until);
      continue;
    }
    seen.add(f.filename);
    const attested = policy.pypi.requirement(a.rule)?.require === 'attested';
    files.push(attested ? { ...f, version: a.version, attested } : { ...f, version: a.version });
    versions.add(a.version);
  }
  return { name: project.name, files, versions: [...versions].sort(compare), validUntil };
}
