import { parseInstant, type Policy } from '../policy/index.js';
import { parseFilename } from './filenames.js';
import type { PyFile } from './model.js';
import type { RefusalCode } from '../policy/types.js';

/** A 403 is a refusal (recorded, with its code); a 404 is a name that is not a file of the project (nothing to record). */
export type Admission =
  | { allow: true; version: string; sha256: string; rule: string }
  | { allow: false; version?: string; sha256?: string; rule: string; code: RefusalCode; reason: string; status: 403; until?: number | null }
  | { allow: false; version?: undefined; sha256?: undefined; rule: string; code: 'not_a_file'; reason: string; status: 404 };

/**
 * The one admission decision for a PyPI file, used both to list it on a page (filter.ts) and to
 * serve it (routes.ts), so a page never lists a file the GET refuses, nor the reverse: its name
 * must be a file of the project with a PEP 440 version, the index must give its sha256 (nothing
 * unverifiable is offered), the policy must allow the version and hash, and no refusing advisory
 * may affect it, and the release must be old enough (min_age, exclude_newer: `until` says when it
 * will be, for the page cache) at `now`.
 */
export function admitFile(policy: Policy, project: string, file: PyFile, source: string, now: number): Admission {
  const parsed = parseFilename(file.filename, project);
  if (!parsed || parsed.name !== project) {
    return { allow: false, rule: 'pypi', code: 'not_a_file', status: 404, reason: `${file.filename} is not a file of ${project} on the ${source} index` };
  }
  const version = parsed.version;
  const sha256 = file.hashes.sha256;
  if (!sha256) {
    return {
      allow: false,
      version,
      rule: 'pypi',
      code: 'no_sha256',
      status: 403,
      reason: `${file.filename}: the ${source} index gives no sha256 for this file, so Airlock cannot verify it`,
    };
  }
  const fd = policy.pypi.decideFile(project, version, sha256);
  if (!fd.allow) return { allow: false, version, sha256, rule: fd.rule, code: fd.code, status: 403, reason: fd.reason };
  // Versions an imported advisory refuses are not offered either, so resolvers pick another one.
  const adv = policy.pypiAdvisory(project, version, sha256);
  if (adv) return { allow: false, version, sha256, rule: `advisory ${adv.match.id}`, code: 'advisory', status: 403, reason: adv.reason };
  // Too new: left off the page, so pip and uv take the newest release that is old enough.
  const age = policy.pypi.decideAge(project, version, sha256, parseInstant(file.uploadTime), now);
  if (age) return { allow: false, version, sha256, rule: age.rule, code: 'too_new', status: 403, reason: age.reason, until: age.until };
  return { allow: true, version, sha256, rule: fd.rule };
}
