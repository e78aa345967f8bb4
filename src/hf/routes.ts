import { createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import type { FileBytes } from '../core/fill.js';
import type { BlobCache } from '../core/cache.js';
import type { Recorder, RecordRow } from '../core/records.js';
import { serveBlob, serveSmall } from '../http/serve-blob.js';
import { errorHandler, Refusal } from '../http/refusal.js';
import { clientAddress, sendBytes, sendStream, type AppEnv } from '../http/send.js';
import type { Policy } from '../policy/index.js';
import type { HfRefusal } from '../policy/hf.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import type { Decision } from '../policy/types.js';
import type { AliasStore, PullRecord, ScanStore } from '../storage/meta-store.js';
import { contentLength, readBoundedBytes } from '../upstream/http.js';
import { scan, type ScanReport } from '../scan/index.js';
import { contentDecision as decideContent, Inspections, scanSummary } from './inspection.js';
import { bufferSource } from '../scan/source.js';
import type { HfEntry, HfSnapshot, Hub } from './hub.js';
import { checkFilePath, HfPathError, parseHfPath } from './paths.js';
import { EXPOSE, HubError, hubJson, hubRefuse, info, pathsInfo, tree } from './metadata.js';

export { HubError, TREE_PAGE } from './metadata.js';

export interface HfDeps {
  policy: () => Policy;
  hub: Hub;
  cache: BlobCache;
  meta: AliasStore & ScanStore;
  recorder: Recorder;
  log: Logger;
  maxFileBytes: number;
}

/** Git's object id of a blob: sha1("blob <size>\0" + bytes), what the Hub lists as `oid`. */
export function gitBlobSha1(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** Ordinary (non-LFS) Hub files are at most 10 MB; they are read and verified whole, in memory. */
const MAX_GIT_FILE = 32 * 1024 * 1024;

const etagOf = (e: HfEntry) => e.lfs?.oid ?? e.oid;

/**
 * The Hugging Face front-end, mounted at /hf (clients use HF_ENDPOINT=http://HOST/hf). Thin:
 * parse the Hub URL, ask policy which commit a revision stands for, answer from the pinned
 * commit's stored metadata, and stream files through the shared verified cache.
 */
export function createHfApp(d: HfDeps): Hono<AppEnv> {
  // A factory of small handlers closing over one set of dependencies (the metadata answers and
  // the error contract are in metadata.ts, inspection in inspection.ts).
  const app = new Hono<AppEnv>();
  const inspections = new Inspections(d.meta);
  const storedReport = (sha256: string) => inspections.stored(sha256);
  const inspect = (sha256: string, file: FileBytes) => inspections.inspect(sha256, file);
  const contentDecision = (type: HfRepoType, repo: string, path: string, sha256: string, report: ScanReport) =>
    decideContent(d.policy().hf, type, repo, path, sha256, report);

  function fromDecision(dec: HfRefusal | (Decision & { allow: false }), commit?: string): HubError {
    const code = 'hubCode' in dec ? dec.hubCode : 'RepoNotFound';
    return new HubError(404, code, `blocked by mirror policy: ${dec.reason}`, code === 'EntryNotFound' ? commit : undefined);
  }

  /** The pinned commit a revision stands for; a refusal (on record) when the policy has none, or upstream lacks it. */
  async function pinned(type: HfRepoType, repo: string, revision: string, path: string | null = null): Promise<{ snap: HfSnapshot; rule: string }> {
    const r = d.policy().hf.resolveRevision(type, repo, revision);
    const row = { name: displayRepo(type, repo), version: revision, filename: path };
    if (!r.decision.allow || !r.commit) {
      const dec = r.decision as HfRefusal;
      throw new Refusal({ status: 404, code: dec.code, rule: dec.rule, reason: `blocked by mirror policy: ${dec.reason}`, row, answer: fromDecision(dec) });
    }
    try {
      return { snap: await d.hub.snapshot(type, repo, r.commit), rule: r.decision.rule };
    } catch (e) {
      if (e instanceof AirlockError && e.code === 'NOT_FOUND') {
        const answer = new HubError(404, 'RevisionNotFound', `${displayRepo(type, repo)}@${r.commit} is pinned, but upstream: ${e.message}`);
        throw new Refusal({ status: 404, code: 'upstream_failed', decision: 'error', rule: r.decision.rule, reason: answer.message, row, answer });
      }
      throw e;
    }
  }

  function baseRecord(c: Context<AppEnv>, type: HfRepoType, repo: string, commit: string, path: string): Omit<RecordRow, 'cache' | 'decision'> {
    return {
      ts: Date.now(),
      client: clientAddress(c),
      ecosystem: 'hf',
      name: displayRepo(type, repo),
      version: commit,
      filename: path,
      requestId: c.get('requestId'),
    };
  }

  /** A content verdict's refusal: on record with the inspection summary, a 403 to the client. */
  function contentRefusal(
    base: Omit<RecordRow, 'cache' | 'decision'>,
    commit: string,
    v: Decision & { allow: false },
    known: { sha256?: string | null; size: number; cache: 'hit' | 'miss' | 'none'; scan: string | null },
  ): Refusal {
    const reason = `blocked by mirror policy: ${v.reason}`;
    return new Refusal({
      status: 403,
      code: 'content_refused',
      rule: v.rule,
      reason: v.reason,
      row: { name: base.name, version: base.version, filename: base.filename, ...known },
      answer: new HubError(403, undefined, reason, commit),
    });
  }

  async function resolve(c: Context<AppEnv>, type: HfRepoType, repo: string, revision: string, path: string, raw: boolean): Promise<Response> {
    const isGet = c.req.method === 'GET';
    const { snap, rule } = await pinned(type, repo, revision, path);
    const commit = snap.commit;
    const entry = snap.byPath.get(path);
    if (!entry || entry.type !== 'file') throw new HubError(404, 'EntryNotFound', `${path} does not exist in ${displayRepo(type, repo)}@${commit}`, commit);
    const fd = d.policy().hf.decideFile(type, repo, path);
    if (!fd.allow) {
      const row = { name: displayRepo(type, repo), version: commit, filename: path, sha256: entry.lfs?.oid ?? null };
      throw new Refusal({ status: 404, code: fd.code, rule: fd.rule, reason: fd.reason, row, answer: fromDecision(fd, commit) });
    }
    if (entry.size > d.maxFileBytes) {
      throw new HubError(
        404,
        'EntryNotFound',
        `${path} is ${entry.size} bytes, over this mirror's hf.max_file_bytes (${d.maxFileBytes}); huggingface_hub cannot download files over 50 GB without Xet, which Airlock does not mirror`,
        commit,
      );
    }
    const etag = etagOf(entry);
    const headers: Record<string, string> = {
      'x-repo-commit': commit,
      etag: `"${etag}"`,
      'x-linked-etag': `"${etag}"`,
      'x-linked-size': String(entry.size),
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'access-control-expose-headers': EXPOSE,
      'cache-control': 'public, max-age=31536000, immutable',
    };
    if (raw && entry.lfs) {
      // /raw/ of an LFS file is its pointer: rebuilt from the tree and checked against the git
      // blob id the commit lists, so it is exactly the object git holds.
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${entry.lfs.oid}\nsize ${entry.lfs.size}\n`);
      if (gitBlobSha1(pointer) !== entry.oid)
        throw new HubError(404, 'EntryNotFound', `${path}: the LFS pointer cannot be rebuilt to match git blob ${entry.oid}`, commit);
      return sendBytes(
        c,
        200,
        { 'x-repo-commit': commit, etag: `"${entry.oid}"`, 'content-type': 'text/plain; charset=utf-8', 'access-control-expose-headers': EXPOSE },
        pointer,
      );
    }
    const knownSha = entry.lfs?.oid ?? (await d.meta.getAlias('git-blob', entry.oid)) ?? undefined;
    let known = knownSha ? await storedReport(knownSha) : null;
    let knownDecision = known && knownSha ? contentDecision(type, repo, path, knownSha, known) : null;
    // A partial report (an early refusal) never approves: under a policy that would allow it, the file is judged whole again.
    if (known?.partial && knownDecision?.allow) known = knownDecision = null;
    if (!isGet) {
      // A verdict already on record answers HEAD too: EntryNotFound lets transformers move on to the next candidate file.
      if (knownDecision && !knownDecision.allow) throw new HubError(404, 'EntryNotFound', `blocked by mirror policy: ${knownDecision.reason}`, commit);
      headers['content-length'] = String(entry.size);
      return sendStream(c, 200, headers, null);
    }
    const base = baseRecord(c, type, repo, commit, path);
    if (knownDecision && !knownDecision.allow) {
      throw contentRefusal(base, commit, knownDecision, { sha256: knownSha, size: entry.size, cache: 'none', scan: scanSummary(known, knownDecision) });
    }
    if (entry.lfs) return lfsFile(c, type, repo, path, commit, entry, entry.lfs, headers, base, rule, known, knownDecision);
    return gitFile(c, type, repo, path, commit, entry, headers, base, rule);
  }

  /**
   * An LFS file: through the verified fill, inspected as it arrives (see the comments inside);
   * a file cached before this scanner version is judged again before it is served. Longer than
   * most: the inspector's hooks (judge, verified, refusedVerified) and the pull record share the
   * report and verdict of this one fill, so they are written together.
   */
  async function lfsFile(
    c: Context<AppEnv>,
    type: HfRepoType,
    repo: string,
    path: string,
    commit: string,
    entry: HfEntry,
    lfs: NonNullable<HfEntry['lfs']>,
    headers: Record<string, string>,
    base: Omit<RecordRow, 'cache' | 'decision'>,
    rule: string,
    known: ScanReport | null,
    knownDecision: Decision | null,
  ): Promise<Response> {
    let report: ScanReport | null = known;
    /** The report this fill's own scan produced (kept once the digest has matched). */
    let fresh: ScanReport | null = null;
    let verdict: Decision | null = knownDecision;
    if (!report && (await d.cache.cachedSize(lfs.oid)) !== undefined) {
      // Cached before this scanner version: judge the stored file again before serving it.
      const file = await d.cache.fileBytes(lfs.oid);
      if (file) {
        report = await inspect(lfs.oid, file);
        verdict = contentDecision(type, repo, path, lfs.oid, report);
        if (!verdict.allow)
          throw contentRefusal(base, commit, verdict, { sha256: lfs.oid, size: entry.size, cache: 'hit', scan: scanSummary(report, verdict) });
      }
    }
    const spec = {
      sha256: lfs.oid,
      size: lfs.size,
      inspect: {
        // Judged as it downloads: what could run code first (a refusal then answers 403 before
        // any byte), the rest as it streams (a refusal then cuts the transfer before its end).
        // A report is kept only once the digest has matched: bytes that fail it must not leave
        // a verdict behind for the file they pretended to be. A refusal cuts the clients at
        // once; the download goes on to its digest, and then the refusal is kept.
        judge: async (file: FileBytes, release: () => void) => {
          const refuseOn = (r: ScanReport) => {
            verdict = contentDecision(type, repo, path, lfs.oid, r);
            if (!verdict.allow) throw new AirlockError('CONTENT_REFUSED', `blocked by mirror policy: ${verdict.reason}`);
          };
          const stored = await storedReport(lfs.oid);
          if (stored && !stored.partial) report = stored;
          else {
            report = fresh = await scan(file, undefined, {
              cleared: (partial) => {
                report = fresh = { ...partial, partial: true }; // what is kept if this refuses
                refuseOn(partial);
                release();
              },
            });
          }
          refuseOn(report);
          release();
        },
        // Only a report this fill scanned is written (a stored one is already on record).
        verified: async () => {
          if (fresh && !fresh.partial) await inspections.keep(lfs.oid, fresh);
        },
        refusedVerified: async () => {
          if (fresh) await inspections.keep(lfs.oid, fresh);
        },
      },
      open: async (signal: AbortSignal) => {
        const res = await d.hub.openFile(type, repo, commit, path, signal);
        if (res.status !== 200) {
          res.body.resume();
          throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub answered ${res.status} for ${displayRepo(type, repo)}@${commit}/${path}`);
        }
        return { body: res.body, size: contentLength(res.headers) };
      },
    };
    try {
      return await serveBlob(c, d.cache, spec, headers, {
        recorder: d.recorder,
        base: { ...base, sha256: lfs.oid },
        rule,
        label: path,
        declaredSize: entry.size,
        extra: () => ({ scan: scanSummary(report, verdict) }),
        refusal: () => {
          const v = verdict as Decision | null;
          return v && !v.allow ? { reason: v.reason, rule: v.rule } : undefined;
        },
      });
    } catch (e) {
      if (e instanceof AirlockError && e.code === 'CONTENT_REFUSED') throw new HubError(403, undefined, e.message, commit);
      throw e;
    }
  }

  /** An ordinary git file: verified whole in memory against its git blob id before any byte goes out, then judged. */
  async function gitFile(
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
        bytes = await fetchGitFile(type, repo, commit, entry);
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
    const report = await inspect(sha256!, bufferSource(bytes));
    const verdict = contentDecision(type, repo, path, sha256!, report);
    if (!verdict.allow) throw contentRefusal(base, commit, verdict, { sha256, size: bytes.length, cache, scan: scanSummary(report, verdict) });
    const row: RecordRow = { ...base, sha256, size: bytes.length, cache, decision: 'allow', rule, scan: scanSummary(report, verdict) };
    return serveSmall(c, bytes, headers, { recorder: d.recorder, row, ranges: true });
  }

  async function fetchGitFile(type: HfRepoType, repo: string, commit: string, entry: HfEntry): Promise<Buffer> {
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

  app.all('*', async (c) => {
    const method = c.req.method;
    const rawUrl = c.env?.incoming?.url ?? new URL(c.req.url).pathname;
    const rawPath = rawUrl.split('?')[0];
    if (rawPath.length > 4096) throw new HubError(414, undefined, 'request path too long');
    if (/(^|\/)\.\.?(\/|$)/.test(rawPath) || /%2e%2e/i.test(rawPath)) throw new HubError(400, undefined, '"." and ".." path segments are not allowed');
    const rest = rawPath.replace(/^\/hf\/?/, '');
    const policy = d.policy().hf;
    const route = parseHfPath(rest, (t, r) => policy.knows(t, r));
    switch (route.kind) {
      case 'unsupported':
        throw new HubError(404, undefined, `${route.what}: not served by this read-only mirror (models and datasets: info, tree, paths-info, refs, resolve)`);
      case 'whoami': {
        // `hf auth login` / whoami with an Airlock token: who the mirror thinks the caller is.
        const id = c.get('identity');
        if (!id)
          throw new HubError(401, undefined, 'Invalid credentials in Authorization header: send an Airlock client token (airlock token create --name NAME)');
        return hubJson(c, {
          type: 'user',
          id: id.name,
          name: id.name,
          fullname: id.name,
          isPro: false,
          orgs: [],
          auth: { type: 'access_token', accessToken: { displayName: id.name, role: 'read' } },
        });
      }
      case 'xet':
        // Clients that ask for a Xet token fall back to plain HTTP downloads through the mirror.
        throw new HubError(404, undefined, 'Xet storage is not offered by this mirror; files are served over HTTP');
      case 'info': {
        if (method !== 'GET' && method !== 'HEAD') break;
        const { snap } = await pinned(route.type, route.repo, route.revision);
        return info(c, d.policy().hf, route.type, route.repo, snap);
      }
      case 'tree': {
        if (method !== 'GET' && method !== 'HEAD') break;
        const { snap } = await pinned(route.type, route.repo, route.revision, route.path || null);
        return tree(c, d.policy().hf, route.type, route.repo, snap, route.path);
      }
      case 'paths-info': {
        if (method !== 'POST') break;
        const { snap } = await pinned(route.type, route.repo, route.revision);
        return pathsInfo(c, d.policy().hf, route.type, route.repo, snap);
      }
      case 'refs': {
        if (method !== 'GET' && method !== 'HEAD') break;
        const dec = policy.decideRepo(route.type, route.repo);
        if (!dec.allow) {
          const row = { name: displayRepo(route.type, route.repo), filename: 'refs' };
          throw new Refusal({ status: 404, code: dec.code, rule: dec.rule, reason: `blocked by mirror policy: ${dec.reason}`, row, answer: fromDecision(dec) });
        }
        const branches = policy
          .refs(route.type, route.repo)
          .map(([name, commit]) => ({ name, ref: name.startsWith('refs/') ? name : `refs/heads/${name}`, targetCommit: commit }));
        return hubJson(c, { branches, converts: [], tags: [] });
      }
      case 'resolve': {
        if (method !== 'GET' && method !== 'HEAD') break;
        return resolve(c, route.type, route.repo, route.revision, checkFilePath(route.path), route.raw);
      }
    }
    throw new HubError(405, undefined, `${method} is not supported by this read-only mirror`);
  });

  app.onError(
    errorHandler<HubError>({
      ecosystem: 'hf',
      recorder: d.recorder,
      log: d.log,
      wire: (err) => {
        if (err instanceof HubError) return err;
        if (err instanceof HfPathError) return new HubError(400, undefined, err.message);
        if (err instanceof AirlockError || err instanceof Refusal)
          return new HubError(err.status, err.status === 404 ? 'EntryNotFound' : undefined, err.message);
        return null;
      },
      internal: () => new HubError(500, undefined, 'internal error (see the Airlock log)'),
      render: hubRefuse,
    }),
  );

  return app;
}
