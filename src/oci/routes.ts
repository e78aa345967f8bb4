import { Hono } from 'hono';
import { AirlockError } from '../core/errors.js';
import { errorHandler, Refusal } from '../http/refusal.js';
import { rawTargetPath, sendBytes, type AppEnv } from '../http/send.js';
import { refuse, type OciContext, type OciDeps, type Target } from './context.js';
import { API_VERSION, OciError } from './errors.js';
import { catalog, tags } from './listing.js';
import { blob, manifest } from './pull.js';
import { referrers } from './signature-gate.js';
import { PinnedLinks } from './pinned-links.js';
import { parseV2Path } from './reference.js';
import { tokenEndpoint } from './token.js';
import { ImageSignatures } from './signatures.js';
import { FirstSeen } from './first-seen.js';
import { OciUpstream } from './upstream.js';
import { fastManifests } from './fast.js';
import type { FastAnswer } from '../http/fast.js';

export { OciError } from './errors.js';
export type { OciDeps } from './context.js';

/**
 * The OCI front-end, mounted at /v2: the pull side of the distribution API for Docker
 * (registry-mirrors), containerd (hosts.toml, ?ns=) and podman/skopeo (path-prefix mirrors).
 * Thin: map the name to an upstream, ask policy, fetch through the shared verified cache,
 * answer in the spec's format. This is the dispatch; the handlers are module functions taking
 * the deps: manifests, blobs and referrers in pull.ts, tags and the catalog in listing.ts, the
 * token endpoint in token.ts, approval and refusals in context.ts (the manifest store is in
 * manifests.ts, the error envelope in errors.ts).
 */
export function createOciApp(d: OciDeps): { app: Hono<AppEnv>; fast: FastAnswer } {
  const app = new Hono<AppEnv>();
  const upstream = d.upstream ?? new OciUpstream(d);
  const o: OciContext = {
    ...d,
    upstream,
    signatures: new ImageSignatures({ ...d, upstream }),
    firstSeen: new FirstSeen(d.meta),
    links: new PinnedLinks({ upstream, live: d.live, log: d.log }),
  };
  const target = (name: string, ns: string | undefined): Target => o.upstream.target(name, ns);

  app.all('*', async (c) => {
    // The raw request line: URL parsing upstream of here would resolve "/../" and "/./" silently.
    // An absolute-form request target (`GET http://host/v2/...`) is judged by its path alone.
    const incoming = c.env?.incoming?.url;
    const raw = incoming === undefined ? undefined : rawTargetPath(incoming);
    if (raw !== undefined && /(^|\/)\.\.?(\/|$)|\/\//.test(raw)) {
      throw new OciError(400, 'NAME_INVALID', 'empty, "." and ".." path segments are not allowed in repository names');
    }
    const path = c.req.path;
    if (path === '/v2/token') return tokenEndpoint(d, c);
    const rest = path === '/v2' ? '' : path.startsWith('/v2/') ? path.slice(4) : null;
    if (rest === null) throw new OciError(404, 'NAME_UNKNOWN', 'not found');
    if (rest.length > 1024) throw new OciError(414, 'NAME_INVALID', 'request path too long');
    if (rest.includes('%')) throw new OciError(400, 'NAME_INVALID', 'percent-encoded characters are not allowed in repository names or references');
    const route = parseV2Path(rest);
    const method = c.req.method;
    if (method !== 'GET' && method !== 'HEAD') {
      throw new OciError(405, 'UNSUPPORTED', `Airlock is a read-only mirror: ${method} is not supported`, { allow: 'GET, HEAD' });
    }
    switch (route.kind) {
      case 'base':
        return sendBytes(c, 200, { ...API_VERSION, 'content-type': 'application/json' }, Buffer.from('{}'));
      case 'catalog':
        return catalog(d, c);
      case 'uploads':
        throw new OciError(405, 'UNSUPPORTED', 'Airlock is a read-only mirror: pushes are not supported', { allow: 'GET, HEAD' });
      case 'unknown':
        throw new OciError(404, 'NAME_UNKNOWN', `no such endpoint: ${path.slice(0, 200)}`);
      case 'referrers':
        return referrers(o, c, target(route.name, c.req.query('ns')), route.digest);
      case 'tags':
        return tags(d, c, target(route.name, c.req.query('ns')), route.name);
      case 'manifest':
        return manifest(o, c, target(route.name, c.req.query('ns')), route.reference);
      case 'blob':
        return blob(o, c, target(route.name, c.req.query('ns')), route.digest);
    }
  });

  app.onError(
    errorHandler<OciError>({
      ecosystem: 'oci',
      recorder: d.recorder,
      log: d.log,
      wire: (err) => {
        if (err instanceof OciError) return err;
        if (err instanceof Refusal) return new OciError(err.status, 'DENIED', err.message);
        if (err instanceof AirlockError) {
          const code =
            { POLICY_DENIED: 'DENIED', NOT_FOUND: 'NAME_UNKNOWN', BAD_REQUEST: 'NAME_INVALID', TOO_MANY_REQUESTS: 'TOOMANYREQUESTS' }[err.code as string] ??
            'UNKNOWN';
          return new OciError(err.status, code, err.message);
        }
        return null;
      },
      internal: () => new OciError(500, 'UNKNOWN', 'internal error (see the Airlock log)'),
      render: refuse,
    }),
  );

  return { app, fast: fastManifests(o) };
}
