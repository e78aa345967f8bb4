import type { Context } from 'hono';
import { sendBytes, type AppEnv } from '../http/send.js';
import type { HfRepoType } from '../names/hf.js';
import type { HfPolicy } from '../policy/index.js';
import { displayRepo } from '../names/hf.js';
import type { HfEntry, HfSnapshot } from './hub.js';

/**
 * The Hub's metadata answers from a pinned commit (repo info, tree pages, paths-info) and its
 * error contract, for the Hugging Face front-end: only the files the policy lets through, and
 * the directories that lead to them, are listed.
 */
type HubCode = 'RepoNotFound' | 'RevisionNotFound' | 'EntryNotFound';

/** An answer in the Hub's error contract: huggingface_hub classifies by X-Error-Code, @huggingface/hub reads {"error"}. */
export class HubError extends Error {
  constructor(
    readonly status: number,
    readonly code: HubCode | undefined,
    message: string,
    readonly commit?: string,
  ) {
    super(message);
  }
}

/** The Hub's CORS exposure list, minus X-Xet-Hash (transformers.js in a browser reads these). */
export const EXPOSE =
  'X-Repo-Commit, X-Request-Id, X-Error-Code, X-Error-Message, X-Total-Count, ETag, Link, Accept-Ranges, Content-Range, X-Linked-Size, X-Linked-ETag';
/** Tree pages: at most this many entries, then a Link rel="next" back to Airlock. */
export const TREE_PAGE = 1000;
export const MAX_BODY = 1024 * 1024;

export function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
}

export function hubRefuse(c: Context<AppEnv>, e: HubError): Response {
  const h: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'access-control-expose-headers': EXPOSE,
    'x-error-message': headerSafe(e.message),
  };
  if (e.code) h['x-error-code'] = e.code;
  if (e.commit) h['x-repo-commit'] = e.commit;
  return sendBytes(c, e.status, h, Buffer.from(JSON.stringify({ error: e.message })));
}

/** Files the policy lets through, and the directories that lead to them. */
export function visible(policy: HfPolicy, type: HfRepoType, repo: string, snap: HfSnapshot): HfEntry[] {
  const files = new Set(snap.entries.filter((e) => e.type === 'file' && policy.decideFile(type, repo, e.path).allow));
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return snap.entries.filter((e) => (e.type === 'file' ? files.has(e) : dirs.has(e.path)));
}

function entryJson(e: HfEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { type: e.type, oid: e.oid, size: e.size, path: e.path };
  if (e.lfs) out.lfs = { ...e.lfs };
  return out;
}

export function hubJson(c: Context<AppEnv>, body: unknown, extra: Record<string, string> = {}): Response {
  return sendBytes(
    c,
    200,
    { 'content-type': 'application/json; charset=utf-8', 'access-control-expose-headers': EXPOSE, ...extra },
    Buffer.from(JSON.stringify(body)),
  );
}

export function info(c: Context<AppEnv>, policy: HfPolicy, type: HfRepoType, repo: string, snap: HfSnapshot): Response {
  const blobs = c.req.query('blobs') === 'true' || c.req.query('blobs') === '1';
  const siblings = visible(policy, type, repo, snap)
    .filter((e) => e.type === 'file')
    .map((e) =>
      blobs
        ? { rfilename: e.path, size: e.size, blobId: e.oid, ...(e.lfs ? { lfs: { sha256: e.lfs.oid, size: e.lfs.size, pointerSize: e.lfs.pointerSize } } : {}) }
        : { rfilename: e.path },
    );
  return hubJson(c, { ...snap.info, id: repo, sha: snap.commit, siblings });
}

export function tree(c: Context<AppEnv>, policy: HfPolicy, type: HfRepoType, repo: string, snap: HfSnapshot, path: string): Response {
  const recursive = c.req.query('recursive') === 'true' || c.req.query('recursive') === '1';
  const all = visible(policy, type, repo, snap);
  if (path !== '' && !all.some((e) => e.type === 'directory' && e.path === path)) {
    throw new HubError(
      404,
      'EntryNotFound',
      `${path} is not a folder of ${displayRepo(type, repo)}@${snap.commit}, or none of its files is allowed by the mirror policy`,
      snap.commit,
    );
  }
  const prefix = path === '' ? '' : `${path}/`;
  const list = all.filter((e) => e.path.startsWith(prefix) && (recursive || !e.path.slice(prefix.length).includes('/')));
  const cursorQ = c.req.query('cursor');
  const start = cursorQ === undefined ? 0 : Number(cursorQ);
  if (!Number.isSafeInteger(start) || start < 0 || start > list.length)
    throw new HubError(400, undefined, `cursor: expected a cursor from a previous page's Link header`);
  const page = list.slice(start, start + TREE_PAGE);
  const extra: Record<string, string> = {};
  if (start + TREE_PAGE < list.length) {
    // Absolute, and back to Airlock: huggingface_hub and @huggingface/hub follow it as given.
    const next = new URL(c.req.url);
    next.search = '';
    next.searchParams.set('recursive', String(recursive));
    next.searchParams.set('expand', c.req.query('expand') ?? 'false');
    next.searchParams.set('cursor', String(start + TREE_PAGE));
    extra.link = `<${next.href}>; rel="next"`;
  }
  return hubJson(c, page.map(entryJson), extra);
}

export async function pathsInfo(c: Context<AppEnv>, policy: HfPolicy, type: HfRepoType, repo: string, snap: HfSnapshot): Promise<Response> {
  const len = Number(c.req.header('content-length') ?? '0');
  if (len > MAX_BODY) throw new HubError(413, undefined, `request body over ${MAX_BODY} bytes`);
  const raw = await c.req.text();
  if (raw.length > MAX_BODY) throw new HubError(413, undefined, `request body over ${MAX_BODY} bytes`);
  let paths: string[];
  const ct = c.req.header('content-type') ?? '';
  if (ct.includes('application/json')) {
    let body: { paths?: unknown };
    try {
      body = JSON.parse(raw);
    } catch {
      throw new HubError(400, undefined, 'expected a JSON body {"paths": [...]}');
    }
    if (!Array.isArray(body.paths) || !body.paths.every((p) => typeof p === 'string'))
      throw new HubError(400, undefined, 'paths: expected a list of file paths');
    paths = body.paths as string[];
  } else {
    paths = new URLSearchParams(raw).getAll('paths');
  }
  if (paths.length > 10_000) throw new HubError(400, undefined, 'paths: at most 10,000 paths per request');
  const all = new Map(visible(policy, type, repo, snap).map((e) => [e.path, e]));
  const out = [];
  for (const p of paths) {
    const e = all.get(p.replace(/\/+$/, ''));
    if (e) out.push(entryJson(e));
  }
  return hubJson(c, out);
}
