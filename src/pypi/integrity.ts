import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import { Refusal, type RefusalRow } from '../http/refusal.js';
import { sendBytes, type AppEnv } from '../http/send.js';
import { isValidFilename, isValidProjectName, normalizeName } from '../names/pypi.js';
import { admitFile } from './admit.js';
import { loadPage, reasonPhrase, refuse, type PypiDeps } from './context.js';
import { INTEGRITY_MEDIA_TYPE } from './provenance.js';

/**
 * GET/HEAD /integrity/<project>/<version>/<filename>/provenance: the PEP 740 provenance Airlock
 * verified for a file, its bytes as fetched, so that clients can verify again downstream. Only
 * files whose rule requires attested have one here (Airlock verifies nothing for the others); it
 * is verified on the way (the same check as the file's download, cached), and refused as the
 * download would be.
 */
export async function projectProvenance(d: PypiDeps, c: Context<AppEnv, '/integrity/:name/:version/:filename/provenance'>): Promise<Response> {
  const name = c.req.param('name');
  const version = c.req.param('version');
  const filename = c.req.param('filename');
  if (!isValidProjectName(name) || normalizeName(name) !== name) throw new AirlockError('BAD_REQUEST', 'invalid project name in provenance URL');
  if (!isValidFilename(filename) || filename.endsWith('.metadata')) throw new AirlockError('BAD_REQUEST', 'invalid filename in provenance URL');
  const row: RefusalRow = { name, filename: `${filename}.provenance`, version };
  const policy = d.live.policy;
  const pd = policy.pypi.decideProject(name);
  if (!pd.allow) throw new Refusal({ status: 403, code: pd.code, rule: pd.rule, reason: pd.reason, row });
  const page = await loadPage(d, pd.source, pd.rule, row);
  const file = page.project.files.find((f) => f.filename === filename);
  const fd = file ? admitFile(policy, name, file, pd.source, Date.now()) : null;
  if (!fd || (!fd.allow && fd.status === 404) || fd.version !== version)
    return refuse(c, 404, `${filename} is not a file of ${name} ${version} on the ${pd.source} index`);
  if (!fd.allow) throw new Refusal({ status: 403, code: fd.code, rule: fd.rule, reason: fd.reason, row: { ...row, sha256: fd.sha256 } });
  const req = policy.pypi.requirement(fd.rule);
  if (req?.require !== 'attested')
    return refuse(c, 404, `${filename}: Airlock serves provenance only for files whose rule requires attested (policy rule ${fd.rule} does not)`);
  const v = await d.provenance.check({ project: name, version, filename, sha256: fd.sha256, source: pd.source }, req, row);
  const headers = { 'content-type': INTEGRITY_MEDIA_TYPE, 'cache-control': 'no-cache', 'x-airlock-signer': reasonPhrase(v.result.identity ?? '') };
  return sendBytes(c, 200, headers, v.bytes);
}
