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
import { scanSummary } from './inspection.js';

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
  let cache: 'hit' | 'miss' = 'hit';
  let sha256 = await d.meta.getAlias('git-blob', entry.oid);
  let bytes = sha256 ? await d.cache.readSmall(sha256, MAX_GIT_FILE) : null;
  if (!bytes) {
    cache = 'miss';
    try {
      bytes = await fetchGitFile(d, type, repo, commit, entry);
    } catch (e) {
      const mismatch = e instanceof AirlockError && e.code === 'DIGEST_MISMATCH';
      throw new Refusal({
        status: (e as AirlockError).status ?? 502,
        code: mismatch ? 'digest_mismatch' : 'upstream_failed',
        decision: mismatch ? 'deny' : 'error',
        rule,
        reason: (e as Error).message,
        row: { name: base.name, version: base.version, filename: base.filename },
        answer: e as Error,
      });
    }
    sha256 = await d.cache.putSmall(bytes);
    await d.meta.putAlias('git-blob', entry.oid, sha256);
  }
  headers['x-airlock-cache'] = cache;
  const report = await d.inspections.inspect(sha256!, bufferSource(bytes));
  const verdict = contentDecision(d, type, repo, path, sha256!, report);
  if (!verdict.allow) throw contentRefusal(base, commit, verdict, { sha256, size: bytes.length, cache, scan: scanSummary(report, verdict) });
  const row: RecordRow = { ...base, sha256, size: bytes.length, cache, decision: 'allow', rule, scan: scanSummary(report, verdict) };
  return serveSmall(c, bytes, headers, { recorder: d.recorder, row, ranges: true });
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
