import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import type { FillSpec } from '../core/fill.js';
import { Refusal, type RefusalRow } from '../http/refusal.js';
import { clientAddress, sendStream, type AppEnv } from '../http/send.js';
import { serveBlob } from '../http/serve-blob.js';
import { isValidFilename, isValidProjectName, normalizeName } from '../names/pypi.js';
import { signatureField } from '../signing/record.js';
import { checkContinuity } from '../signing/continuity.js';
import { contentLength } from '../upstream/http.js';
import { admitFile } from './admit.js';
import { continuityOfUnrequired } from './continuity.js';
import { loadPage, refuse, type PypiDeps } from './context.js';
import { parseFilename } from './filenames.js';

/**
 * GET/HEAD /files/<project>/<filename>: a file (or its PEP 658 core metadata) of an allowed
 * release, admitted by the same decision that put it on the page, fetched through the verified
 * fill against the hash the index gave.
 */
export async function projectFile(d: PypiDeps, c: Context<AppEnv, '/files/:name/:filename'>): Promise<Response> {
  const name = c.req.param('name');
  const requested = c.req.param('filename');
  if (!isValidProjectName(name) || normalizeName(name) !== name) throw new AirlockError('BAD_REQUEST', 'invalid project name in file URL');
  if (!isValidFilename(requested)) throw new AirlockError('BAD_REQUEST', 'invalid filename in file URL');
  const isMetadata = requested.endsWith('.metadata');
  const filename = isMetadata ? requested.slice(0, -'.metadata'.length) : requested;
  const client = clientAddress(c);
  const requestId = c.get('requestId');
  const isHead = c.req.method === 'HEAD';
  const base = { ts: Date.now(), client, ecosystem: 'pypi' as const, name, filename: requested, requestId };
  // The version the file name gives: what a refusal's approval pins (the file may not be on any page).
  const named = parseFilename(filename, name);
  const row: RefusalRow = { name, filename: requested, version: named?.name === name ? named.version : null };

  const policy = d.live.policy;
  const pd = policy.pypi.decideProject(name);
  if (!pd.allow) throw new Refusal({ status: 403, code: pd.code, rule: pd.rule, reason: pd.reason, row });
  const page = await loadPage(d, pd.source, pd.rule, row);
  const file = page.project.files.find((f) => f.filename === filename);
  if (!file) return refuse(c, 404, `${filename} is not a file of ${name} on the ${pd.source} index`);
  // The same decision that put the file on the page (admit.ts).
  const fd = admitFile(policy, name, file, pd.source, Date.now());
  if (!fd.allow) {
    if (fd.status === 404) return refuse(c, 404, fd.reason);
    throw new Refusal({ status: 403, code: fd.code, rule: fd.rule, reason: fd.reason, row: { ...row, version: fd.version, sha256: fd.sha256 } });
  }
  const parsed = { version: fd.version };
  const sha = fd.sha256;
  // A rule that requires attested: the file's PEP 740 provenance verifies before any byte (GET, HEAD, Range alike).
  // The PEP 658 metadata is not a distribution and is not attested: it is served as before.
  const req = isMetadata ? null : policy.pypi.requirement(fd.rule);
  const attested =
    req?.require === 'attested' ? await d.provenance.check({ project: name, version: fd.version, filename, sha256: sha, source: pd.source }, req, row) : null;
  // Continuity: the project's recorded publisher against this file's (refused, or served with a warning on its row).
  let signature = signatureField(attested?.result);
  let warning: string | undefined;
  if (req && attested) {
    const cd = await checkContinuity(d.continuity, {
      ecosystem: 'pypi',
      project: name,
      version: fd.version,
      rule: req.rule,
      onChange: req.onChange,
      result: attested.result,
    });
    if (cd.action === 'refuse')
      throw new Refusal({ status: 403, code: cd.code, rule: req.rule, reason: cd.reason, row: { ...row, version: fd.version, sha256: sha, signature } });
    if (cd.action === 'warn') [signature, warning] = [signatureField(attested.result, { changedFrom: cd.earlier }), cd.reason];
  } else if (!isMetadata) {
    // A rule without require: when the project's publisher is on record, continuity checks this file's provenance all the same.
    ({ signature, warning } = await continuityOfUnrequired(d, { project: name, version: fd.version, filename, sha256: sha, source: pd.source }, fd.rule, row));
  }
  let expected: string;
  let expectedSize: number | undefined;
  // A file body is a large upstream transfer, shared out fairly per host (src/upstream/host-slots.ts); metadata is small.
  let transfer: { size?: number; client: string } | undefined;
  if (isMetadata) {
    const mdSha = file.coreMetadata && file.coreMetadata !== true ? file.coreMetadata.sha256 : undefined;
    if (!mdSha) return refuse(c, 404, `${filename} has no verifiable core metadata (PEP 658) on the ${pd.source} index`);
    expected = mdSha;
  } else {
    expected = sha;
    expectedSize = file.size;
    transfer = { size: file.size, client };
  }
  const upstreamUrl = new URL(file.url + (isMetadata ? '.metadata' : ''));
  if (!d.index.allowFileUrl(upstreamUrl, pd.source)) {
    const reason = `${filename}: the index points at host ${upstreamUrl.host}, which is not in pypi.file_hosts`;
    throw new Refusal({ status: 502, code: 'file_host', rule: 'pypi.file_hosts', reason, row: { ...row, version: parsed.version, sha256: expected } });
  }

  const headers: Record<string, string> = {
    'content-type': isMetadata ? 'text/plain; charset=utf-8' : 'application/octet-stream',
    'accept-ranges': 'bytes',
    etag: `"${expected}"`,
    'cache-control': 'public, max-age=31536000, immutable',
    'x-airlock-sha256': expected,
  };
  if (isHead) {
    const size = (await d.cache.cachedSize(expected)) ?? expectedSize;
    if (size !== undefined) headers['content-length'] = String(size);
    return sendStream(c, 200, headers, null);
  }

  const spec: FillSpec = {
    sha256: expected,
    size: expectedSize,
    open: async (signal) => {
      const res = await d.http.get(upstreamUrl, { signal, transfer, allowUrl: (u) => d.index.allowFileUrl(u, pd.source) });
      if (res.status !== 200) {
        res.body.resume();
        throw new AirlockError('UPSTREAM_BAD_RESPONSE', `upstream answered ${res.status} for ${filename}`);
      }
      return { body: res.body, size: contentLength(res.headers) };
    },
  };
  return serveBlob(c, d.cache, spec, headers, {
    recorder: d.recorder,
    base: { ...base, version: parsed.version, sha256: expected },
    rule: fd.rule,
    label: filename,
    signature,
    warning,
  });
}
