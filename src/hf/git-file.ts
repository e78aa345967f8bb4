import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import type { RecordRow } from '../core/records.js';
import { Refusal } from '../http/refusal.js';
import type { AppEnv } from '../http/send.js';
import { serveSmall } from '../http/serve-blob.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import { bufferSource } from '../scan/source.js';
import { readBoundedBytes } from '../upstream/http.js';
import { contentDecision, contentRefusal, type HfContext, type HfDeps } from './context.js';
import type { HfEntry } from './hub.js';
import { reviewedSummary, scanSummary } from './inspection.js';

/** Git's object id of a blob: sha1("blob <size>\0" + bytes), what the Hub lists as `oid`. */
export function gitBlobSha1(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** Ordinary (non-LFS) Hub files are at most 10 MB; they are read and verified whole, in memory. */
const MAX_GIT_FILE = 32 * 1024 * 1024;

/** An ordinary git file: verified whole in memory against its git blob id before any byte goes out, then judged. */
export async function gitFile(
  d: HfContext,
  c: Context<AppEnv>,
  type: HfRepoType,
  repo: string,
  path: string,
  commit: string,
  entry: HfEntry,
  headers: Record<string, string>,
  base: Omit<RecordRow, 'cache' | 'decision'>,
  rule: string,
): Promise<Response> {
  let file: VerifiedGitFile;
  try {
    file = await verifiedGitFile(d, type, repo, commit, entry);
  } catch (e) {
    throw fetchRefusal(e, rule, base);
  }
  const { bytes, sha256, cache } = file;
  headers['x-airlock-cache'] = cache;
  // A file a person reviewed is served by its sha256 and not inspected (the verdict would not change).
  const reviewed = d.live.policy.hf.reviewed(type, repo, sha256);
  if (reviewed) {
    const row: RecordRow = { ...base, sha256, size: bytes.length, cache, decision: 'allow', rule, scan: reviewedSummary(reviewed) };
    return serveSmall(c, bytes, headers, { recorder: d.recorder, row, ranges: true });
  }
  const report = await d.inspections.inspect(sha256, bufferSource(bytes));
  const verdict = contentDecision(d, type, repo, path, sha256, report);
  if (!verdict.allow) throw contentRefusal(base, commit, verdict, { sha256, size: bytes.length, cache, scan: scanSummary(report, verdict) });
  const row: RecordRow = { ...base, sha256, size: bytes.length, cache, decision: 'allow', rule, scan: scanSummary(report, verdict) };
  return serveSmall(c, bytes, headers, { recorder: d.recorder, row, ranges: true });
}

export interface VerifiedGitFile {
  bytes: Buffer;
  sha256: string;
  cache: 'hit' | 'miss';
}

/**
 * An ordinary git file's bytes, verified: from the cache through its git blob id's alias (kept
 * when it was first verified), else fetched from the Hub, checked against the blob id and size
 * the commit lists, and cached (the alias with it). Throws an AirlockError (DIGEST_MISMATCH, or
 * an upstream failure); nothing is cached then. Shared by gitFile and the signature check.
 */
export async function verifiedGitFile(d: HfDeps, type: HfRepoType, repo: string, commit: string, entry: HfEntry): Promise<VerifiedGitFile> {
  const known = await d.meta.getAlias('git-blob', entry.oid);
  const cached = known ? await d.cache.readSmall(known, MAX_GIT_FILE) : null;
  if (known && cached) return { bytes: cached, sha256: known, cache: 'hit' };
  const bytes = await fetchGitFile(d, type, repo, commit, entry);
  const sha256 = await d.cache.putSmall(bytes);
  await d.meta.putAlias('git-blob', entry.oid, sha256);
  return { bytes, sha256, cache: 'miss' };
}

/** The refusal (on record) of a file whose verified bytes could not be had: digest_mismatch, or upstream_failed. */
export function fetchRefusal(e: unknown, rule: string, base: Pick<RecordRow, 'name' | 'version' | 'filename'>): Refusal {
  const mismatch = e instanceof AirlockError && e.code === 'DIGEST_MISMATCH';
  return new Refusal({
    status: (e as AirlockError).status ?? 502,
    code: mismatch ? 'digest_mismatch' : 'upstream_failed',
    decision: mismatch ? 'deny' : 'error',
    rule,
    reason: (e as Error).message,
    row: { name: base.name, version: base.version, filename: base.filename },
    answer: e as Error,
  });
}

async function fetchGitFile(d: HfDeps, type: HfRepoType, repo: string, commit: string, entry: HfEntry): Promise<Buffer> {
  if (entry.size > MAX_GIT_FILE)
    throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${entry.path} is listed as a ${entry.size}-byte non-LFS file, too large to verify`);
  const res = await d.hub.openFile(type, repo, commit, entry.path);
  if (res.status !== 200) {
    res.body.resume();
    throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub answered ${res.status} for ${displayRepo(type, repo)}@${commit}/${entry.path}`);
  }
  const bytes = await readBoundedBytes(res.body, MAX_GIT_FILE);
  const oid = gitBlobSha1(bytes);
  if (oid !== entry.oid || bytes.length !== entry.size) {
    throw new AirlockError(
      'DIGEST_MISMATCH',
      `${entry.path}: the Hub sent ${bytes.length} bytes with git blob id ${oid}, expected ${entry.size} bytes with ${entry.oid}; nothing was cached`,
    );
  }
  return bytes;
}
