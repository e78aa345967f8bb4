import { compare } from '@renovatebot/pep440';
import type { Policy } from '../policy/index.js';
import type { FilteredProject, PyProject } from './model.js';
import { parseFilename } from './filenames.js';

/**
 * Apply the policy to a parsed page: keep only files whose name matches the project, whose
 * version is PEP 440, that carry a sha256 (nothing unverifiable is offered) and that the policy
 * allows, and that no refusing advisory affects. `versions` lists exactly the versions that
 * still have files.
 */
export function filterProject(project: PyProject, policy: Policy): FilteredProject {
  const files: FilteredProject['files'] = [];
  const seen = new Set<string>();
  const versions = new Set<string>();
  for (const f of project.files) {
    if (seen.has(f.filename)) continue;
    const parsed = parseFilename(f.filename, project.name);
    if (!parsed || parsed.name !== project.name) continue;
    const sha = f.hashes.sha256;
    if (!sha) continue;
    if (!policy.pypi.decideFile(project.name, parsed.version, sha).allow) continue;
    // Versions an imported advisory refuses are not offered, so resolvers pick another one.
    if (policy.pypiAdvisory(project.name, parsed.version, sha)) continue;
    seen.add(f.filename);
    files.push({ ...f, version: parsed.version });
    versions.add(parsed.version);
  }
  return { name: project.name, files, versions: [...versions].sort(compare) };
}
