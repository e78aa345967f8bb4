import { pino } from 'pino';
import { valid as validVersion } from '@renovatebot/pep440';
import { loadConfig, ConfigError, type LoadedConfig } from '../config/load.js';
import { Metrics } from '../obs/metrics.js';
import { parseFilename } from '../pypi/filenames.js';
import { parseInstant } from '../policy/index.js';
import { newestRelease } from '../pypi/newest.js';
import type { PyFile } from '../pypi/model.js';
import { isValidProjectName, normalizeName } from '../names/pypi.js';
import { hfHub, openMeta, pypiIndex, upstreamHttp, withOciUpstream } from '../backends.js';
import { AirlockError } from '../core/errors.js';
import { OciError } from '../oci/errors.js';
import { parseManifest } from '../oci/reference.js';
import { parseImageRef, type ImageRef } from '../names/oci.js';
import { applyHfPin, applyOciPin, applyPypiPin, editPolicyFile, type PinOutcome } from './pin-apply.js';
import { COMMIT, isValidRef, isValidRepoId, type HfRepoType } from '../names/hf.js';

export interface PinResult {
  name: string;
  version: string;
  sha256: string[];
  files: string[];
  source: 'public' | 'internal';
  /** Each file's upload time (epoch ms, null when the index gave none), in the order of sha256: minimum age (issue 27). */
  uploaded: (number | null)[];
}

/**
 * Resolve `name==version` on the configured index: the release's files and their sha256. A bare
 * `name` resolves to the release pip would take today (the newest final release with verifiable
 * files), the approval the console offers for a refused project page, where pip names no version;
 * the result names the version chosen, so the reviewer sees it before the policy is written.
 */
export async function resolvePypiPin(configFile: string, requirement: string): Promise<PinResult> {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s,;]+)\s*)?$/.exec(requirement);
  if (!m || !isValidProjectName(m[1]) || (m[2] !== undefined && !validVersion(m[2]))) {
    throw new ConfigError(`pin: expected NAME or NAME==VERSION with a PEP 440 version (e.g. 'requests==2.32.3'), got ${JSON.stringify(requirement)}`);
  }
  return withPypiResolver(loadConfig(configFile), (resolve) => resolve(normalizeName(m[1]), m[2]));
}

/**
 * Open the configured index once and resolve any number of releases through it (`pin pypi NAME`
 * and `pin pypi -r FILE` share this): `name` normalised, `version` absent for the newest final release.
 */
export async function withPypiResolver<T>(
  loaded: LoadedConfig,
  use: (resolve: (name: string, version?: string) => Promise<PinResult>) => Promise<T>,
): Promise<T> {
  // The configured metadata store: the page fetched to pin is cached like any other (ttl 0: always asked fresh).
  const meta = await openMeta(loaded, { create: true });
  const http = upstreamHttp(loaded, 'pypi');
  try {
    const index = pypiIndex(loaded, { http, meta, metrics: new Metrics(false), log: pino({ level: 'silent' }), ttlSeconds: 0 });
    return await use(async (name, wanted) => {
      const source = loaded.policy.pypi.internalRule(name) ? 'internal' : 'public';
      const page = await index.project(name, source);
      // A pin records what the index says now: never hashes from a page kept while the index is down.
      if (page.stale) throw new ConfigError(`pin: the ${source} index cannot be read now (${page.staleReason}); not pinning from a cached page`);
      // A bare name takes the newest release old enough for pypi.min_age, as pip through Airlock would.
      const now = Date.now();
      // Old enough for the ecosystem and for the rules of this name that would serve the file (a rule's own min_age).
      const oldEnough = (f: PyFile) => {
        const t = parseInstant(f.uploadTime);
        const v = parseFilename(f.filename, name)?.version;
        return loaded.policy.pypi.oldEnough(t, now) && (v === undefined || loaded.policy.pypi.decideAge(name, v, f.hashes.sha256, t, now) === null);
      };
      const version = wanted ?? newestRelease(page.project.files, name, oldEnough);
      if (version === null && newestRelease(page.project.files, name) !== null)
        throw new ConfigError(
          `pin: every final release of ${name} is younger than pypi.min_age (or has no upload time); name the version (NAME==VERSION) to pin one after review`,
        );
      if (version === null)
        throw new ConfigError(`pin: the ${source} index has no final release of ${name} with verifiable files; name the version (NAME==VERSION)`);
      // Upload time is per file: a version chosen by its age takes only its files old enough (a wheel
      // uploaded yesterday to an old release is not what the reviewer was shown); a version named is taken whole.
      const files = page.project.files.filter((f) => {
        const p = parseFilename(f.filename, name);
        return p && p.name === name && p.version === version && f.hashes.sha256 && (wanted !== undefined || oldEnough(f));
      });
      if (files.length === 0) throw new ConfigError(`pin: the ${source} index has no files with a sha256 for ${name}==${version}`);
      return {
        name,
        version,
        sha256: files.map((f) => f.hashes.sha256),
        files: files.map((f) => f.filename),
        source,
        uploaded: files.map((f) => parseInstant(f.uploadTime)),
      };
    });
  } finally {
    await http.close();
    await meta.close();
  }
}

