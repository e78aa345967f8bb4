import { Hono } from 'hono';
import { AirlockError } from '../core/errors.js';
import type { FastAnswer } from '../http/fast.js';
import { errorHandler, Refusal } from '../http/refusal.js';
import type { AppEnv } from '../http/send.js';
import { isValidProjectName, normalizeName } from '../names/pypi.js';
import { refuse, type PypiDeps } from './context.js';
import { projectFile } from './files.js';
import { projectProvenance } from './integrity.js';
import { PYPI } from './frontend.js';
import { fastPages, newPages, projectPage, rootPage } from './pages.js';

export type { PypiDeps } from './context.js';

/**
 * The PyPI front-end, mounted at /pypi: the simple API (PEP 503/691) at /pypi/simple/ and
 * verified file downloads at /pypi/files/<project>/<filename>. Thin: parse, ask policy,
 * fetch through the core, answer in PyPI's format. This is the dispatch; the pages (and the fast
 * path's answer) are in pages.ts, files in files.ts, decisions in admit.ts and filter.ts,
 * rendering in render.ts.
 */
export function createPypiApp(d: PypiDeps): { app: Hono<AppEnv>; fast: FastAnswer } {
  const app = new Hono<AppEnv>();
  const pages = newPages(d);

  app.get('/simple', (c) => c.redirect(`${PYPI.prefix}/simple/`, 301));
  app.get('/simple/', (c) => rootPage(d, c));
  app.get('/simple/:name', (c) => {
    const raw = c.req.param('name');
    if (!isValidProjectName(raw)) throw new AirlockError('BAD_REQUEST', 'invalid project name: expected a PEP 508 name');
    return c.redirect(`${PYPI.prefix}/simple/${normalizeName(raw)}/`, 301);
  });
  app.get('/simple/:name/', (c) => projectPage(pages, c));
  app.get('/files/:name/:filename', (c) => projectFile(d, c));
  app.get('/integrity/:name/:version/:filename/provenance', (c) => projectProvenance(d, c));

  app.onError(
    errorHandler({
      ecosystem: 'pypi',
      recorder: d.recorder,
      log: d.log,
      wire: (err) => (err instanceof Refusal || err instanceof AirlockError ? { status: err.status, code: err.code, message: err.message } : null),
      internal: () => ({ status: 500, message: 'internal error (see the Airlock log)' }),
      render: (c, e) => refuse(c, e.status, e.message),
    }),
  );

  return { app, fast: fastPages(pages) };
}
