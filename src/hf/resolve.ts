import type { Context } from 'hono';
import { AirlockError } from '../core/errors.js';
import type { FileBytes } from '../core/fill.js';
import type { RecordRow } from '../core/records.js';
import { Refusal } from '../http/refusal.js';
import { sendBytes, sendStream, type AppEnv } from '../http/send.js';
import { serveBlob } from '../http/serve-blob.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import type { Decision } from '../policy/types.js';
import { scan, type ScanReport } from '../scan/index.js';
import { contentLength } from '../upstream/http.js';
import { baseRecord, contentDecision, contentRefusal, fromDecision, pinned, type HfContext } from './context.js';
import { fetchRefusal, gitBlobSha1, gitFile } from './git-file.js';
import type { HfEntry, HfSnapshot } from './hub.js';
import { reviewedSummary, scanSummary } from './inspection.js';
import { EXPOSE, HubError } from './metadata.js';
import { signatureRefusal, type SnapshotSignature } from './signature.js';
import { signatureField } from '../signing/record.js';
import { checkContinuity, unusableRoot } from '../signing/continuity.js';
import type { SignatureRequirement } from '../policy/signing.js';

const etagOf = (e: HfEntry) => e.lfs?.oid ?? e.oid;

/**
 * GET/HEAD resolve/<revision>/<path> (and raw/): a file of the pinned commit, refused by path or
 * by a verdict already on record, then served as an LFS file (lfsFile) or a git file (git-file.ts).
 */
