import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TwoPortFake } from './two-port-fake.js';

export const digestOf = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface Image {
  manifest: Buffer;
  digest: string;
  mediaType: string;
  config: Buffer;
  layers: Buffer[];
}

/** Build an OCI image manifest (config + layers) with exact bytes and digests. */
export function makeImage(layers: Buffer[], arch = 'amd64', mediaType = 'application/vnd.oci.image.manifest.v1+json'): Image {
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(digestOf) } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(l), size: l.length })),
    }),
  );
  return { manifest, digest: digestOf(manifest), mediaType, config, layers };
}

export function makeIndex(images: { img: Image; arch: string }[]): { bytes: Buffer; digest: string; mediaType: string } {
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: images.map(({ img, arch }) => ({
        mediaType: img.mediaType,
        digest: img.digest,
        size: img.manifest.length,
        platform: { architecture: arch, os: 'linux' },
      })),
    }),
  );
  return { bytes, digest: digestOf(bytes), mediaType };
}

/**
 * A local OCI registry for tests: the pull API with the Bearer token flow (token endpoint on the
 * same server), blob redirects to a second "CDN" server on another port, and switches for
 * tampering, moving tags and slow bodies.
 */
export class FakeRegistry extends TwoPortFake {
  readonly manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  readonly tags = new Map<string, string>();
  readonly blobs = new Map<string, Buffer>();
  /** Referrers (e.g. signatures) by subject digest (or "repo@digest", looked up first): what GET /v2/<name>/referrers/<digest> lists. */
  readonly referrers = new Map<string, Image[]>();
  /** The artifactType listed for a referrer (by its digest); cosign's simple signing when not set. */
  readonly referrerTypes = new Map<string, string>();
  /** A referrers list's exact body (by subject digest), instead of one made from `referrers`. */
  readonly referrersRaw = new Map<string, Buffer>();
  /** The referrers API: offered (api), absent (404: none), or an empty list for every digest (empty200). */
  referrersMode: 'api' | 'none' | 'empty200' = 'api';
  /** A Link header sent with a referrers list (by subject digest or "repo@digest"); the query of each referrers request, in order. */
  readonly referrersLink = new Map<string, string>();
  readonly referrersQueries: string[] = [];
  /** Digests served with one byte altered. */
  readonly tamper = new Set<string>();
  /** Require a Bearer token (issued by /token) for /v2/ requests. */
  auth = true;
  tokenSeconds: number | undefined = 300;
  /** Redirect blob GETs to the CDN server. */
  redirectBlobs = true;
  /** Bytes per second for blob bodies; 0 = unthrottled. */
  throttle = 0;
  down = false;

  tokenRequests: { scope: string | null; service: string | null; authorization?: string }[] = [];
  /** Authorization headers seen by the CDN (must stay empty). */
  cdnAuthorization: (string | undefined)[] = [];
  private readonly issued = new Set<string>();

  /** Publish an image (its manifest, config and layers) under repo, optionally tagging it. */
  push(repo: string, img: Image, tag?: string): void {
    this.manifests.set(`${repo}@${img.digest}`, { bytes: img.manifest, mediaType: img.mediaType });
    this.blobs.set(digestOf(img.config), img.config);
    for (const l of img.layers) this.blobs.set(digestOf(l), l);
    if (tag) this.tags.set(`${repo}:${tag}`, img.digest);
  }

  pushIndex(repo: string, index: { bytes: Buffer; digest: string; mediaType: string }, images: Image[], tag?: string): void {
    for (const img of images) this.push(repo, img);
    this.manifests.set(`${repo}@${index.digest}`, { bytes: index.bytes, mediaType: index.mediaType });
    if (tag) this.tags.set(`${repo}:${tag}`, index.digest);
  }

  revokeTokens(): void {
    this.issued.clear();
  }

