import { createHash } from 'node:crypto';
import { AirlockError } from '../core/errors.js';
import { SingleFlight } from '../core/flight.js';
import { Refusal } from '../http/refusal.js';
import { displayRepo } from '../names/hf.js';
import type { SignatureRequirement } from '../policy/signing.js';
import { SignatureCache } from '../signing/cache.js';
import { signatureField } from '../signing/record.js';
import { MAX_MODEL_SIG_BYTES, verifyModelSignature, type ModelSignatureResult } from '../signing/model-sig.js';
import type { TrustRoots } from '../signing/trust.js';
import { readBoundedBytes } from '../upstream/http.js';
import type { HfDeps } from './context.js';
import { verifiedGitFile } from './git-file.js';
import type { HfEntry, HfSnapshot } from './hub.js';
import { HubError } from './metadata.js';

/** Ordinary git files fetched at once while a snapshot's digests are gathered. */
const PARALLEL = 4;

/** What a file request needs to know about its snapshot's signature: the verdict, or that none is required. */
export type SnapshotSignature = { required: false } | { required: true; result: ModelSignatureResult; unsigned: boolean };

/**
 * The model signature gate of the Hub front-end (issue 26, item 5): for a pinned commit whose rule
 * says `require: signed`, the rule's signature file (model.sig) is verified by src/signing against
 * the SHA-256 of every file of the commit before any file of it is served. LFS files' SHA-256s are
 * the Hub's own (what Airlock verifies their bodies against); an ordinary git file's is computed
 * once from its bytes, fetched and verified by git blob id through the same path a GET of it takes
 * (so it is cached, and the client's own GET of it is then a hit). The verdict is kept by (commit,
 * signature's digest, trust version, rule): a warm request pays a map lookup.
 */
export class ModelSignatures {
  private readonly verdicts = new SignatureCache<ModelSignatureResult>(2_000);
  private readonly flights = new SingleFlight<string, ModelSignatureResult>();

  constructor(
    private readonly d: HfDeps,
    private readonly trust: TrustRoots | undefined,
  ) {}

  /**
   * The snapshot's signature under `rule` (the allow rule's id), or under `override` (continuity's
   * requirement, for a rule that requires none). Throws an AirlockError when the Hub fails while its
   * files are gathered.
   */
  async check(snap: HfSnapshot, rule: string, override?: SignatureRequirement): Promise<SnapshotSignature> {
    const req = override ?? this.d.live.policy.hf.requirement(rule);
    if (!req || req.require === 'none') return { required: false };
    const sig = snap.byPath.get(req.signature);
    const name = `${displayRepo(snap.type, snap.repo)}@${snap.commit}`;
    if (!sig || sig.type !== 'file') {
      const signers = req.signers.map((s) => s.name).join(', ');
      const reason = `${name} has no ${req.signature}, and ${req.rule} requires it signed (require: signed, signers: ${signers})`;
      return { required: true, unsigned: true, result: { ok: false, reason } };
    }
    const subject = `${snap.type}:${snap.repo}@${snap.commit}`;
    const bundle = sig.lfs ? `sha256:${sig.lfs.oid}` : `git:${sig.oid}`;
    const trustVersion = this.trust?.version ?? 'none';
    const hit = this.verdicts.get(subject, bundle, trustVersion, req.cacheKey);
    if (hit) return { required: true, unsigned: false, result: hit };
    const key = SignatureCache.key(subject, bundle, trustVersion, req.cacheKey);
    const result = await this.flights.run(key, async () => {
      const r = await this.verify(snap, sig, req);
      this.verdicts.set(subject, bundle, trustVersion, req.cacheKey, r);
      return r;
    });
    return { required: true, unsigned: false, result };
  }

