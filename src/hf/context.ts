import type { Context } from 'hono';
import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import type { BlobCache } from '../core/cache.js';
import type { LivePolicy } from '../core/live-policy.js';
import type { Recorder, RecordRow } from '../core/records.js';
import { Refusal } from '../http/refusal.js';
import { clientAddress, type AppEnv } from '../http/send.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import type { HfRefusal } from '../policy/hf.js';
import type { Decision } from '../policy/types.js';
import type { ScanReport } from '../scan/index.js';
import type { AliasStore, ScanStore } from '../storage/meta-store.js';
import type { HfSnapshot, Hub } from './hub.js';
import { contentDecision as decideContent, type Inspections } from './inspection.js';
import { HubError } from './metadata.js';
import type { ModelSignatures } from './signature.js';
import type { TrustRoots } from '../signing/trust.js';
import type { Continuity } from '../signing/continuity.js';

export interface HfDeps {
  /** The policy in force (swapped whole on reload). */
  live: LivePolicy;
  hub: Hub;
  cache: BlobCache;
  meta: AliasStore & ScanStore;
  recorder: Recorder;
  log: Logger;
  maxFileBytes: number;
  /** The Sigstore trusted root in use, for keyless model signatures (key and CA signers need none). */
  trust?: TrustRoots;
  /** Continuity of signers per repo (signing/continuity.ts), shared by the front-ends. */
  continuity: Continuity;
}

/** What the file handlers (resolve.ts, git-file.ts) are given: the deps and the inspections they share. */
export interface HfContext extends HfDeps {
  inspections: Inspections;
  /** The model signature gate (rules with require: signed). */
  signatures: ModelSignatures;
}

/** A file's content verdict under the policy in force. */
export function contentDecision(d: HfDeps, type: HfRepoType, repo: string, path: string, sha256: string, report: ScanReport) {
  return decideContent(d.live.policy.hf, type, repo, path, sha256, report);
}

/** The Hub's answer to a policy refusal: a 404 in the Hub's terms (RepoNotFound, or the refusal's own code). */
export function fromDecision(dec: HfRefusal | (Decision & { allow: false }), commit?: string): HubError {
  const code = 'hubCode' in dec ? dec.hubCode : 'RepoNotFound';
  return new HubError(404, code, `blocked by mirror policy: ${dec.reason}`, code === 'EntryNotFound' ? commit : undefined);
}

/** The pinned commit a revision stands for; a refusal (on record) when the policy has none, or upstream lacks it or fails. */
export async function pinned(
  d: HfDeps,
  type: HfRepoType,
  repo: string,
  revision: string,
  path: string | null = null,
): Promise<{ snap: HfSnapshot; rule: string }> {
  const r = d.live.policy.hf.resolveRevision(type, repo, revision);
  const row = { name: displayRepo(type, repo), version: revision, filename: path };
  if (!r.decision.allow || !r.commit) {
    const dec = r.decision as HfRefusal;
    throw new Refusal({ status: 404, code: dec.code, rule: dec.rule, reason: `blocked by mirror policy: ${dec.reason}`, row, answer: fromDecision(dec) });
  }
  try {
    return { snap: await d.hub.snapshot(type, repo, r.commit), rule: r.decision.rule };
  } catch (e) {
    if (e instanceof AirlockError && e.code === 'NOT_FOUND') {
      const answer = new HubError(404, 'RevisionNotFound', `${displayRepo(type, repo)}@${r.commit} is pinned, but upstream: ${e.message}`);
      throw new Refusal({ status: 404, code: 'upstream_failed', decision: 'error', rule: r.decision.rule, reason: answer.message, row, answer });
    }
    // The Hub failed (down, an unexpected answer): on record as upstream_failed, answered as before.
    if (e instanceof AirlockError && e.code.startsWith('UPSTREAM_')) {
      throw new Refusal({ status: e.status, code: 'upstream_failed', decision: 'error', rule: r.decision.rule, reason: e.message, row, answer: e });
    }
    throw e;
  }
}

export function baseRecord(c: Context<AppEnv>, type: HfRepoType, repo: string, commit: string, path: string): Omit<RecordRow, 'cache' | 'decision'> {
  return {
    ts: Date.now(),
    client: clientAddress(c),
    ecosystem: 'hf',
    name: displayRepo(type, repo),
    version: commit,
    filename: path,
    requestId: c.get('requestId'),
  };
}

/** A content verdict's refusal: on record with the inspection summary, a 403 to the client. */
export function contentRefusal(
  base: Omit<RecordRow, 'cache' | 'decision'>,
  commit: string,
  v: Decision & { allow: false },
  known: { sha256?: string | null; size: number; cache: 'hit' | 'miss' | 'none'; scan: string | null },
): Refusal {
  const reason = `blocked by mirror policy: ${v.reason}`;
  return new Refusal({
    status: 403,
    code: 'content_refused',
    rule: v.rule,
    reason: v.reason,
    row: { name: base.name, version: base.version, filename: base.filename, ...known },
    answer: new HubError(403, undefined, reason, commit),
  });
}
