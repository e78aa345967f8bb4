import { Refusal, type RefusalRow } from '../http/refusal.js';
import { checkContinuity, unusableRoot } from '../signing/continuity.js';
import { signatureField } from '../signing/record.js';
import type { PypiDeps } from './context.js';
import type { AttestedFile } from './provenance.js';

/**
 * Continuity (issue 26, item 6) of a file whose rule does not require `attested`: when its project
 * has a publisher on record, the file's PEP 740 provenance is fetched and verified as under
 * `require: attested` (the same fetch, caches and trusted root), against any publisher, and compared
 * with the recorded one. Unsigned (no provenance), signed by another publisher, or carrying a
 * provenance that does not verify: refused (or served with the reason on its row under on_change:
 * warn), naming `airlock trust accept`. No usable trusted root: refused (fail closed). A project with
 * no signer on record pays a cached lookup and nothing else. Returns what the served row carries.
 */
export async function continuityOfUnrequired(
  d: PypiDeps,
  f: AttestedFile,
  rule: string,
  row: RefusalRow,
): Promise<{ signature: string | null; warning?: string }> {
  const earlier = await d.continuity.recorded('pypi', f.project);
  if (!earlier) return { signature: null };
  const policy = d.live.policy;
  const req = policy.signing.continuityRequirement(rule, policy.pypi.requirement(rule), 'attested');
  const fileRow = { ...row, version: f.version, sha256: f.sha256 };
  const broken = unusableRoot(d.provenance.root(), f.project, earlier.identity);
  if (broken) throw new Refusal({ status: 403, code: 'bad_signature', rule, reason: `${f.filename}: ${broken}`, row: fileRow });
  const got = await d.provenance.lookup(f, req, row, 'a PEP 740 attestation (its project has a publisher on record)');
  const result = got.status === 'found' ? got.result : null;
  const failure = got.status === 'unreadable' ? got.detail : result && !result.ok ? (result.reason ?? 'it does not verify') : undefined;
  const cd = await checkContinuity(d.continuity, { ecosystem: 'pypi', project: f.project, version: f.version, rule, onChange: req.onChange, result, failure });
  const signature = signatureField(result ?? undefined);
  if (cd.action === 'refuse') throw new Refusal({ status: 403, code: cd.code, rule, reason: cd.reason, row: { ...fileRow, signature } });
  if (cd.action === 'warn') return { signature: signatureField(result ?? { ok: false }, { changedFrom: cd.earlier }), warning: cd.reason };
  return { signature: result?.ok ? signature : null };
}
