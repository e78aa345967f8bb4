import { Hono } from 'hono';
import { AirlockError } from '../core/errors.js';
import { errorHandler, Refusal } from '../http/refusal.js';
import { rawTargetPath, type AppEnv } from '../http/send.js';
import type { HfContext, HfDeps } from './context.js';
import { Inspections } from './inspection.js';
import { HubError, hubRefuse } from './metadata.js';
import { checkFilePath, HfPathError, parseHfPath } from './paths.js';
import { repoInfo, repoPathsInfo, repoRefs, repoTree, whoami } from './repo.js';
import { resolve } from './resolve.js';
import { ModelSignatures } from './signature.js';

export { HubError, TREE_PAGE } from './metadata.js';
export { gitBlobSha1 } from './git-file.js';
export type { HfDeps } from './context.js';

/**
 * The Hugging Face front-end, mounted at /hf (clients use HF_ENDPOINT=http://HOST/hf). Thin:
 * parse the Hub URL, ask policy which commit a revision stands for, answer from the pinned
 * commit's stored metadata, and stream files through the shared verified cache. This is the
 * dispatch; the handlers are module functions taking the deps: info, tree, paths-info, refs and
 * whoami in repo.ts, files in resolve.ts (LFS files) and git-file.ts (ordinary git files), the
 * pinning and refusals they share in context.ts (the metadata answers and the error contract are
 * in metadata.ts, inspection in inspection.ts).
 */
export function createHfApp(d: HfDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const ctx: HfContext = { ...d, inspections: new Inspections(d.meta), signatures: new ModelSignatures(d, d.trust) };

  app.all('*', async (c) => {
    const method = c.req.method;
    // An absolute-form request target (`GET http://host/hf/...`, as proxies send): its path alone.
    const rawPath = rawTargetPath(c.env?.incoming?.url ?? new URL(c.req.url).pathname);
    if (rawPath.length > 4096) throw new HubError(414, undefined, 'request path too long');
    if (/(^|\/)\.\.?(\/|$)/.test(rawPath) || /%2e%2e/i.test(rawPath)) throw new HubError(400, undefined, '"." and ".." path segments are not allowed');
    const rest = rawPath.replace(/^\/hf\/?/, '');
    const policy = d.live.policy.hf;
    const route = parseHfPath(rest, (t, r) => policy.knows(t, r));
    switch (route.kind) {
      case 'unsupported':
        throw new HubError(404, undefined, `${route.what}: not served by this read-only mirror (models and datasets: info, tree, paths-info, refs, resolve)`);
      case 'whoami':
        return whoami(c);
      case 'xet':
        // Clients that ask for a Xet token fall back to plain HTTP downloads through the mirror.
        throw new HubError(404, undefined, 'Xet storage is not offered by this mirror; files are served over HTTP');
      case 'info':
        if (method !== 'GET' && method !== 'HEAD') break;
        return repoInfo(d, c, route.type, route.repo, route.revision);
      case 'tree':
        if (method !== 'GET' && method !== 'HEAD') break;
        return repoTree(d, c, route.type, route.repo, route.revision, route.path);
      case 'paths-info':
        if (method !== 'POST') break;
        return repoPathsInfo(d, c, route.type, route.repo, route.revision);
      case 'refs':
        if (method !== 'GET' && method !== 'HEAD') break;
        return repoRefs(policy, c, route.type, route.repo);
      case 'resolve':
        if (method !== 'GET' && method !== 'HEAD') break;
        return resolve(ctx, c, route.type, route.repo, route.revision, checkFilePath(route.path), route.raw);
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
