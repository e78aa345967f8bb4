import { Advisories, checkRefuseLevel, refuses, type AdvisoryMatch, type RefuseLevel } from './advisories.js';
import { HfPolicy, type HfPolicyInput } from './hf.js';
import { ImagePolicy, type AdvisoryExceptionInput, type ImagePolicyInput, type ImageVerdict, type InventoryView } from './images.js';
import { OciPolicy, type OciPolicyInput } from './oci.js';
import { PypiPolicy, type PypiPolicyInput } from './pypi.js';
import { SigningPolicy, type SigningPolicyInput } from './signing.js';

export interface PolicyInput {
  pypi?: PypiPolicyInput;
  oci?: OciPolicyInput;
  hf?: HfPolicyInput;
  /** Named signers and continuity (issue 26); rules refer to signers by name. */
  signing?: SigningPolicyInput;
  /** Refuse pulls of versions affected by imported advisories at or above this level (MAL- records always). */
  advisories?: { refuse?: string; images?: ImagePolicyInput; exceptions?: AdvisoryExceptionInput[] };
}

const NO_ADVISORIES = new Advisories([]);

/** The whole compiled policy. Pure data and decisions: no I/O, no clock, no environment. */
export class Policy {
  readonly pypi: PypiPolicy;
  readonly oci: OciPolicy;
  readonly hf: HfPolicy;
  readonly signing: SigningPolicy;
  readonly advisoryLevel: RefuseLevel;
  /** The gate on images: their inventories against the advisories, per repository, with exceptions. */
  readonly images: ImagePolicy;
  /** Imported advisories (OSV), attached by the server after loading them from the metadata store. */
  advisories: Advisories = NO_ADVISORIES;

  constructor(input: PolicyInput) {
    this.signing = new SigningPolicy(input.signing ?? {}, ['signing']);
    this.pypi = new PypiPolicy(input.pypi ?? {}, ['pypi'], this.signing);
    this.oci = new OciPolicy(input.oci ?? {}, ['oci'], this.signing);
    this.hf = new HfPolicy(input.hf ?? {}, ['hf'], this.signing);
    this.advisoryLevel = checkRefuseLevel(input.advisories?.refuse ?? 'none', ['advisories', 'refuse']);
    this.images = new ImagePolicy(input.advisories?.images ?? {}, input.advisories?.exceptions ?? [], this.advisoryLevel, ['advisories', 'images']);
  }

  /** Judge an image's inventory (digests: the manifest's, then the index's it was reached through). */
  judgeImage(repo: string, digests: string[], inv: InventoryView, now: number): ImageVerdict {
    return this.images.judge(repo, digests, inv, this.advisories, now);
  }

  /** The same rules with these advisories (a new object: pages rendered for the old one are not reused). */
  withAdvisories(a: Advisories): Policy {
    const p = Object.create(Policy.prototype) as Policy;
    Object.assign(p, this);
    p.advisories = a;
    return p;
  }

  /** The advisory that refuses a PyPI release or file, if any, with a reason naming it. */
  pypiAdvisory(name: string, version: string, sha256?: string): { match: AdvisoryMatch; reason: string } | null {
    const hit = this.advisories.matchPypi(name, version, sha256).find((m) => refuses(this.advisoryLevel, m));
    if (!hit) return null;
    const sev = hit.malicious
      ? 'malicious package'
      : hit.severity.label
        ? `severity ${hit.severity.label}${hit.severity.score !== undefined ? ` ${hit.severity.score}` : ''}`
        : 'no severity given';
    const aka = hit.aliases.length ? ` (${hit.aliases.slice(0, 3).join(', ')})` : '';
    return {
      match: hit,
      reason: `${name} ${version} is affected by ${hit.id}${aka}, ${sev}${hit.summary ? `: ${hit.summary.slice(0, 160)}` : ''} (policy advisories.refuse: ${hit.malicious ? 'MAL- records always' : this.advisoryLevel})`,
    };
  }
}

export { PypiPolicy } from './pypi.js';
export { parseInstant, formatAge } from './age.js';
export { OciPolicy, canonicalRepository } from './oci.js';
export { HfPolicy } from './hf.js';
export { SigningPolicy } from './signing.js';
export type { CompiledSigner, PublisherRule, RequireLevel, SignatureRequirement } from './signing.js';
export { Advisories } from './advisories.js';
export type { ImageVerdict, ImageFinding, InventoryView } from './images.js';
export type { Decision, RefusalCode } from './types.js';
export { PolicyError } from './types.js';
