import picomatch from 'picomatch';
import { checkDigest, isValidHost, isValidName, isValidTag, registryKey } from '../names/oci.js';
import { ageApplies, compileAge, judgeAge, overrideAge, type AgeInput, type AgeRule } from './age.js';
import type { AgedRefusal } from './pypi.js';
import { SigningPolicy, type SignatureRequirement, type SignerRef } from './signing.js';
import { PolicyError, type Decision } from './types.js';

export interface OciAllowInput {
  /** Canonical repository: registry host, then the name (docker.io/library/python). */
  repository: string;
  /** Pinned manifest (or index) digests. */
  digests?: string[];
  /** Tag aliases: each tag is answered with the pinned digest it names, never with upstream's tag. */
  tags?: Record<string, string>;
  /** Signatures (issue 26): none (default), signed (a cosign signature) or attested (an in-toto attestation), by one of signers. */
  require?: string;
  signers?: SignerRef[];
  /** Overrides oci.min_age / oci.exclude_newer for this repository's tags (issue 27). */
  min_age?: AgeInput['min_age'];
  exclude_newer?: string;
}

export interface OciDenyInput {
  /** Canonical repository or a glob of them (docker.io/evilcorp/*). */
  repository: string;
  /** Only these digests (manifests or blobs); absent means the whole repository. */
  digests?: string[];
  reason?: string;
}

export interface OciPolicyInput {
  allow?: OciAllowInput[];
  deny?: OciDenyInput[];
  /**
   * Minimum age of a digest before a tag serves it, counted from when Airlock first saw the digest
   * (the image's own `created` is its author's to choose), and an absolute cut-off (issue 27).
   */
  min_age?: AgeInput['min_age'];
  exclude_newer?: string;
}

interface AllowRule {
  id: string;
  digests: Set<string>;
  tags: Map<string, string>;
  /** The age settings for this repository's tags, or null when none are set. */
  age: AgeRule | null;
}

interface DenyRule {
  id: string;
  match: (repo: string) => boolean;
  digests: Set<string> | null;
  reason: string | undefined;
}

export { registryKey } from '../names/oci.js';

/**
 * The canonical form every OCI rule and record uses: "registry/name", Docker Hub spelled
 * docker.io, and its one-part official images under library/. Returns null when malformed.
 */
export function canonicalRepository(repo: string): string | null {
  const slash = repo.indexOf('/');
  if (slash <= 0) return null;
  const host = registryKey(repo.slice(0, slash).toLowerCase());
  let name = repo.slice(slash + 1);
  if (!isValidHost(host)) return null;
  if (host === 'docker.io' && !name.includes('/')) name = `library/${name}`;
  if (!isValidName(name)) return null;
  return `${host}/${name}`;
}

function digestList(v: string[] | undefined, path: (string | number)[]): Set<string> {
  const out = new Set<string>();
  (v ?? []).forEach((d, i) => {
    const c = checkDigest(d);
    if (!c.ok) throw new PolicyError([...path, i], c.reason);
    out.add(d);
  });
  return out;
}

/** Pure OCI decisions: which manifests a repository may serve, and what a tag stands for. */
export class OciPolicy {
  private readonly allow = new Map<string, AllowRule>();
  private readonly deny: DenyRule[] = [];
  private readonly requirements = new Map<string, SignatureRequirement>();
  /** oci.min_age, oci.exclude_newer: what a repository without an allow rule yet would get (a pin's cooldown). */
  private readonly eco: AgeRule | null;

  constructor(input: OciPolicyInput, base: (string | number)[], signing: SigningPolicy = new SigningPolicy({})) {
    // A first sight is always known (the front-end records it before asking): on_missing_time has nothing to decide.
    const eco = compileAge({ min_age: input.min_age, exclude_newer: input.exclude_newer }, base);
    this.eco = ageApplies(eco) ? eco : null;
    (input.allow ?? []).forEach((a, i) => {
      const path = [...base, 'allow', i];
      const repo = canonicalRepository(a.repository);
      if (!repo) {
        throw new PolicyError(
          [...path, 'repository'],
          `expected a repository as registry/name in lowercase (e.g. docker.io/library/python), got ${JSON.stringify(a.repository)}`,
        );
      }
      if (this.allow.has(repo))
        throw new PolicyError([...path, 'repository'], `${repo} is already allowed by ${this.allow.get(repo)!.id}; merge the two entries`);
      const digests = digestList(a.digests, [...path, 'digests']);
      const tags = new Map<string, string>();
      for (const [tag, digest] of Object.entries(a.tags ?? {})) {
        if (!isValidTag(tag)) throw new PolicyError([...path, 'tags', tag], `${JSON.stringify(tag)} is not a valid tag`);
        const c = checkDigest(String(digest));
        if (!c.ok) throw new PolicyError([...path, 'tags', tag], `a tag must be an alias of a pinned digest: ${c.reason}`);
        tags.set(tag, digest);
        // An alias pins its digest: "3.12-slim: sha256:..." approves sha256:... as well.
        digests.add(digest);
      }
      if (digests.size === 0)
        throw new PolicyError([...path, 'digests'], `${repo}: expected at least one pinned digest (digests or tags); "airlock pin oci ${repo}:TAG" adds one`);
      const req = signing.compileRule(a, path, ['none', 'signed', 'attested'], { signers: true });
      if (req) this.requirements.set(`oci.allow[${i}]`, req);
      const age = overrideAge(eco, a, path);
      this.allow.set(repo, { id: `oci.allow[${i}]`, digests, tags, age: ageApplies(age) ? age : null });
    });
    (input.deny ?? []).forEach((d, i) => {
      const path = [...base, 'deny', i];
      const glob = d.repository.includes('*');
      const repo = glob ? d.repository : canonicalRepository(d.repository);
      if (!repo) throw new PolicyError([...path, 'repository'], `expected a repository (registry/name) or a glob of them, got ${JSON.stringify(d.repository)}`);
      const match = glob ? picomatch(repo, { nocase: false }) : (r: string) => r === repo;
      this.deny.push({ id: `oci.deny[${i}]`, match, digests: d.digests ? digestList(d.digests, [...path, 'digests']) : null, reason: d.reason });
    });
  }