/** Add the pin to the policy file (a new exact entry, or the missing hashes of the same exact entry), touching only those lines; `comment` goes above a new entry. */
export function writePypiPin(policyFile: string, basePath: string[], pin: PinResult, comment?: string): PinOutcome {
  return editPolicyFile(policyFile, basePath, (ed) => applyPypiPin(ed, pin, comment));
}

export interface OciPinResult {
  repository: string;
  tag?: string;
  digest: string;
  mediaType: string;
  /** Platforms (for an index) or layers (for a manifest) the pinned digest covers. */
  children: number;
  /** When Airlock first saw the digest (epoch ms; recorded now when it had not): oci.min_age counts from it (issue 27). */
  firstSeen: number;
}

/**
 * Resolve REGISTRY/NAME:TAG (or @DIGEST) upstream, through the mirror's own stores and OCI
 * upstream service (oci/upstream.ts), to the digest of the exact manifest bytes the registry sends
 * for every modern media type, checked against Docker-Content-Digest (or against the digest given).
 * The manifest is kept as the server keeps it.
 */
export async function resolveOciPin(configFile: string, reference: string): Promise<OciPinResult> {
  const loaded = loadConfig(configFile);
  const usage = 'expected REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:DIGEST (e.g. docker.io/library/python:3.12-slim)';
  const parsed = parseImageRef(reference, loaded.config.oci.default_registry);
  if (!parsed.ok) throw new ConfigError(`pin: ${parsed.reason}; ${usage}`);
  const ref = parsed.ref;
  if (!ref.tag && !ref.digest) throw new ConfigError(`pin: ${usage}, got ${JSON.stringify(reference)}`);
  return withOciResolver(loaded, (resolve) => resolve(ref));
}

/** Open the mirror's OCI upstream service once and resolve any number of references through it. */
export async function withOciResolver<T>(loaded: LoadedConfig, use: (resolve: (ref: ImageRef) => Promise<OciPinResult>) => Promise<T>): Promise<T> {
  return withOciUpstream(loaded, ({ upstream, meta }) =>
    use(async (ref) => {
      try {
        // Asked upstream even when the store holds it: a pin says the registry has it now.
        const m = await upstream.resolve(upstream.targetOf(ref), ref, { fresh: true });
        const children = parseManifest(m.bytes, m.mediaType).children.length;
        // Resolving it is Airlock seeing it: the first sight is kept (the first writer wins), as the server keeps it.
        const firstSeen = await meta.recordOciFirstSeen(m.digest, Date.now());
        return { repository: ref.repository, tag: ref.digest ? undefined : ref.tag, digest: m.digest, mediaType: m.mediaType, children, firstSeen };
      } catch (e) {
        if (e instanceof OciError || e instanceof AirlockError) throw new ConfigError(`pin: ${e.message}; not pinning`);
        throw e;
      }
    }),
  );
}

/** Add the digest (and the tag alias) to the repository's allow entry. */
export function writeOciPin(policyFile: string, basePath: string[], pin: OciPinResult, comment?: string): PinOutcome {
  return editPolicyFile(policyFile, basePath, (ed) => applyOciPin(ed, pin, comment));
}

export interface HfPinResult {
  type: HfRepoType;
  repo: string;
  /** The branch or tag pinned (absent when a commit was given). */
  ref?: string;
  commit: string;
  /** The commit's date on the Hub (epoch ms; null when it gave none): min_age is checked against it (issue 27). */
  date?: number | null;
}

/** Resolve [datasets/]ORG/NAME@REVISION on the Hub to the commit it points at today. */
export async function resolveHfPin(configFile: string, reference: string): Promise<HfPinResult> {
  return withHfResolver(loadConfig(configFile), (resolve) => resolve(reference));
}

/** Open the Hub client once and resolve any number of [datasets/]REPO@REVISION through it. */
export async function withHfResolver<T>(loaded: LoadedConfig, use: (resolve: (reference: string) => Promise<HfPinResult>) => Promise<T>): Promise<T> {
  const http = upstreamHttp(loaded, 'hf');
  const meta = await openMeta(loaded, { create: true });
  try {
    const hub = hfHub(loaded, { http, meta, log: pino({ level: 'silent' }) });
    return await use(async (reference) => {
      const m = /^(datasets\/)?([^@\s]+)@([^\s]+)$/.exec(reference.trim());
      const usage = `pin: expected [datasets/]REPO@REVISION (e.g. openai-community/gpt2@main or datasets/org/corpus@v1.0), got ${JSON.stringify(reference)}`;
      if (!m || !isValidRepoId(m[2]) || !isValidRef(m[3])) throw new ConfigError(usage);
      const type: HfRepoType = m[1] ? 'dataset' : 'model';
      const { commit, date } = await hub.revisionInfo(type, m[2], m[3]);
      if (COMMIT.test(m[3]) && commit !== m[3]) throw new ConfigError(`pin: the Hub resolved ${m[3]} to ${commit}; not pinning`);
      return { type, repo: m[2], ref: COMMIT.test(m[3]) ? undefined : m[3], commit, date };
    });
  } finally {
    await http.close();
    await meta.close();
  }
}

/** Add the commit (and the ref alias) to the repository's allow entry. */
export function writeHfPin(policyFile: string, basePath: string[], pin: HfPinResult, comment?: string): PinOutcome {
  return editPolicyFile(policyFile, basePath, (ed) => applyHfPin(ed, pin, comment));
}
