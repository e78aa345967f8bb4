import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import type { BlobCache } from '../core/cache.js';
import type { Recorder, RecordRow } from '../core/records.js';
import { serveBlob, serveSmall } from '../http/serve-blob.js';
import { errorHandler, Refusal, type RefusalRow } from '../http/refusal.js';
import { clientAddress, sendBytes, sendStream, type AppEnv } from '../http/send.js';
import type { Policy } from '../policy/index.js';
import type { Decision } from '../policy/types.js';
import type { OciStore, PullRecord } from '../storage/meta-store.js';
import { header, readBoundedBytes } from '../upstream/http.js';
import { MT, ManifestError, accepts, isIndexType, parseManifest, parseV2Path } from './reference.js';
import { checkDigest, isValidTag } from '../names/oci.js';
import type { RegistryClient } from './registry-client.js';
import type { ImageGate } from './gate.js';
import type { ImageInventories } from './inventory.js';
import { API_VERSION, OciError, errorBody, headerSafe } from './errors.js';
import { OciUpstream, type LoadedManifest, type UpstreamTarget } from './upstream.js';
import { presentedSecret, type Authenticator } from '../auth/tokens.js';

export { OciError } from './errors.js';

export interface OciDeps {
  authenticator: Authenticator;
  policy: () => Policy;
  /** Upstream registries by the name clients use for them (docker.io, ghcr.io, ...). */
  registries: Map<string, RegistryClient>;
  defaultRegistry: string;
  cache: BlobCache;
  meta: OciStore;
  recorder: Recorder;
  log: Logger;
  maxManifestBytes: number;
  /** Image inventories. */
  inventories: ImageInventories;
  /** Read layers for their inventory as they are filled (oci.inventory: on-fill), not only when an image is judged. */
  inventoryOnFill: boolean;
  /** The advisory gate on image manifests. */
  gate: ImageGate;
}

type Target = UpstreamTarget;

interface Approval {
  decision: Decision;
  /** Size declared by the approving parent manifest (for content reached through one). */
  size?: number;
}

/**
 * The OCI front-end, mounted at /v2: the pull side of the distribution API for Docker
 * (registry-mirrors), containerd (hosts.toml, ?ns=) and podman/skopeo (path-prefix mirrors).
 * Thin: map the name to an upstream, ask policy, fetch through the shared verified cache,
 * answer in the spec's format.
 */