export async function resolve(
  d: HfContext,
  c: Context<AppEnv>,
  type: HfRepoType,
  repo: string,
  revision: string,
  path: string,
  raw: boolean,
): Promise<Response> {
  const isGet = c.req.method === 'GET';
  const { snap, rule } = await pinned(d, type, repo, revision, path);
  const commit = snap.commit;
  const entry = snap.byPath.get(path);
  if (!entry || entry.type !== 'file') throw new HubError(404, 'EntryNotFound', `${path} does not exist in ${displayRepo(type, repo)}@${commit}`, commit);
  const fd = d.live.policy.hf.decideFile(type, repo, path);
  if (!fd.allow) {
    const row = { name: displayRepo(type, repo), version: commit, filename: path, sha256: entry.lfs?.oid ?? null };
    throw new Refusal({ status: 404, code: fd.code, rule: fd.rule, reason: fd.reason, row, answer: fromDecision(fd, commit) });
  }
  const { signature, warning } = await signatureGate(d, c.req.method, snap, path, rule, entry.lfs?.oid ?? null);
  if (entry.size > d.maxFileBytes) {
    // Refused by the mirror's own limit, not by the policy: on record (too_large), EntryNotFound to the client as before.
    const reason = `${path} is ${entry.size} bytes, over this mirror's hf.max_file_bytes (${d.maxFileBytes}); huggingface_hub cannot download files over 50 GB without Xet, which Airlock does not mirror`;
    const row = { name: displayRepo(type, repo), version: commit, filename: path, sha256: entry.lfs?.oid ?? null, size: entry.size };
    throw new Refusal({ status: 404, code: 'too_large', rule: 'hf.max_file_bytes', reason, row, answer: new HubError(404, 'EntryNotFound', reason, commit) });
  }
  const etag = etagOf(entry);
  const headers: Record<string, string> = {
    'x-repo-commit': commit,
    etag: `"${etag}"`,
    'x-linked-etag': `"${etag}"`,
    'x-linked-size': String(entry.size),
    'accept-ranges': 'bytes',
    'content-type': 'application/octet-stream',
    'access-control-expose-headers': EXPOSE,
    'cache-control': 'public, max-age=31536000, immutable',
  };
  if (raw && entry.lfs) {
    // /raw/ of an LFS file is its pointer: rebuilt from the tree and checked against the git
    // blob id the commit lists, so it is exactly the object git holds.
    const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${entry.lfs.oid}\nsize ${entry.lfs.size}\n`);
    if (gitBlobSha1(pointer) !== entry.oid)
      throw new HubError(404, 'EntryNotFound', `${path}: the LFS pointer cannot be rebuilt to match git blob ${entry.oid}`, commit);
    return sendBytes(
      c,
      200,
      { 'x-repo-commit': commit, etag: `"${entry.oid}"`, 'content-type': 'text/plain; charset=utf-8', 'access-control-expose-headers': EXPOSE },
      pointer,
    );
  }
  const knownSha = entry.lfs?.oid ?? (await d.meta.getAlias('git-blob', entry.oid)) ?? undefined;
  // A file a person reviewed (scan.sha256) is allowed by its sha256 before any report is read or made.
  const reviewed = knownSha ? d.live.policy.hf.reviewed(type, repo, knownSha) : null;
  let known = knownSha && !reviewed ? await d.inspections.stored(knownSha) : null;
  let knownDecision = reviewed ?? (known && knownSha ? contentDecision(d, type, repo, path, knownSha, known) : null);
  // A partial report (an early refusal) never approves: under a policy that would allow it, the file is judged whole again.
  if (known?.partial && knownDecision?.allow) known = knownDecision = null;
  // A verified model signature is kept on the file's row (the signer, the bundle's digest, the trust version);
  // a continuity warning (on_change: warn) is the served row's reason (every refusal row sets its own).
  const base = { ...baseRecord(c, type, repo, commit, path), ...(signature ? { signature } : {}), ...(warning ? { reason: warning } : {}) };
  if (knownDecision && !knownDecision.allow) {
    const refusal = contentRefusal(base, commit, knownDecision, { sha256: knownSha, size: entry.size, cache: 'none', scan: scanSummary(known, knownDecision) });
    // A verdict already on record answers HEAD too, and is on record like the GET's: EntryNotFound
    // lets transformers move on to the next candidate file (huggingface_hub sends no GET after it).
    if (!isGet) {
      const answer = new HubError(404, 'EntryNotFound', `blocked by mirror policy: ${knownDecision.reason}`, commit);
      throw new Refusal({ status: 404, code: refusal.code, rule: refusal.rule, reason: refusal.message, row: refusal.row, answer });
    }
    throw refusal;
  }
  if (!isGet) {
    // The stored copy's size is checked (as PyPI's and OCI's HEAD do): a file cut short on disk is quarantined now.
    if (knownSha) await d.cache.cachedSize(knownSha);
    headers['content-length'] = String(entry.size);
    return sendStream(c, 200, headers, null);
  }
  if (entry.lfs) return lfsFile(d, c, type, repo, path, commit, entry, entry.lfs, headers, base, rule, known, knownDecision);
  return gitFile(d, c, type, repo, path, commit, entry, headers, base, rule);
}

/**
 * A file of a snapshot whose rule requires a model signature is served only once the signature
 * verifies (HEAD and /raw/ too): refused `unsigned` or `bad_signature`, on record, otherwise. The
 * Hub failing while the commit's files are gathered refuses as that file's fetch would have.
 * Then continuity (signing/continuity.ts): the repo's recorded signer against this commit's, refused
 * or warned per the rule's on_change. Under a rule that requires no signature, a repo with a signer
 * on record has its commit's signature verified all the same (any keyless signer, the policy's keys
 * and CAs; no usable trusted root refuses) and compared: unsigned, signed by another identity or by
 * none that verifies is refused or warned. Returns the row's `signature` field when one was verified,
 * and the warning to put on the served row.
 */
async function signatureGate(
  d: HfContext,
  method: string,
  snap: HfSnapshot,
  path: string,
  rule: string,
  sha256: string | null,
): Promise<{ signature: string | null; warning?: string }> {
  const name = displayRepo(snap.type, snap.repo);
  const refuse = (code: 'unsigned' | 'bad_signature', reason: string, signature: string | null): never => {
    const message = `blocked by mirror policy: ${reason}`;
    const answer = method === 'GET' ? new HubError(403, undefined, message, snap.commit) : new HubError(404, 'EntryNotFound', message, snap.commit);
    throw new Refusal({ status: answer.status, code, rule, reason, row: { name, version: snap.commit, filename: path, sha256, signature }, answer });
  };
  const own = d.live.policy.hf.requirement(rule);
  let continuityOnly: SignatureRequirement | undefined;
  if (!own || own.require === 'none') {
    const earlier = await d.continuity.recorded('hf', name);
    if (!earlier) return { signature: null };
    const broken = unusableRoot(d.trust?.current() ?? null, name, earlier.identity);
    if (broken) refuse('bad_signature', broken, null);
    continuityOnly = d.live.policy.signing.continuityRequirement(rule, own, 'signed');
  }
  let sig: SnapshotSignature;
  try {
    sig = await d.signatures.check(snap, rule, continuityOnly);
  } catch (e) {
    if (e instanceof AirlockError) {
      const wrapped = new AirlockError(e.code, `cannot check the model signature of ${name}@${snap.commit}: ${e.message}`, { status: e.status });
      throw fetchRefusal(wrapped, rule, { name, version: snap.commit, filename: path });
    }
    throw e;
  }
  if (!sig.required) return { signature: null };
  if (!continuityOnly && !sig.result.ok) throw signatureRefusal(method, snap, path, rule, sig, sha256);
  const req = continuityOnly ?? own!;
  const result = sig.result.ok ? sig.result : null;
  const cd = await checkContinuity(d.continuity, {
    ecosystem: 'hf',
    project: name,
    version: snap.commit,
    rule: req.rule,
    onChange: req.onChange,
    result,
    failure: !sig.result.ok && !sig.unsigned ? (sig.result.reason ?? 'it does not verify') : undefined,
  });
  if (cd.action === 'refuse') refuse(cd.code, cd.reason, signatureField(sig.unsigned ? null : sig.result));
  if (cd.action === 'warn') return { signature: signatureField(result ?? (sig.unsigned ? null : sig.result), { changedFrom: cd.earlier }), warning: cd.reason };
  return { signature: signatureField(sig.result) };
}

/**
 * An LFS file: through the verified fill, inspected as it arrives (see the comments inside);
 * a file cached before this scanner version is judged again before it is served. Longer than
 * most: the inspector's hooks (judge, verified, refusedVerified) and the pull record share the
 * report and verdict of this one fill, so they are written together.
 */
async function lfsFile(
  d: HfContext,
  c: Context<AppEnv>,
  type: HfRepoType,
  repo: string,
  path: string,
  commit: string,
  entry: HfEntry,
  lfs: NonNullable<HfEntry['lfs']>,
  headers: Record<string, string>,
  base: Omit<RecordRow, 'cache' | 'decision'>,
  rule: string,
  known: ScanReport | null,
  knownDecision: Decision | null,
): Promise<Response> {
  let report: ScanReport | null = known;
  /** The report this fill's own scan produced (kept once the digest has matched). */
  let fresh: ScanReport | null = null;
  let verdict: Decision | null = knownDecision;
  // Reviewed (scan.sha256): served by its sha256, never walked, cached or filled alike; the fill still checks the digest.
  const reviewed = d.live.policy.hf.reviewed(type, repo, lfs.oid);
  if (reviewed) verdict = reviewed;
  if (!reviewed && !report && (await d.cache.cachedSize(lfs.oid)) !== undefined) {
    // Cached before this scanner version: judge the stored file again before serving it.
    // Its bytes are checked as they are read (cache.fileBytes): a copy that no longer matches its
    // digest is quarantined, leaves no report, and is fetched and judged again below.
    const file = await d.cache.fileBytes(lfs.oid);
    if (file) report = await d.inspections.inspect(lfs.oid, file).catch((e: AirlockError) => (e.code === 'DIGEST_MISMATCH' ? null : Promise.reject(e)));
    if (report) {
      verdict = contentDecision(d, type, repo, path, lfs.oid, report);
      if (!verdict.allow) throw contentRefusal(base, commit, verdict, { sha256: lfs.oid, size: entry.size, cache: 'hit', scan: scanSummary(report, verdict) });
    }
  }
  const inspect = {
    // Judged as it downloads: what could run code first (a refusal then answers 403 before
    // any byte), the rest as it streams (a refusal then cuts the transfer before its end).
    // A report is kept only once the digest has matched: bytes that fail it must not leave
    // a verdict behind for the file they pretended to be. A refusal cuts the clients at
    // once; the download goes on to its digest, and then the refusal is kept.
    judge: async (file: FileBytes, release: () => void) => {
      const refuseOn = (r: ScanReport) => {
        verdict = contentDecision(d, type, repo, path, lfs.oid, r);
        if (!verdict.allow) throw new AirlockError('CONTENT_REFUSED', `blocked by mirror policy: ${verdict.reason}`);
      };
      const stored = await d.inspections.stored(lfs.oid);
      if (stored && !stored.partial) report = stored;
      else {
        report = fresh = await scan(file, undefined, {
          cleared: (partial) => {
            report = fresh = { ...partial, partial: true }; // what is kept if this refuses
            refuseOn(partial);
            release();
          },
        });
      }
      refuseOn(report);
      release();
    },
    // Only a report this fill scanned is written (a stored one is already on record).
    verified: async () => {
      if (fresh && !fresh.partial) await d.inspections.keep(lfs.oid, fresh);
    },
    refusedVerified: async () => {
      if (fresh) await d.inspections.keep(lfs.oid, fresh);
    },
  };
  const spec = {
    sha256: lfs.oid,
    size: lfs.size,
    ...(reviewed ? {} : { inspect }),
    open: async (signal: AbortSignal) => {
      const res = await d.hub.openFile(type, repo, commit, path, signal, { size: entry.size, client: base.client });
      if (res.status !== 200) {
        res.body.resume();
        throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub answered ${res.status} for ${displayRepo(type, repo)}@${commit}/${path}`);
      }
      return { body: res.body, size: contentLength(res.headers) };
    },
  };
  try {
    return await serveBlob(c, d.cache, spec, headers, {
      recorder: d.recorder,
      base: { ...base, sha256: lfs.oid },
      rule,
      label: path,
      declaredSize: entry.size,
      extra: () => ({ scan: reviewed ? reviewedSummary(reviewed) : scanSummary(report, verdict) }),
      refusal: () => {
        const v = verdict as Decision | null;
        return v && !v.allow ? { reason: v.reason, rule: v.rule } : undefined;
      },
    });
  } catch (e) {
    if (e instanceof AirlockError && e.code === 'CONTENT_REFUSED') throw new HubError(403, undefined, e.message, commit);
    throw e;
  }
}
