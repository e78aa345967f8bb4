import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TwoPortFake } from './two-port-fake.js';

export interface HubFile {
  path: string;
  bytes: Buffer;
  /** Stored in LFS (listed with lfs.oid = sha256, downloaded through a CDN redirect). */
  lfs?: boolean;
}

export const sha1Git = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const sha256hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function pointer(f: HubFile): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256hex(f.bytes)}\nsize ${f.bytes.length}\n`);
}

/**
 * A local Hugging Face Hub for tests, built from the client contract in huggingface_hub and
 * @huggingface/hub: repo info, paged tree (absolute Link to itself), resolve with LFS files
 * redirected to a second "CDN" port carrying Xet headers, refs, and switches for moving
 * branches, tampering and token checks.
 */
export class FakeHub extends TwoPortFake {
  /** "model:org/name" -> refs and commits. */
  readonly repos = new Map<string, { refs: Map<string, string>; commits: Map<string, HubFile[]> }>();
  readonly tamper = new Set<string>();
  /** Serve altered bytes for every file of this repository. */
  tamperRepo: string | undefined;
  pageSize = 1000;
  /** Require this bearer token on every request (gated repo). */
  token: string | undefined;
  readonly authSeen: (string | undefined)[] = [];
  readonly cdnAuth: (string | undefined)[] = [];

  throttle = 0;
  /** Commit id -> its date (RFC 3339), given as lastModified by the revision endpoint (issue 27's min_age at pin time). */
  readonly commitDates = new Map<string, string>();

  /** Add a commit (and point refs at it); returns the commit id. */
  commit(type: 'model' | 'dataset', repo: string, files: HubFile[], refs: string[] = ['main']): string {
    const k = `${type}:${repo}`;
    const r = this.repos.get(k) ?? { refs: new Map(), commits: new Map() };
    const commit = createHash('sha1').update(`${k}:${r.commits.size}:${Math.random()}`).digest('hex');
    r.commits.set(commit, files);
    for (const ref of refs) r.refs.set(ref, commit);
    this.repos.set(k, r);
    return commit;
  }

  private err(res: ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code, 'x-error-message': message });
    res.end(JSON.stringify({ error: message }));
  }

  private find(type: 'model' | 'dataset', segs: string[]): { repo: string; rest: string[] } | null {
    for (const n of [2, 1]) {
      const repo = segs.slice(0, n).join('/');
      if (this.repos.has(`${type}:${repo}`)) return { repo, rest: segs.slice(n) };
    }
    return null;
  }

  private files(type: 'model' | 'dataset', repo: string, rev: string): { commit: string; files: HubFile[] } | null {
    const r = this.repos.get(`${type}:${repo}`)!;
    const commit = r.commits.has(rev) ? rev : r.refs.get(rev === 'HEAD' ? 'main' : rev);
    if (!commit) return null;
    return { commit, files: r.commits.get(commit)! };
  }

  private served(f: HubFile, repo?: string): Buffer {
    if (!this.tamper.has(f.path) && !(repo !== undefined && repo === this.tamperRepo)) return f.bytes;
    const b = Buffer.from(f.bytes);
    b[b.length - 1] ^= 0xff;
    return b;
  }

  private body(res: ServerResponse, b: Buffer): void {
    if (!this.throttle) return void res.end(b);
    let off = 0;
    const tick = () => {
      if (res.destroyed) return;
      if (off >= b.length) return void res.end();
      res.write(b.subarray(off, off + 16384));
      off += 16384;
      setTimeout(tick, (16384 / this.throttle) * 1000);
    };
    tick();
  }

  protected handleCdn(req: IncomingMessage, res: ServerResponse): void {
    this.cdnAuth.push(req.headers.authorization);
    const [, key] = new URL(req.url!, 'http://x').pathname.split('/');
    this.hit(`cdn:${key}`);
    for (const [k, r] of this.repos) {
      for (const files of r.commits.values()) {
        const f = files.find((x) => x.lfs && sha256hex(x.bytes) === key);
        if (f) {
          const b = this.served(f, k.slice(k.indexOf(':') + 1));
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(b.length) });
          return this.body(res, b);
        }
      }
    }
    res.writeHead(404).end();
  }

  private entries(files: HubFile[]): Record<string, unknown>[] {
    const dirs = new Set<string>();
    for (const f of files) {
      const parts = f.path.split('/');
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    }
    const out: Record<string, unknown>[] = [...dirs].map((d) => ({ type: 'directory', oid: createHash('sha1').update(d).digest('hex'), size: 0, path: d }));
    for (const f of files) {
      if (f.lfs) {
        const p = pointer(f);
        out.push({
          type: 'file',
          oid: sha1Git(p),
          size: f.bytes.length,
          path: f.path,
          lfs: { oid: sha256hex(f.bytes), size: f.bytes.length, pointerSize: p.length },
          xetHash: sha256hex(`xet:${f.path}`),
        });
      } else {
        out.push({ type: 'file', oid: sha1Git(f.bytes), size: f.bytes.length, path: f.path });
      }
    }
    return out.sort((a, b) => (String(a.path) < String(b.path) ? -1 : 1));
  }

  protected handle(req: IncomingMessage, res: ServerResponse): void {
    this.authSeen.push(req.headers.authorization);
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`) return this.err(res, 401, 'GatedRepo', 'access to this repo is restricted');
    const u = new URL(req.url!, this.url);
    const segs = u.pathname.split('/').slice(1);
    if (segs[0] === 'api') {
      const type = segs[1] === 'datasets' ? 'dataset' : 'model';
      const found = this.find(type, segs.slice(2));
      if (!found) return this.err(res, 404, 'RepoNotFound', 'repository not found');
      const [marker, ...rest] = found.rest;
      const rev = decodeURIComponent(rest[0] ?? 'main');
      const at = this.files(type, found.repo, rev);
      if (!at) return this.err(res, 404, 'RevisionNotFound', `revision ${rev} not found`);
      this.hit(`${marker}:${found.repo}:${rev}`);
      if (marker === 'revision') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(
          JSON.stringify({
            _id: 'x',
            id: found.repo,
            sha: at.commit,
            ...(this.commitDates.has(at.commit) ? { lastModified: this.commitDates.get(at.commit) } : {}),
            private: false,
            gated: false,
            xetEnabled: true,
            pipeline_tag: 'text-generation',
            siblings: at.files.map((f) => ({ rfilename: f.path })),
          }),
        );
      }
      if (marker === 'tree') {
        const list = this.entries(at.files);
        const start = Number(u.searchParams.get('cursor') ?? 0);
        const page = list.slice(start, start + this.pageSize);
        const h: Record<string, string> = { 'content-type': 'application/json' };
        if (start + this.pageSize < list.length) {
          const next = new URL(u.href);
          next.searchParams.set('cursor', String(start + this.pageSize));
          h.link = `<${next.href}>; rel="next"`;
        }
        res.writeHead(200, h);
        return void res.end(JSON.stringify(page));
      }
      return this.err(res, 404, 'NotFound', 'not found');
    }
    const type = segs[0] === 'datasets' ? 'dataset' : 'model';
    const found = this.find(type, type === 'dataset' ? segs.slice(1) : segs);
    if (!found || found.rest[0] !== 'resolve') return this.err(res, 404, 'RepoNotFound', 'repository not found');
    const at = this.files(type, found.repo, decodeURIComponent(found.rest[1]));
    if (!at) return this.err(res, 404, 'RevisionNotFound', 'revision not found');
    const path = found.rest.slice(2).map(decodeURIComponent).join('/');
    const f = at.files.find((x) => x.path === path);
    this.hit(`resolve:${path}`);
    if (!f) return this.err(res, 404, 'EntryNotFound', 'entry not found');
    if (f.lfs) {
      const sha = sha256hex(f.bytes);
      res.writeHead(302, {
        location: `http://127.0.0.1:${this.cdnPort}/${sha}?X-Amz-Signature=secret`,
        'x-repo-commit': at.commit,
        'x-linked-etag': `"${sha}"`,
        'x-linked-size': String(f.bytes.length),
        'x-xet-hash': sha256hex(`xet:${f.path}`),
        link: `<${this.url}/api/models/${found.repo}/xet-read-token/${at.commit}>; rel="xet-auth", <https://cas-server.xethub.hf.co/v1/reconstructions/x>; rel="xet-reconstruction-info"`,
      });
      return void res.end();
    }
    const b = this.served(f, found.repo);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(b.length), etag: `"${sha1Git(f.bytes)}"`, 'x-repo-commit': at.commit });
    this.body(res, b);
  }
}

/** The `hf:` block of an Airlock config that points at this fake Hub (and lets its CDN port in). */
export function hfUpstream(hub: FakeHub, extra = ''): string {
  return `hf:\n  upstream: ${hub.url}\n  file_hosts: ["127.0.0.1:${hub.cdnPort}"]\n${extra}`;
}
