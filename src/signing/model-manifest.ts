/**
 * The signed file list of an OpenSSF model signature (sigstore/model-transparency, `model.sig`), read from its
 * in-toto statement and compared with the SHA-256s Airlock has already verified for a pinned commit, without
 * hashing anything again. Pure: no I/O.
 *
 * The rules follow model_signing 1.x (src/model_signing/_signing/signing.py, manifest.py, hashing.py):
 * - predicate `https://model_signing/signature/v1.0`, `predicate.serialization.method` "files", one resource per
 *   file `{name, algorithm, digest}` (name a POSIX path relative to the model root);
 * - one subject whose `digest.sha256` is the root digest: SHA-256 over the concatenation of the resources' raw
 *   digest bytes, in the order the resources are listed (the signer lists them sorted by name);
 * - a path is ignored when it equals an ignore path or lies under it (`is_relative_to`); the predicate's
 *   `ignore_paths`, the signature file itself and model_signing's default git paths (.git, .gitattributes, .github,
 *   .gitignore at the root) are ignored; ignore paths that leave the model root have no effect.
 * Airlock is stricter where model_signing would let a degenerate signature through: an ignore path that covers
 * the whole repository, an empty or duplicated resource list and irregular path names are refused.
 */
import { createHash } from 'node:crypto';

export const MODEL_PREDICATE_V1 = 'https://model_signing/signature/v1.0';
/** model_signing v0.2's experimental predicate: a subject per file, no root digest, no ignore paths. Refused. */
export const MODEL_PREDICATE_COMPAT = 'https://model_signing/Digests/v0.1';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
/** model_signing's default ignored paths (hashing.Config: ignore_git_paths=True). */
export const MODEL_GIT_PATHS = ['.git', '.gitattributes', '.github', '.gitignore'];
/** A bound on the signed list (a model repository of more files is refused, not walked). */
export const MAX_MODEL_RESOURCES = 100_000;
const MAX_NAME = 4096;
const HEX64 = /^[0-9a-f]{64}$/i;

