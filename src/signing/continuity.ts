import { normalizeName } from '../names/pypi.js';
import type { SignerRecord, SignerStore } from '../storage/meta-store.js';
import type { SignatureResult } from './verify.js';

/**
 * Continuity (issue 26, item 6): a later version, commit or digest of a project verified under
 * another signer than the one its earlier versions were verified under, or unsigned where they
 * were signed, is the signal of a hijacked account (a stolen PyPI token, a re-pushed image). The
 * signer a project was first verified under is recorded in the metadata store (SignerStore), per
 * (ecosystem, project); `continuityDecision` is the pure decision, `checkContinuity` what a
 * front-end calls after verifying (it reads and records the signer). Accepting a new signer after
 * review: `airlock trust accept ECOSYSTEM PROJECT` (forget, or --identity to set it).
 */

export type OnChange = 'refuse' | 'warn';

/** How a project is keyed in the SignerStore: a PyPI name normalised (PEP 503), an OCI repository or Hub repo id as given. */
export function continuityProject(ecosystem: string, project: string): string {
  return ecosystem === 'pypi' ? normalizeName(project) : project;
}

/**
 * What is compared between versions: the publisher (kind, repository, workflow) when the
 * certificate names one, else the identity without what changes per release (a keyless subject's
 * "@refs/tags/v1.2"). Null when the result did not verify.
 */
export function continuityIdentity(r: SignatureResult | null | undefined): string | null {
  if (!r?.ok) return null;
  if (r.publisher) return `${r.publisher.kind}:${r.publisher.repository.toLowerCase()} ${r.publisher.workflow}`;
  if (!r.identity) return null;
  return r.identity.replace(/@refs\/\S*$/, '');
}

export interface ContinuityInput {
  ecosystem: 'pypi' | 'oci' | 'hf';
  /** The project: a PyPI project name, an OCI repository, a Hub repo id. */
  project: string;
  /** What is being served: a version, commit or digest. */
  version: string;
  /** The allow rule's id (e.g. "pypi.allow[3]"), named in the reason. */
  rule: string;
  /** The rule's on_change (SignatureRequirement.onChange). */
  onChange: OnChange;
  /** The verification of what is being served; null or !ok when it has no (valid) signature. */
  result: SignatureResult | null;
  /**
   * Set when what is served carries a signature that does not verify (checked for continuity under
   * a rule that requires nothing): the verifier's reason. Refused as bad_signature, not as unsigned.
   */
  failure?: string;
}

export type ContinuityDecision =
  /** Nothing changed. `record`: the first verified signer of the project, to be recorded. */
  | { action: 'pass'; record?: { identity: string; version: string } }
  /** The signer changed (bad_signature) or the signature disappeared (unsigned): refuse, or serve with `reason` on the row. */
  | { action: 'refuse' | 'warn'; code: 'bad_signature' | 'unsigned'; reason: string; earlier: string; now: string | null };

/** The pure decision, given what is recorded for the project (null: nothing yet). */
export function continuityDecision(input: ContinuityInput, earlier: Pick<SignerRecord, 'identity' | 'version'> | null): ContinuityDecision {
  const now = continuityIdentity(input.result);
  if (!earlier) return now ? { action: 'pass', record: { identity: now, version: input.version } } : { action: 'pass' };
  if (now === earlier.identity) return { action: 'pass' };
  const what = `${input.project} ${input.version}`;
  const before = `earlier versions${earlier.version ? ` (first ${earlier.version})` : ''} were signed by ${earlier.identity}`;
  const found = now
    ? `is signed by ${now}, but ${before}`
    : input.failure
      ? `carries no signature that verifies (${input.failure}), but ${before}`
      : `is not signed, but ${before}`;
  const accept =
    `if the change is legitimate after review, accept it: airlock trust accept ${input.ecosystem} ${input.project}` +
    (now ? ` --identity '${now}'` : '') +
    " (and narrow the rule's signers to the new identity)";
  const verdict = input.onChange === 'warn' ? 'served with a warning (on_change: warn)' : 'refused (on_change: refuse)';
  return {
    action: input.onChange,
    code: now || input.failure ? 'bad_signature' : 'unsigned',
    reason: `signer changed: ${what} ${found}; ${verdict} under ${input.rule}; ${accept}`,
    earlier: earlier.identity,
    now,
  };
}