  /** The signature requirement of an allow rule (by its id, as in a Decision's rule), or null when it requires nothing. */
  requirement(rule: string): SignatureRequirement | null {
    return this.requirements.get(rule) ?? null;
  }

  get size(): number {
    return this.allow.size;
  }

  repositories(): string[] {
    return [...this.allow.keys()].sort();
  }

  /** The digests each allowed repository pins (tag aliases included), in policy order. */
  pins(): { repo: string; digests: string[] }[] {
    return [...this.allow].map(([repo, a]) => ({ repo, digests: [...a.digests] }));
  }

  private denied(repo: string, digest?: string): Decision | null {
    for (const r of this.deny) {
      if (!r.match(repo)) continue;
      if (r.digests && (!digest || !r.digests.has(digest))) continue;
      const what = r.digests ? `${repo}@${digest}` : repo;
      return { allow: false, rule: r.id, code: 'denied', reason: `${what} is denied by policy (${r.id})${r.reason ? `: ${r.reason}` : ''}` };
    }
    return null;
  }

  /** May the repository be used at all (tags list, name lookups)? */
  decideRepository(repo: string): Decision {
    const d = this.denied(repo);
    if (d) return d;
    const a = this.allow.get(repo);
    if (!a)
      return {
        allow: false,
        rule: 'oci.allow',
        code: 'not_allowlisted',
        reason: `${repo} is not on the OCI allowlist; ask for it to be pinned (airlock pin oci ${repo}:TAG)`,
      };
    return { allow: true, rule: a.id };
  }

  /** A manifest or index asked for by digest: allowed only when pinned for this repository. */
  decideDigest(repo: string, digest: string): Decision {
    const d = this.denied(repo, digest);
    if (d) return d;
    const a = this.allow.get(repo);
    if (!a) return this.decideRepository(repo);
    if (!a.digests.has(digest)) {
      return {
        allow: false,
        rule: a.id,
        code: 'digest_not_pinned',
        reason: `${repo}@${digest} is not pinned in policy (${a.id} pins ${a.digests.size} digest${a.digests.size === 1 ? '' : 's'})`,
      };
    }
    return { allow: true, rule: a.id };
  }

  /** Content reached through an approved manifest: the parent's decision, unless the child itself is denied. */
  decideReferenced(repo: string, digest: string, parentDecision: Decision): Decision {
    return this.denied(repo, digest) ?? parentDecision;
  }

  /** A tag resolves only through the policy's alias, to the pinned digest. */
  resolveTag(repo: string, tag: string): { decision: Decision; digest?: string } {
    const d = this.denied(repo);
    if (d) return { decision: d };
    const a = this.allow.get(repo);
    if (!a) return { decision: this.decideRepository(repo) };
    const digest = a.tags.get(tag);
    if (!digest) {
      return {
        decision: {
          allow: false,
          rule: a.id,
          code: 'tag_not_pinned',
          reason: `tag ${JSON.stringify(tag)} of ${repo} is not pinned to a digest in policy; pull by digest or pin it (airlock pin oci ${repo}:${tag})`,
        },
      };
    }
    const byDigest = this.decideDigest(repo, digest);
    return byDigest.allow ? { decision: byDigest, digest } : { decision: byDigest };
  }

  /** Whether a tag of `repo` is subject to a minimum age or cut-off (the front-end then looks up the digest's first sight). */
  aged(repo: string): boolean {
    return !!this.allow.get(repo)?.age;
  }

  /**
   * The age verdict (issue 27) for `repo:tag`, which resolveTag resolved to `digest`, first seen by
   * Airlock at `firstSeen` (epoch ms): null when old enough, else the refusal naming its age, the
   * rule and the override. Only tags are aged: a pull by digest names the exact image, a digest pin
   * a person reviewed, and is the override. A repository not allowed yet gets the ecosystem's
   * settings (what `airlock pin oci REPO:TAG` reports as cooldown).
   */
  decideTagAge(repo: string, tag: string, digest: string, firstSeen: number, now: number): AgedRefusal | null {
    const a = this.allow.get(repo);
    const age = a ? a.age : this.eco;
    if (!age) return null;
    const v = judgeAge(age, `${repo}:${tag} (${digest})`, firstSeen, now, 'was first seen by Airlock');
    if (!v) return null;
    const pin = `to take it now, review it and pull it by digest (a digest pin, which a person reviewed, overrides the minimum age): ${repo}@${digest}`;
    return { allow: false, rule: v.rule, code: 'too_new', reason: `${v.reason}; ${pin}`, until: v.until };
  }

  tags(repo: string): string[] {
    return [...(this.allow.get(repo)?.tags.keys() ?? [])].sort();
  }
}
