import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import { SingleFlight } from '../core/flight.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import { parseInstant } from '../policy/index.js';
import type { PageCache } from '../storage/meta-store.js';
import { header, readBounded, redact, upstreamUrlAllowed, type GetOptions, type UpstreamHttp, type UpstreamResponse } from '../upstream/http.js';

/** One entry of a repository tree at a commit, as the Hub's tree API gives it (Xet fields dropped). */
export interface HfEntry {
  type: 'file' | 'directory';
  path: string;
  size: number;
  /** Git object id: the blob sha1 of the content (of the LFS pointer, for LFS files). */
  oid: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

/** What Airlock knows about a repository at one commit: immutable, so cached for good. */
export interface HfSnapshot {
  type: HfRepoType;
  repo: string;
  commit: string;
  /** Sorted by path. */
  entries: HfEntry[];
  byPath: Map<string, HfEntry>;
  /** The Hub's repo info at that commit, with siblings and every Xet field removed. */
  info: Record<string, unknown>;
}

export interface HubOptions {
  http: UpstreamHttp;
  meta: PageCache;
  log: Logger;
  upstream: string;
  fileHosts: string[];
  token?: string;
  maxMetadataBytes: number;
}

const SHA1 = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Drop every Xet field (clients must never be steered to the Xet CAS, past the mirror). */
function cleanInfo(v: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    if (k === 'siblings' || /^xet/i.test(k)) continue;
    out[k] = val;
  }
  return out;
}

function entryOf(v: unknown): HfEntry | null {
  const e = v as Record<string, unknown>;
  if (!e || typeof e !== 'object' || typeof e.path !== 'string') return null;
  if (e.type !== 'file' && e.type !== 'directory') return null;
  const out: HfEntry = { type: e.type, path: e.path, size: typeof e.size === 'number' ? e.size : 0, oid: typeof e.oid === 'string' ? e.oid : '' };
  const lfs = e.lfs as Record<string, unknown> | undefined;
  if (e.type === 'file' && lfs && typeof lfs === 'object') {
    if (typeof lfs.oid !== 'string' || !SHA256.test(lfs.oid) || typeof lfs.size !== 'number') return null;
    out.lfs = { oid: lfs.oid, size: lfs.size, pointerSize: typeof lfs.pointerSize === 'number' ? lfs.pointerSize : 0 };
    out.size = lfs.size;
  } else if (e.type === 'file' && !SHA1.test(out.oid)) {
    return null;
  }
  return out;
}

/** Encode a repository file path for a URL, keeping the slashes. */
export function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

/**
 * The upstream Hub, for metadata: a repository's full tree and info at a pinned commit, fetched
 * once (tree pages followed only on the Hub's own host), cleaned and stored. Files are opened
 * through the resolve endpoint, whose LFS/Xet redirects go only to the configured file hosts.
 * One service token may be sent upstream; it never leaves the Hub's host.
 */
export class Hub {
  private readonly base: URL;
  private readonly memo = new Map<string, HfSnapshot>();
  private readonly flights = new SingleFlight<string, HfSnapshot>();

  constructor(private readonly o: HubOptions) {
    this.base = new URL(o.upstream.endsWith('/') ? o.upstream : `${o.upstream}/`);
  }

  allowUrl = (u: URL): boolean => upstreamUrlAllowed(u, this.base, this.o.fileHosts);

  private allowApiUrl = (u: URL): boolean => u.host === this.base.host && u.protocol === this.base.protocol;

  private headers(): Record<string, string> {
    return this.o.token ? { authorization: `Bearer ${this.o.token}` } : {};
  }