/**
 * What a front-end calls after verifying an artefact under a rule with a signature requirement:
 * reads the project's recorded signer (kept in memory for `ttlMs`, so a warm request pays a map
 * lookup, and an acceptance on another replica or the CLI is seen within it), records the first
 * verified one, and returns the decision. On `refuse`, throw a Refusal with `code` and `reason`;
 * on `warn`, serve and put `reason` on the served row.
 */
export class Continuity {
  private readonly known = new Map<string, { rec: Pick<SignerRecord, 'identity' | 'version'> | null; at: number }>();
  /** Bumped by forget(): a store read begun before it (its answer may predate the acceptance) is not kept after it. */
  private generation = 0;

  constructor(
    private readonly store: SignerStore,
    private readonly ttlMs = 10_000,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * The project's recorded signer, or null: one indexed lookup, then kept `ttlMs` (a project with
   * none on record pays a map lookup). Under a rule that requires nothing, the front-ends check
   * continuity only when this is not null.
   */
  async recorded(ecosystem: ContinuityInput['ecosystem'], project: string): Promise<Pick<SignerRecord, 'identity' | 'version'> | null> {
    project = continuityProject(ecosystem, project);
    const key = `${ecosystem}\0${project}`;
    const t = this.clock();
    let hit = this.known.get(key);
    if (!hit || t - hit.at >= this.ttlMs) {
      const gen = this.generation;
      hit = { rec: await this.store.getSigner(ecosystem, project), at: t };
      if (gen !== this.generation) return hit.rec;
      if (this.known.size >= 10_000) this.known.clear();
      this.known.set(key, hit);
    }
    return hit.rec;
  }

  /** Forget what is kept in memory (SIGHUP, after `airlock trust accept`): the next look asks the store. */
  forget(): void {
    this.generation++;
    this.known.clear();
  }

  /** What `recorded` would answer from memory now, or undefined when it would ask the store (the OCI fast path). */
  cached(ecosystem: ContinuityInput['ecosystem'], project: string): Pick<SignerRecord, 'identity' | 'version'> | null | undefined {
    const hit = this.known.get(`${ecosystem}\0${continuityProject(ecosystem, project)}`);
    return hit && this.clock() - hit.at < this.ttlMs ? hit.rec : undefined;
  }

  async check(input: ContinuityInput): Promise<ContinuityDecision> {
    input = { ...input, project: continuityProject(input.ecosystem, input.project) };
    const key = `${input.ecosystem}\0${input.project}`;
    const t = this.clock();
    const d = continuityDecision(input, await this.recorded(input.ecosystem, input.project));
    if (d.action === 'pass' && d.record) {
      // The first wins, also between replicas: what the store holds now is compared again.
      const gen = this.generation;
      const rec = await this.store.recordSigner(input.ecosystem, input.project, d.record);
      if (gen === this.generation) this.known.set(key, { rec, at: t });
      return continuityDecision(input, rec);
    }
    return d;
  }
}

/**
 * Why a project with a signer on record cannot be checked for continuity now (no usable trusted
 * root, or an expired one), or null: the front-ends then refuse, whatever on_change says (fail closed).
 */
export function unusableRoot(root: { version: string; usableAt(ms: number): boolean } | null, project: string, earlier: string): string | null {
  const why = !root
    ? 'no usable Sigstore trusted root (see airlock trust import)'
    : root.usableAt(Date.now())
      ? null
      : `the trusted root ${root.version} has expired (import a current one: airlock trust import FILE)`;
  return why && `${project} has a signer on record (${earlier}), and its signature cannot be checked: ${why}`;
}

/** One function for the front-ends: `checkContinuity(ctx.continuity, {...})` (see Continuity.check). */
export function checkContinuity(c: Continuity, input: ContinuityInput): Promise<ContinuityDecision> {
  return c.check(input);
}