export function createOciApp(d: OciDeps): Hono<AppEnv> {
  // A factory of small handlers (manifest, blob, referrers, tags, token, catalog) closing over one
  // set of dependencies; the manifest store is in manifests.ts, the error envelope in errors.ts.
  const app = new Hono<AppEnv>();
  const upstream = new OciUpstream(d);

  function refuse(c: Context<AppEnv>, e: OciError): Response {
    return sendBytes(
      c,
      e.status,
      {
        ...API_VERSION,
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'x-airlock-reason': headerSafe(e.message),
        ...e.extraHeaders,
      },
      errorBody(e.code, e.message),
    );
  }

  const target = (name: string, ns: string | undefined): Target => upstream.target(name, ns);

  /** A manifest or blob digest is approved when pinned, or referenced by an approved manifest of the same repository. */
  async function approve(repo: string, digest: string, depth = 0): Promise<Approval> {
    const policy = d.policy();
    const direct = policy.oci.decideDigest(repo, digest);
    if (direct.allow || direct.code !== 'digest_not_pinned' || depth >= 3) return { decision: direct };
    for (const p of await d.meta.getOciParents(repo, digest)) {
      const parent = await approve(repo, p.parent, depth + 1);
      if (parent.decision.allow) return { decision: policy.oci.decideReferenced(repo, digest, parent.decision), size: p.size };
    }
    return { decision: direct };
  }

  function baseRecord(c: Context<AppEnv>, t: Target, reference: string, kind: 'manifest' | 'blob'): Omit<RecordRow, 'cache' | 'decision'> {
    return { ts: Date.now(), client: clientAddress(c), ecosystem: 'oci', name: t.repo, version: reference, filename: kind, requestId: c.get('requestId') };
  }

  /** A policy refusal: on record (the shared error handler writes the row), DENIED to the client. */
  function deny(
    t: Target,
    reference: string | null,
    kind: RefusalRow['filename'],
    decision: Decision & { allow: false },
    sha256?: string,
    scan?: string,
  ): never {
    throw new Refusal({
      status: 403,
      code: decision.code,
      rule: decision.rule,
      reason: decision.reason,
      row: { name: t.repo, version: reference, filename: kind, sha256: sha256 ?? null, scan: scan ?? null },
      answer: new OciError(403, 'DENIED', decision.reason),
    });
  }

  /** An upstream failure (or a digest that disagrees) while loading what was approved: on record, answered as the error it is. */
  function failed(e: unknown, t: Target, reference: string, sha256: string, rule: string, cache: RefusalRow['cache'] = 'none', judging = false): Refusal {
    // While the gate judges the image, any failure (a layer it must read) is an error: the manifest itself verified.
    const mismatch = !judging && e instanceof AirlockError && e.code === 'DIGEST_MISMATCH';
    return new Refusal({
      status: e instanceof AirlockError || e instanceof OciError ? e.status : 500,
      code: mismatch ? 'digest_mismatch' : 'upstream_failed',
      decision: mismatch ? 'deny' : 'error',
      rule,
      reason: (e as Error).message,
      row: { name: t.repo, version: reference, filename: 'manifest', sha256, cache },
      answer: e as Error,
    });
  }

  async function manifest(c: Context<AppEnv>, t: Target, reference: string): Promise<Response> {
    let digest: string;
    let approval: Approval;
    if (reference.includes(':')) {
      const check = checkDigest(reference);
      if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
      digest = reference;
      approval = await approve(t.repo, digest);
    } else {
      if (!isValidTag(reference)) throw new OciError(400, 'TAG_INVALID', `${JSON.stringify(reference.slice(0, 140))} is not a valid tag`);
      const r = d.policy().oci.resolveTag(t.repo, reference);
      approval = { decision: r.decision };
      digest = r.digest ?? '';
    }
    if (!approval.decision.allow) deny(t, reference, 'manifest', approval.decision, digest ? digest.slice(7) : undefined);
    const rule = approval.decision.rule;
    let m: LoadedManifest;
    try {
      m = await upstream.manifest(t, digest, approval.size);
    } catch (e) {
      throw failed(e, t, reference, digest.slice(7), rule);
    }
    // The advisory gate: an image is served only once its packages have been judged.
    let gated;
    try {
      gated = await d.gate.check({ repo: t.repo, openBlob: (dg, signal) => openBlob(t, dg, signal) }, digest, m.bytes, isIndexType(m.mediaType));
    } catch (e) {
      throw failed(e, t, reference, digest.slice(7), rule, m.cache, true);
    }
    if (gated && !gated.verdict.decision.allow) deny(t, reference, 'manifest', gated.verdict.decision, digest.slice(7), gated.summary);
    const headers: Record<string, string> = {
      ...API_VERSION,
      'content-type': m.mediaType,
      'docker-content-digest': digest,
      etag: `"${digest}"`,
      'x-airlock-cache': m.cache,
    };
    if (!accepts(c.req.header('accept'), m.mediaType)) {
      throw new OciError(
        404,
        'MANIFEST_UNKNOWN',
        `${t.repo}@${digest} is a ${m.mediaType}, which this client's Accept header does not include; Airlock serves manifests unconverted`,
      );
    }
    const inm = c.req.header('if-none-match');
    if (inm && inm.split(',').some((v) => v.trim() === `"${digest}"`)) return sendStream(c, 304, headers, null);
    // On record (committed) before the client has the manifest.
    const row = { ...baseRecord(c, t, reference, 'manifest'), sha256: digest.slice(7), size: m.bytes.length, cache: m.cache, decision: 'allow' as const, rule };
    return serveSmall(c, m.bytes, headers, { recorder: d.recorder, row: { ...row, scan: gated?.summary ?? null } });
  }

  const openBlob = (t: Target, digest: string, signal: AbortSignal) => upstream.openBlob(t, digest, signal);

  async function blob(c: Context<AppEnv>, t: Target, digest: string): Promise<Response> {
    const check = checkDigest(digest);
    if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
    const hex = digest.slice(7);
    const approval = await approve(t.repo, digest);
    if (!approval.decision.allow) {
      const dec = approval.decision;
      const reason =
        dec.code === 'digest_not_pinned'
          ? `${t.repo}@${digest} is not referenced by any approved manifest of ${t.repo} pulled through Airlock; blobs are served only as part of an approved image`
          : dec.reason;
      deny(t, digest, 'blob', { ...dec, code: dec.code === 'digest_not_pinned' ? 'not_referenced' : dec.code, reason }, hex);
    }
    const rule = approval.decision.rule;
    const headers: Record<string, string> = {
      ...API_VERSION,
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      etag: `"${digest}"`,
      'accept-ranges': 'bytes',
      'cache-control': 'public, max-age=31536000, immutable',
    };
    if (c.req.method === 'HEAD') {
      const size = (await d.cache.cachedSize(hex)) ?? approval.size;
      if (size !== undefined) headers['content-length'] = String(size);
      return sendStream(c, 200, headers, null);
    }
    const base = baseRecord(c, t, digest, 'blob');
    const spec = {
      sha256: hex,
      size: approval.size,
      open: (signal: AbortSignal) => openBlob(t, digest, signal),
      observe: d.inventoryOnFill ? d.inventories.observer(hex) : undefined,
    };
    try {
      return await serveBlob(c, d.cache, spec, headers, { recorder: d.recorder, base: { ...base, sha256: hex }, rule, label: `${t.repo}@${digest}` });
    } catch (e) {
      if (e instanceof AirlockError && e.code === 'NOT_FOUND') throw new OciError(404, 'BLOB_UNKNOWN', e.message);
      throw e;
    }
  }

  /**
   * Referrers (signatures, SBOMs, attestations) of an approved manifest, as the upstream lists
   * them. Each listed manifest is linked to its subject, so it is approved through it (and its
   * blobs through it in turn): cosign and notation can verify what they pull through Airlock.
   */
  async function referrers(c: Context<AppEnv>, t: Target, digest: string): Promise<Response> {
    const check = checkDigest(digest);
    if (!check.ok) throw new OciError(400, 'DIGEST_INVALID', check.reason);
    const approval = await approve(t.repo, digest);
    if (!approval.decision.allow) deny(t, digest, 'referrers', approval.decision, digest.slice(7));
    const q = c.req.query('artifactType');
    const res = await t.client.request(t.upstreamName, `referrers/${digest}${q ? `?artifactType=${encodeURIComponent(q)}` : ''}`, { accept: MT.ociIndex });
    if (res.status === 404) {
      res.body.resume();
      throw new OciError(404, 'NAME_UNKNOWN', `${t.registry} does not offer the referrers API; clients fall back to the sha256-<hex> tag schema`);
    }
    if (res.status !== 200) {
      res.body.resume();
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${t.registry} answered ${res.status} for the referrers of ${t.upstreamName}@${digest}`);
    }
    const bytes = await readBoundedBytes(res.body, d.maxManifestBytes);
    let parsed;
    try {
      parsed = parseManifest(bytes, MT.ociIndex);
    } catch (e) {
      if (e instanceof ManifestError) throw new OciError(502, 'MANIFEST_INVALID', `${t.registry}'s referrers list for ${digest}: ${e.message}`);
      throw e;
    }
    if (!parsed.isIndex) throw new OciError(502, 'MANIFEST_INVALID', `${t.registry}'s referrers list for ${digest} is not an index`);
    await d.meta.addOciLinks(t.repo, digest, parsed.children);
    const headers: Record<string, string> = { ...API_VERSION, 'content-type': MT.ociIndex };
    const filtered = header(res.headers, 'oci-filters-applied');
    if (filtered) headers['oci-filters-applied'] = filtered;
    return sendBytes(c, 200, headers, bytes);
  }

  /** The spec's n/last paging of a sorted list, with a Link to the next page under `path`. */
  function page(c: Context<AppEnv>, sorted: string[], path: string): { items: string[]; headers: Record<string, string> } {
    let items = sorted;
    const last = c.req.query('last');
    if (last !== undefined) items = items.filter((x) => x > last);
    const nq = c.req.query('n');
    const headers: Record<string, string> = { ...API_VERSION, 'content-type': 'application/json' };
    if (nq !== undefined) {
      if (!/^\d{1,6}$/.test(nq)) throw new OciError(400, 'PAGINATION_NUMBER_INVALID', `n: expected a whole number, got ${JSON.stringify(nq.slice(0, 20))}`);
      const n = Number(nq);
      if (items.length > n) {
        items = items.slice(0, n);
        if (n > 0) headers.link = `<${path}?n=${n}&last=${encodeURIComponent(items[items.length - 1])}>; rel="next"`;
      }
    }
    return { items, headers };
  }

  function tags(c: Context<AppEnv>, t: Target, name: string): Response {
    const policy = d.policy().oci;
    const dec = policy.decideRepository(t.repo);
    if (!dec.allow) deny(t, null, 'tags', dec);
    const { items, headers } = page(c, policy.tags(t.repo), `/v2/${name}/tags/list`);
    return sendBytes(c, 200, headers, Buffer.from(JSON.stringify({ name, tags: items })));
  }

  /**
   * The registry token endpoint (docker login, skopeo --creds, containerd host credentials):
   * HTTP Basic with a client token in, that token back as the bearer token. Airlock's tokens are
   * long-lived and revocable, so no second, short-lived secret is minted.
   */
  async function tokenEndpoint(c: Context<AppEnv>): Promise<Response> {
    const secret = presentedSecret(c.req.header('authorization'));
    const id = secret ? await d.authenticator.identify(secret) : null;
    if (!id || !secret) {
      return sendBytes(
        c,
        401,
        { ...API_VERSION, 'content-type': 'application/json', 'www-authenticate': 'Basic realm="airlock"', 'cache-control': 'no-store' },
        errorBody(
          'UNAUTHORIZED',
          secret ? 'the token presented is not valid (unknown or revoked)' : 'log in with a client token as the password (airlock token create --name NAME)',
        ),
      );
    }
    return sendBytes(
      c,
      200,
      { 'content-type': 'application/json', 'cache-control': 'no-store' },
      Buffer.from(JSON.stringify({ token: secret, access_token: secret, expires_in: 3600, issued_at: new Date().toISOString() })),
    );
  }

  function catalog(c: Context<AppEnv>): Response {
    const { items, headers } = page(c, d.policy().oci.repositories(), '/v2/_catalog');
    return sendBytes(c, 200, headers, Buffer.from(JSON.stringify({ repositories: items })));
  }

  app.all('*', async (c) => {
    // The raw request line: URL parsing upstream of here would resolve "/../" and "/./" silently.
    const raw = c.env?.incoming?.url?.split('?')[0];
    if (raw !== undefined && /(^|\/)\.\.?(\/|$)|\/\//.test(raw)) {
      throw new OciError(400, 'NAME_INVALID', 'empty, "." and ".." path segments are not allowed in repository names');
    }
    const path = c.req.path;
    if (path === '/v2/token') return tokenEndpoint(c);
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
        return catalog(c);
      case 'uploads':
        throw new OciError(405, 'UNSUPPORTED', 'Airlock is a read-only mirror: pushes are not supported', { allow: 'GET, HEAD' });
      case 'unknown':
        throw new OciError(404, 'NAME_UNKNOWN', `no such endpoint: ${path.slice(0, 200)}`);
      case 'referrers':
        return referrers(c, target(route.name, c.req.query('ns')), route.digest);
      case 'tags':
        return tags(c, target(route.name, c.req.query('ns')), route.name);
      case 'manifest':
        return manifest(c, target(route.name, c.req.query('ns')), route.reference);
      case 'blob':
        return blob(c, target(route.name, c.req.query('ns')), route.digest);
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

  return app;
}