export interface ModelManifest {
  /** The statement's subject name (the model directory's name when signed; informative only). */
  name: string;
  /** The root digest as the statement's subject states it (lowercase hex). */
  rootDigest: string;
  /** Signed files in statement order: repository path → SHA-256 (lowercase hex). */
  resources: Map<string, string>;
  /** The predicate's ignore paths, normalised; those leaving the model root are dropped. */
  ignorePaths: string[];
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** A name or value from untrusted input, safe inside a one-line reason: control characters escaped, bounded. */
export function shown(v: unknown, max = 120): string {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  const esc = JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
  return esc;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A POSIX path relative to the model root, as model_signing writes it (str(PurePosixPath)): no empty, "." or ".."
 * segment, no leading or trailing slash, no backslash or NUL.
 */
function regularName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME || name.includes('\\') || name.includes('\0')) return false;
  return name.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/** An ignore path as pathlib reads it: "./a//b/" is "a/b"; "" or "." is the root itself (null); "..": no effect. */
function normaliseIgnore(p: string): string | null | undefined {
  if (p.startsWith('/') || p.includes('\0')) return undefined;
  const segs = p.split('/').filter((s) => s !== '' && s !== '.');
  if (segs.includes('..')) return undefined;
  return segs.length === 0 ? null : segs.join('/');
}

/** True when `path` equals `ignore` or lies under it (pathlib's is_relative_to on whole segments). */
export function underPath(path: string, ignore: string): boolean {
  return path === ignore || path.startsWith(`${ignore}/`);
}

/** The root digest model_signing computes: SHA-256 over the raw digest bytes in the listed order. */
export function rootDigestOf(digests: Iterable<string>): string {
  const h = createHash('sha256');
  for (const d of digests) h.update(Buffer.from(d, 'hex'));
  return h.digest('hex');
}

/** Reads the signed file list from a DSSE payload's in-toto statement (already parsed JSON). */
export function parseModelStatement(statement: unknown): Parsed<ModelManifest> {
  if (!isObject(statement)) return fail('the signed payload is not a JSON object');
  if (statement._type !== IN_TOTO_STATEMENT_V1) return fail(`the signed payload is not an in-toto v1 statement (_type ${shown(statement._type)})`);
  const type = statement.predicateType;
  if (type === MODEL_PREDICATE_COMPAT)
    return fail(`predicate type ${type} (model_signing v0.2: no root digest, no ignore paths) is not accepted; re-sign with model_signing 1.x`);
  if (type !== MODEL_PREDICATE_V1) return fail(`predicate type ${shown(type)} is not a model signature (${MODEL_PREDICATE_V1})`);
  const subjects = statement.subject;
  if (!Array.isArray(subjects) || subjects.length !== 1)
    return fail(`the statement must have exactly one subject (found ${Array.isArray(subjects) ? subjects.length : 'none'})`);
  const subject = subjects[0];
  const root = isObject(subject) && isObject(subject.digest) ? subject.digest.sha256 : undefined;
  if (typeof root !== 'string' || !HEX64.test(root)) return fail('the statement subject has no sha256 root digest');
  const predicate = statement.predicate;
  if (!isObject(predicate) || !isObject(predicate.serialization)) return fail('the statement has no predicate.serialization');
  const ser = predicate.serialization;
  if (ser.method !== 'files') return fail(`serialization method ${shown(ser.method)} is not accepted (only "files": whole-file SHA-256s)`);
  if (ser.hash_type !== 'sha256') return fail(`hash type ${shown(ser.hash_type)} is not accepted (Airlock knows each file's SHA-256)`);
  const ignore = ser.ignore_paths ?? [];
  if (!Array.isArray(ignore) || ignore.length > MAX_MODEL_RESOURCES || !ignore.every((p) => typeof p === 'string'))
    return fail('predicate.serialization.ignore_paths is not a list of paths');
  const ignorePaths: string[] = [];
  for (const p of ignore as string[]) {
    const n = normaliseIgnore(p);
    if (n === null) return fail(`ignore path ${shown(p)} covers the whole repository`);
    if (n !== undefined) ignorePaths.push(n);
  }
  const list = predicate.resources;
  if (!Array.isArray(list)) return fail('the statement has no predicate.resources list');
  if (list.length === 0) return fail('the signature signs no files');
  if (list.length > MAX_MODEL_RESOURCES) return fail(`the signature lists ${list.length} files (more than ${MAX_MODEL_RESOURCES})`);
  const resources = new Map<string, string>();
  for (const r of list) {
    if (!isObject(r) || typeof r.name !== 'string') return fail('a signed resource has no name');
    if (!regularName(r.name)) return fail(`signed resource name ${shown(r.name)} is not a plain relative path`);
    if (r.algorithm !== 'sha256') return fail(`signed file ${shown(r.name)} uses algorithm ${shown(r.algorithm)} (only sha256 is accepted)`);
    if (typeof r.digest !== 'string' || !HEX64.test(r.digest)) return fail(`signed file ${shown(r.name)} has no valid sha256 digest`);
    if (resources.has(r.name)) return fail(`signed file ${shown(r.name)} is listed twice`);
    resources.set(r.name, r.digest.toLowerCase());
  }
  const name = isObject(subject) && typeof subject.name === 'string' ? subject.name : '';
  return { ok: true, value: { name, rootDigest: root.toLowerCase(), resources, ignorePaths } };
}

export interface ManifestMatch {
  /** Files Airlock verified that the signature covers. */
  signed: number;
  /** Files Airlock verified that the signature leaves out on purpose (ignored paths, the signature file). */
  ignored: string[];
}

/**
 * Compares the signed list with the files Airlock verified (repository path → SHA-256 hex). The first difference
 * found is the reason, with a count of the others: an extra file, a missing file, a different digest, a signed file
 * inside an ignored path, a root digest that the listed digests do not produce.
 */
export function compareManifest(m: ModelManifest, files: ReadonlyMap<string, string>, signaturePath: string): Parsed<ManifestMatch> {
  const recomputed = rootDigestOf(m.resources.values());
  if (recomputed !== m.rootDigest) return fail(`the signed file list hashes to root digest ${recomputed}, not the statement's subject ${m.rootDigest}`);
  const ignores = [...MODEL_GIT_PATHS, ...m.ignorePaths, signaturePath];
  const ignoredBy = (path: string) => ignores.some((i) => underPath(path, i));
  let first: string | undefined;
  let count = 0;
  const problem = (p: string) => {
    first ??= p;
    count++;
  };
  const ignored: string[] = [];
  let signed = 0;
  for (const [path, sha] of files) {
    const want = m.resources.get(path);
    if (want === undefined) {
      if (ignoredBy(path)) ignored.push(path);
      else problem(`file ${shown(path)} is not in the signed list (an extra file)`);
    } else if (ignoredBy(path)) {
      problem(`signed file ${shown(path)} lies in an ignored path`);
    } else if (want !== sha.toLowerCase()) {
      problem(`file ${shown(path)} has sha256 ${sha.toLowerCase()} but the signature says ${want}`);
    } else signed++;
  }
  for (const path of m.resources.keys()) {
    if (!files.has(path)) problem(`signed file ${shown(path)} is missing from the commit`);
  }
  if (first !== undefined) return fail(count === 1 ? first : `${first} (and ${count - 1} more differences)`);
  return { ok: true, value: { signed, ignored } };
}