  private async getJson(url: URL, what: string): Promise<{ body: unknown; res: UpstreamResponse }> {
    const res = await this.o.http.get(url, { headers: { accept: 'application/json', ...this.headers() }, allowUrl: this.allowApiUrl });
    if (res.status !== 200) {
      res.body.resume();
      const code = header(res.headers, 'x-error-code');
      if (res.status === 404 || res.status === 401) {
        throw new AirlockError('NOT_FOUND', `the Hub answered ${res.status}${code ? ` ${code}` : ''} for ${what}`);
      }
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub answered ${res.status} for ${what}`);
    }
    const text = await readBounded(res.body, this.o.maxMetadataBytes);
    try {
      return { body: JSON.parse(text), res };
    } catch {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub answered ${what} with something other than JSON`);
    }
  }

  private key(type: HfRepoType, repo: string, commit: string): string {
    return `hf:snapshot:${type}:${repo}:${commit}`;
  }

  /** The repository at a pinned commit: from memory, the metadata store, or the Hub (then stored). */
  async snapshot(type: HfRepoType, repo: string, commit: string): Promise<HfSnapshot> {
    const k = this.key(type, repo, commit);
    const hit = this.memo.get(k);
    if (hit) return hit;
    const stored = await this.o.meta.getPage(k);
    if (stored) return this.remember(k, this.build(type, repo, commit, JSON.parse(stored.body)));
    return this.flights.run(k, () => this.fetchSnapshot(type, repo, commit));
  }

  private remember(k: string, s: HfSnapshot): HfSnapshot {
    if (this.memo.size >= 64) this.memo.delete(this.memo.keys().next().value!);
    this.memo.set(k, s);
    return s;
  }

  private build(type: HfRepoType, repo: string, commit: string, stored: { entries: HfEntry[]; info: Record<string, unknown> }): HfSnapshot {
    const entries = stored.entries;
    // A path listed twice: which entry a request gets, and which one a check (the model signature, a scan) read, could differ.
    const twice = entries.find((e, i) => i > 0 && entries[i - 1].path === e.path);
    if (twice)
      throw new AirlockError(
        'UPSTREAM_BAD_RESPONSE',
        `the Hub's tree of ${displayRepo(type, repo)}@${commit} lists ${JSON.stringify(twice.path.slice(0, 200))} twice`,
      );
    return { type, repo, commit, entries, byPath: new Map(entries.map((e) => [e.path, e])), info: stored.info };
  }

  private async fetchSnapshot(type: HfRepoType, repo: string, commit: string): Promise<HfSnapshot> {
    const api = `api/${type}s/${repo}`;
    const name = `${displayRepo(type, repo)}@${commit}`;
    const { body: info } = await this.getJson(new URL(`${api}/revision/${commit}`, this.base), `the repo info of ${name}`);
    if (!info || typeof info !== 'object' || (info as { sha?: unknown }).sha !== commit) {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub's info for ${name} does not name that commit`);
    }
    const entries: HfEntry[] = [];
    let url: URL | undefined = new URL(`${api}/tree/${commit}?recursive=true&expand=false`, this.base);
    for (let page = 0; url; page++) {
      if (page > 10_000) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub's tree of ${name} did not end`);
      const { body, res } = await this.getJson(url, `the file list of ${name}`);
      if (!Array.isArray(body)) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub's tree of ${name} is not a list`);
      for (const v of body) {
        const e = entryOf(v);
        if (!e)
          throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub's tree of ${name} has an entry Airlock cannot verify: ${JSON.stringify(v).slice(0, 200)}`);
        entries.push(e);
      }
      url = nextLink(header(res.headers, 'link'), res.url);
      if (url && !this.allowApiUrl(url)) throw new AirlockError('UPSTREAM_HOST_NOT_ALLOWED', `the Hub's next page link points at ${redact(url)}`);
    }
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const stored = { entries, info: cleanInfo(info as Record<string, unknown>) };
    const k = this.key(type, repo, commit);
    const snap = this.build(type, repo, commit, stored);
    await this.o.meta.putPage({ key: k, body: JSON.stringify(stored), fetchedAt: Date.now(), etag: null });
    this.o.log.info({ ecosystem: 'hf', repo: displayRepo(type, repo), commit, files: entries.length }, 'repository metadata fetched');
    return this.remember(k, snap);
  }

  /** Resolve a branch or tag upstream (for `airlock pin`): the commit it points at today. */
  async resolveRevision(type: HfRepoType, repo: string, revision: string): Promise<string> {
    return (await this.revisionInfo(type, repo, revision)).commit;
  }

  /** The commit a revision points at and its date (the revision's lastModified; null when the Hub gives none), for min_age at pin time. */
  async revisionInfo(type: HfRepoType, repo: string, revision: string): Promise<{ commit: string; date: number | null }> {
    const { body } = await this.getJson(
      new URL(`api/${type}s/${repo}/revision/${encodeURIComponent(revision)}`, this.base),
      `${displayRepo(type, repo)}@${revision}`,
    );
    const sha = (body as { sha?: unknown }).sha;
    if (typeof sha !== 'string' || !SHA1.test(sha))
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub did not give a commit for ${displayRepo(type, repo)}@${revision}`);
    return { commit: sha, date: parseInstant((body as { lastModified?: unknown }).lastModified) };
  }

  /**
   * GET a file at a commit through the Hub's resolve endpoint (LFS/Xet bridge redirects followed).
   * `transfer`: an LFS body, its size and client (the host's connections are shared out by them).
   */
  async openFile(
    type: HfRepoType,
    repo: string,
    commit: string,
    path: string,
    signal?: AbortSignal,
    transfer?: GetOptions['transfer'],
  ): Promise<UpstreamResponse> {
    const prefix = type === 'dataset' ? 'datasets/' : '';
    const url = new URL(`${prefix}${repo}/resolve/${commit}/${encodePath(path)}`, this.base);
    return this.o.http.get(url, { headers: this.headers(), signal, transfer, allowUrl: this.allowUrl, maxRedirects: 10 });
  }
}

/** The rel="next" URL of a Link header, resolved against the response URL. */
export function nextLink(link: string | undefined, base: URL): URL | undefined {
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m && /rel="?next"?/.test(m[2])) return new URL(m[1], base);
  }
  return undefined;
}
