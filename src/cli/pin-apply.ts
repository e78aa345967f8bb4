import { writeFileSync, closeSync, fchmodSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigError, loadConfig } from '../config/load.js';
import { normalizeName } from '../names/pypi.js';
import { canonicalRepository } from '../policy/oci.js';
import { PolicyEditor, withComment, type Val } from './policy-edit.js';

/**
 * What one pin does to the policy, through the byte-preserving editor (./policy-edit.ts): a new
 * allow entry, or the missing part of the entry that already names it, or nothing when the policy
 * already says it (pinning is idempotent).
 */

export type PinOutcome = 'added' | 'updated' | 'unchanged';

/** Read the policy file, let `fn` edit it, and write it only when something changed (and read back as intended). */
export function editPolicyFile<T>(policyFile: string, basePath: string[], fn: (ed: PolicyEditor) => T): T {
  const ed = new PolicyEditor(readFileSync(policyFile, 'utf8'), basePath, policyFile);
  const r = fn(ed);
  if (ed.changed) writePolicyFile(policyFile, ed.result());
  return r;
}

/**
 * Replace the policy file's bytes all at once: written beside it (same directory, same mode), synced,
 * then renamed over it, so a pin that dies halfway (a full disk, a file size limit, a kill) leaves
 * the old policy, never a truncated one that a reload or the next start reads. A symbolic link is
 * followed: the file it points at is replaced, the link stays.
 */
export function writePolicyFile(policyFile: string, text: string): void {
  const target = realpathSync(policyFile);
  const tmp = join(dirname(target), `.${basename(target)}.airlock-${process.pid}.tmp`);
  const mode = statSync(target).mode & 0o7777;
  let fd: number;
  try {
    fd = openSync(tmp, 'w', mode);
  } catch (e) {
    // A directory this user may not write to (the file alone is writable): in place, as before.
    if (['EACCES', 'EPERM', 'EROFS'].includes((e as NodeJS.ErrnoException).code ?? '')) return writeFileSync(target, text);
    throw e;
  }
  try {
    try {
      fchmodSync(fd, mode); // the umask does not narrow it
      writeFileSync(fd, text); // every byte, or an error (a short write is not success)
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed, or never made
    }
    throw e;
  }
}

/**
 * Run `write` (which writes the policy file), then load the configuration again: when it does not
 * load, the old bytes go back and the pin fails, so a pin never leaves a policy the server would refuse.
 */
export function keepLoadable<T>(configFile: string, policyFile: string, write: () => T): T {
  const old = readFileSync(policyFile, 'utf8');
  const r = write();
  try {
    loadConfig(configFile);
  } catch (e) {
    writePolicyFile(policyFile, old);
    throw new ConfigError(`the pinned policy would not load (${(e as Error).message.replace(/^pin: /, '')}); nothing written`);
  }
  return r;
}

const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
const map = (v: unknown): Record<string, string> => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {});

/** `name==version` with these file hashes: the missing hashes go into the entry with the same exact version, else a new entry. */
/** A comment line above a new entry (in a block list), e.g. why a look-alike name was accepted. */
const noted = <T extends Record<string, Val>>(entry: T, comment?: string): T => (comment ? withComment(entry, comment) : entry);

export function applyPypiPin(ed: PolicyEditor, pin: { name: string; version: string; sha256: string[] }, comment?: string): PinOutcome {
  const versions = `==${pin.version}`;
  const entries = ed.entries('pypi');
  const idx = entries.findIndex(
    (e, i) => normalizeName(String(e.name)) === pin.name && String(e.versions ?? '').replace(/\s/g, '') === versions && ed.editable('pypi', i),
  );
  if (idx < 0) {
    ed.addEntries('pypi', [noted({ name: pin.name, versions, sha256: pin.sha256 }, comment)]);
    return 'added';
  }
  // An exact entry without hashes already admits every file of that version.
  if (entries[idx].sha256 === undefined || entries[idx].sha256 === null) return 'unchanged';
  const have = new Set(list(entries[idx].sha256));
  const missing = pin.sha256.filter((h) => !have.has(h));
  ed.addToList('pypi', idx, 'sha256', missing);
  return missing.length ? 'updated' : 'unchanged';
}

/** A digest, and the tag it was resolved from (an alias of it), in the repository's entry. */
export function applyOciPin(ed: PolicyEditor, pin: { repository: string; tag?: string; digest: string }, comment?: string): PinOutcome {
  const entries = ed.entries('oci');
  const idx = entries.findIndex((e, i) => canonicalRepository(String(e.repository)) === pin.repository && ed.editable('oci', i));
  return applyAliased(ed, 'oci', idx, { repository: pin.repository }, ['tags', 'digests'], pin.tag, pin.digest, comment);
}

/** A commit, and the branch or tag it was resolved from (an alias of it), in the repository's entry. */
export function applyHfPin(ed: PolicyEditor, pin: { type: 'model' | 'dataset'; repo: string; ref?: string; commit: string }, comment?: string): PinOutcome {
  const entries = ed.entries('hf');
  const idx = entries.findIndex((e, i) => String(e.repo) === pin.repo && String(e.type ?? 'model') === pin.type && ed.editable('hf', i));
  const fresh: Record<string, string> = pin.type === 'dataset' ? { repo: pin.repo, type: 'dataset' } : { repo: pin.repo };
  return applyAliased(ed, 'hf', idx, fresh, ['refs', 'commits'], pin.ref, pin.commit, comment);
}

function applyAliased(
  ed: PolicyEditor,
  eco: string,
  idx: number,
  fresh: Record<string, string>,
  [aliases, ids]: [string, string],
  alias: string | undefined,
  id: string,
  comment?: string,
): PinOutcome {
  if (idx < 0) {
    ed.addEntries(eco, [noted(alias ? { ...fresh, [aliases]: { [alias]: id } } : { ...fresh, [ids]: [id] }, comment)]);
    return 'added';
  }
  const e = ed.entries(eco)[idx];
  if (alias) {
    if (map(e[aliases])[alias] === id) return 'unchanged';
    ed.setInMap(eco, idx, aliases, alias, id);
    return 'updated';
  }
  if (list(e[ids]).includes(id) || Object.values(map(e[aliases])).includes(id)) return 'unchanged';
  ed.addToList(eco, idx, ids, [id]);
  return 'updated';
}