  private error(res: ServerResponse, status: number, code: string, extra: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...extra });
    res.end(JSON.stringify({ errors: [{ code, message: code.toLowerCase() }] }));
  }

  private sendBody(res: ServerResponse, body: Buffer, head: boolean): void {
    if (head) return void res.end();
    if (!this.throttle) return void res.end(body);
    const chunk = 16 * 1024;
    let off = 0;
    const tick = () => {
      if (res.destroyed) return;
      if (off >= body.length) return void res.end();
      res.write(body.subarray(off, off + chunk));
      off += chunk;
      setTimeout(tick, (chunk / this.throttle) * 1000);
    };
    tick();
  }

  private served(digest: string, bytes: Buffer): Buffer {
    if (!this.tamper.has(digest)) return bytes;
    const b = Buffer.from(bytes);
    b[b.length - 1] ^= 0xff;
    return b;
  }

  protected handleCdn(req: IncomingMessage, res: ServerResponse): void {
    this.cdnAuthorization.push(req.headers.authorization);
    const digest = new URL(req.url!, 'http://x').pathname.slice(1);
    this.hit(`cdn:${digest}`);
    const b = this.blobs.get(digest);
    if (!b) return this.error(res, 404, 'BLOB_UNKNOWN');
    const body = this.served(digest, b);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
    this.sendBody(res, body, req.method === 'HEAD');
  }

  protected handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.down) return void req.socket.destroy();
    const u = new URL(req.url!, this.url);
    if (u.pathname === '/token') {
      this.tokenRequests.push({ scope: u.searchParams.get('scope'), service: u.searchParams.get('service'), authorization: req.headers.authorization });
      const token = randomBytes(12).toString('hex');
      this.issued.add(token);
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(this.tokenSeconds === undefined ? { token } : { token, expires_in: this.tokenSeconds }));
    }
    if (!u.pathname.startsWith('/v2/')) return this.error(res, 404, 'NOT_FOUND');
    if (this.auth) {
      const auth = req.headers.authorization ?? '';
      const tok = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      if (!this.issued.has(tok)) {
        const m = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(u.pathname);
        const scope = m ? `,scope="repository:${m[1]}:pull"` : '';
        return this.error(res, 401, 'UNAUTHORIZED', { 'www-authenticate': `Bearer realm="${this.url}/token",service="fake-registry"${scope}` });
      }
    }
    const rest = u.pathname.slice(4);
    const head = req.method === 'HEAD';
    const rf = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
    if (rf) {
      this.hit(`referrers:${rf[2]}`);
      if (this.referrersMode === 'none') return this.error(res, 404, 'NOT_FOUND');
      const key = (m: Map<string, unknown>) => (m.has(`${rf[1]}@${rf[2]}`) ? `${rf[1]}@${rf[2]}` : rf[2]);
      const raw = this.referrersMode === 'api' ? this.referrersRaw.get(key(this.referrersRaw)) : undefined;
      this.referrersQueries.push(u.search);
      const link = this.referrersMode === 'api' ? this.referrersLink.get(key(this.referrersLink)) : undefined;
      if (link) res.setHeader('link', link);
      if (raw) {
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' });
        return void res.end(raw);
      }
      const list = this.referrersMode === 'empty200' ? [] : (this.referrers.get(key(this.referrers)) ?? []);
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' });
      return void res.end(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: list.map((m) => ({
            mediaType: m.mediaType,
            digest: m.digest,
            size: m.manifest.length,
            artifactType: this.referrerTypes.get(m.digest) ?? 'application/vnd.dev.cosign.simplesigning.v1+json',
          })),
        }),
      );
    }
    let m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
    if (m) {
      const [, repo, ref] = m;
      this.hit(`manifest:${repo}:${ref}`);
      const digest = ref.includes(':') ? ref : this.tags.get(`${repo}:${ref}`);
      const man = digest && this.manifests.get(`${repo}@${digest}`);
      if (!digest || !man) return this.error(res, 404, 'MANIFEST_UNKNOWN');
      const body = this.served(digest, man.bytes);
      res.writeHead(200, { 'content-type': man.mediaType, 'docker-content-digest': digest, 'content-length': String(body.length) });
      return void (head ? res.end() : res.end(body));
    }
    m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
    if (m) {
      const [, repo, digest] = m;
      this.hit(`blob:${digest}`);
      const b = this.blobs.get(digest);
      if (!b) return this.error(res, 404, 'BLOB_UNKNOWN');
      if (this.redirectBlobs && !head) {
        res.writeHead(307, { location: `http://127.0.0.1:${this.cdnPort}/${digest}?repo=${encodeURIComponent(repo)}` });
        return void res.end();
      }
      const body = this.served(digest, b);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length), 'docker-content-digest': digest });
      return this.sendBody(res, body, head);
    }
    this.error(res, 404, 'NOT_FOUND');
  }
}