  private async verify(snap: HfSnapshot, sig: HfEntry, req: SignatureRequirement): Promise<ModelSignatureResult> {
    const name = `${displayRepo(snap.type, snap.repo)}@${snap.commit}`;
    // Fail closed for every signer kind (docs/signing.md, trust material): key and CA modes verify without the root,
    // but no usable root (broken, missing, expired) refuses them too, as OCI and PyPI verifications are refused.
    const root = this.trust?.current() ?? null;
    if (!root || !root.usableAt(Date.now())) {
      const why = !root
        ? 'no usable Sigstore trusted root (see airlock trust import)'
        : `the trusted root ${root.version} has expired (import a current one: airlock trust import FILE)`;
      return { ok: false, reason: `${name}: ${req.rule}: ${why}` };
    }
    const [sigBytes, files] = await Promise.all([this.signatureBytes(snap, sig), this.digests(snap)]);
    const r = verifyModelSignature(sigBytes, files, req.signers, root, { rule: req.rule, signaturePath: req.signature });
    if (r.ok) this.d.log.info({ ecosystem: 'hf', repo: name, identity: r.identity, modelDigest: r.modelDigest, rule: req.rule }, 'model signature verified');
    return r.ok ? r : { ...r, reason: `${name}: ${r.reason}` };
  }

  /** The signature file's bytes, verified (git blob id, or the LFS SHA-256) and cached like any file of the commit. */
  private async signatureBytes(snap: HfSnapshot, e: HfEntry): Promise<Buffer> {
    if (e.size > MAX_MODEL_SIG_BYTES) return Buffer.alloc(MAX_MODEL_SIG_BYTES + 1); // refused by its size, unread
    if (!e.lfs) return (await verifiedGitFile(this.d, snap.type, snap.repo, snap.commit, e)).bytes;
    const cached = await this.d.cache.readSmall(e.lfs.oid, MAX_MODEL_SIG_BYTES);
    if (cached) return cached;
    const res = await this.d.hub.openFile(snap.type, snap.repo, snap.commit, e.path);
    if (res.status !== 200) {
      res.body.resume();
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the Hub answered ${res.status} for ${displayRepo(snap.type, snap.repo)}@${snap.commit}/${e.path}`);
    }
    const bytes = await readBoundedBytes(res.body, MAX_MODEL_SIG_BYTES);
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== e.lfs.oid)
      throw new AirlockError('DIGEST_MISMATCH', `${e.path}: the Hub sent bytes with sha256 ${got}, expected ${e.lfs.oid}; nothing was cached`);
    await this.d.cache.putSmall(bytes);
    return bytes;
  }

  /** Every file of the commit → its SHA-256: LFS files from the Hub's metadata, git files from their verified bytes. */
  private async digests(snap: HfSnapshot): Promise<Map<string, string>> {
    const files = snap.entries.filter((e) => e.type === 'file');
    const out = new Map<string, string>();
    const git = files.filter((e) => !e.lfs);
    for (const e of files) if (e.lfs) out.set(e.path, e.lfs.oid);
    let next = 0;
    const worker = async () => {
      while (next < git.length) {
        const e = git[next++];
        out.set(e.path, (await verifiedGitFile(this.d, snap.type, snap.repo, snap.commit, e)).sha256);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, git.length) }, worker));
    return out;
  }
}

/**
 * The refusal of a file of a snapshot whose signature is missing (unsigned) or fails (bad_signature):
 * on record, in the Hub's format. A GET is answered 403 (clients show the message); a HEAD 404
 * EntryNotFound with the same message, as for a content verdict on record: huggingface_hub shows the
 * message of an EntryNotFound HEAD, and hides any other HEAD error behind "check your connection".
 */
export function signatureRefusal(
  method: string,
  snap: HfSnapshot,
  path: string,
  rule: string,
  sig: Extract<SnapshotSignature, { required: true }>,
  sha256: string | null,
): Refusal {
  const reason = sig.result.reason ?? 'the model signature does not verify';
  const message = `blocked by mirror policy: ${reason}`;
  const answer = method === 'GET' ? new HubError(403, undefined, message, snap.commit) : new HubError(404, 'EntryNotFound', message, snap.commit);
  return new Refusal({
    status: answer.status,
    code: sig.unsigned ? 'unsigned' : 'bad_signature',
    rule,
    reason,
    row: { name: displayRepo(snap.type, snap.repo), version: snap.commit, filename: path, sha256, signature: signatureField(sig.result) },
    answer,
  });
}
