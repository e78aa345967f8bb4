import { satisfies, validRange } from '@renovatebot/pep440';
import picomatch from 'picomatch';
import { normalizeName, isValidProjectName } from '../names/pypi.js';
import { ageApplies, compileAge, judgeAge, overrideAge, type AgeInput, type AgeRule } from './age.js';
import { SigningPolicy, type PublisherInput, type SignatureRequirement } from './signing.js';
import { PolicyError, pathString, type Decision } from './types.js';

export interface PypiAllowInput {
  name: string;
  /** PEP 440 specifier set; absent or empty means every version. */
  versions?: string;
  /** Allowed file digests; when present, only these files of matching versions are served. */
  sha256?: string[];
  /** Admit pre-releases that match the specifier (off by default, as in PEP 440). */
  prereleases?: boolean;
  /** Signatures (issue 26): none (default) or attested (PEP 740 provenance from the publisher below). */
  require?: string;
  publisher?: PublisherInput;
  /** Overrides pypi.min_age / pypi.exclude_newer for this rule (issue 27). */
  min_age?: AgeInput['min_age'];
  exclude_newer?: string;
}

export interface PypiDenyInput {
  name: string;
  versions?: string;
  reason?: string;
}

export interface PypiPolicyInput {
  internal?: string[];
  allow?: PypiAllowInput[];
  deny?: PypiDenyInput[];
  /** Minimum age of a release before it is served ("7d"), an absolute cut-off, and what a missing upload time means. */
  min_age?: AgeInput['min_age'];
  exclude_newer?: string;
  on_missing_time?: string;
}

interface AllowRule {
  id: string;
  /** The age settings in force for this rule, or null when it is exempt (an exact pin with hashes, or none set). */
  age: AgeRule | null;
  versions: string;
  sha256: Set<string> | null;
  prereleases: boolean;
  memo: Map<string, boolean>;
}

interface DenyRule {
  id: string;
  versions: string;
  reason: string | undefined;
  memo: Map<string, boolean>;
}

/**
 * PEP 440 matching, memoised per rule: the library parses the specifier and the version on
 * every call (~40 µs here), and a 5,000-file page asks the same rules about the same versions.
 */
const MEMO_LIMIT = 8192;
function matches(rule: { versions: string; memo: Map<string, boolean> }, version: string, prereleases: boolean): boolean {
  if (rule.versions === '') return true;
  let r = rule.memo.get(version);
  if (r === undefined) {
    r = satisfies(version, rule.versions, { prereleases });
    if (rule.memo.size >= MEMO_LIMIT) rule.memo.clear();
    rule.memo.set(version, r);
  }
  return r;
}

/**
 * Specifier validity, memoised while one policy is compiled (policies repeat the same few
 * specifiers many times). The memo belongs to that compilation and goes with it: a module-level
 * one outlived every policy and grew with each reload's new specifiers, never shrinking.
 */
function isValidSpecifier(s: string, memo: Map<string, boolean>): boolean {
  let v = memo.get(s);
  if (v === undefined) {
    v = validRange(s);
    memo.set(s, v);
  }
  return v;
}

export type AgedRefusal = Extract<Decision, { allow: false }> & { until: number | null };

export type ProjectDecision =
  { allow: true; source: 'public' | 'internal'; rule: string } | { allow: false; rule: string; code: 'not_allowlisted' | 'denied'; reason: string };

const GLOB_CHARS = /^[a-z0-9*?-]+$/;

/**
 * The compiled PyPI policy. Rules are indexed by normalised name, so a decision costs the same
 * with 10 or 10,000 entries; internal-name globs are compiled to one matcher.
 */
export class PypiPolicy {
  private readonly allow = new Map<string, AllowRule[]>();
  private readonly deny = new Map<string, DenyRule[]>();
  private readonly internalGlobs: { id: string; glob: string; test: (s: string) => boolean }[] = [];
  private readonly requirements = new Map<string, SignatureRequirement>();
  /** pypi.min_age, exclude_newer, on_missing_time: what a rule without its own settings gets. */
  private readonly eco: AgeRule;

  constructor(input: PypiPolicyInput, base: (string | number)[] = ['pypi'], signing: SigningPolicy = new SigningPolicy({})) {
    const validSpecs = new Map<string, boolean>();
    const eco = compileAge(input, base);
    this.eco = eco;
    (input.internal ?? []).forEach((g, i) => {
      const glob = normalizeName(g.trim());
      if (!GLOB_CHARS.test(glob) || glob.startsWith('-') || glob.endsWith('-')) {
        throw new PolicyError([...base, 'internal', i], `bad glob ${JSON.stringify(g)}: expected a project name with * or ? wildcards, e.g. "acme-*"`);
      }
      this.internalGlobs.push({ id: pathString([...base, 'internal', i]), glob, test: picomatch(glob) });
    });
    (input.allow ?? []).forEach((r, i) => {
      const name = checkName(r.name, [...base, 'allow', i, 'name']);
      const versions = checkSpecifier(r.versions, [...base, 'allow', i, 'versions'], validSpecs);
      const sha256 = r.sha256 ? new Set(r.sha256.map((h, j) => checkSha256(h, [...base, 'allow', i, 'sha256', j]))) : null;
      const id = pathString([...base, 'allow', i]);
      const req = signing.compileRule(r, [...base, 'allow', i], ['none', 'attested'], { publisher: true });
      if (req) this.requirements.set(id, req);
      // Hashes name the exact files a person reviewed: they override the ecosystem's minimum age
      // (a rule's own min_age or exclude_newer still holds, being written for it).
      const own = r.min_age !== undefined || r.exclude_newer !== undefined;
      const age = own || !sha256 ? overrideAge(eco, r, [...base, 'allow', i]) : null;
      push(this.allow, name, { id, versions, sha256, prereleases: r.prereleases ?? false, memo: new Map(), age: age && ageApplies(age) ? age : null });
    });
    (input.deny ?? []).forEach((r, i) => {
      const name = checkName(r.name, [...base, 'deny', i, 'name']);
      const versions = checkSpecifier(r.versions, [...base, 'deny', i, 'versions'], validSpecs);
      push(this.deny, name, { id: pathString([...base, 'deny', i]), versions, reason: r.reason, memo: new Map() });
    });
  }

  /** The signature requirement of an allow rule (by its id, as in a Decision's rule), or null when it requires nothing. */
  requirement(rule: string): SignatureRequirement | null {
    return this.requirements.get(rule) ?? null;
  }

  /** The glob rule id when the name belongs to the internal index. */
  internalRule(name: string): string | null {
    for (const g of this.internalGlobs) if (g.test(name)) return g.id;
    return null;
  }

  /** Whether a project page may be shown at all, and from which index. `name` is normalised. */
  decideProject(name: string): ProjectDecision {
    const wholeDeny = this.deny.get(name)?.find((d) => d.versions === '');
    if (wholeDeny) {
      return {
        allow: false,
        rule: wholeDeny.id,
        code: 'denied',
        reason: `${name} is denied by policy rule ${wholeDeny.id}${wholeDeny.reason ? `: ${wholeDeny.reason}` : ''}`,
      };
    }
    const internal = this.internalRule(name);
    if (internal) return { allow: true, source: 'internal', rule: internal };
    const allows = this.allow.get(name);
    if (allows) return { allow: true, source: 'public', rule: allows[0].id };
    return {
      allow: false,
      rule: 'pypi.allow',
      code: 'not_allowlisted',
      reason: `${name} is not on the PyPI allowlist (ask for it to be added under policy.pypi.allow, or run: airlock pin pypi '${name}' for the newest release, or '${name}==VERSION')`,
    };
  }

  /** Whether one file (name normalised, version from its filename) may be served. */
  decideFile(name: string, version: string, sha256: string | undefined): Decision {
    for (const d of this.deny.get(name) ?? []) {
      if (matches(d, version, true)) {
        return { allow: false, rule: d.id, code: 'denied', reason: `${name} ${version} is denied by policy rule ${d.id}${d.reason ? `: ${d.reason}` : ''}` };
      }
    }
    const allows = this.allow.get(name);
    const internal = this.internalRule(name);
    if (!allows) {
      if (internal) return { allow: true, rule: internal };
      const p = this.decideProject(name);
      return p.allow ? { allow: true, rule: p.rule } : p;
    }
    let hashMiss: AllowRule | undefined;
    for (const a of allows) {
      if (!matches(a, version, a.prereleases)) continue;
      if (a.sha256 && !(sha256 && a.sha256.has(sha256))) {
        hashMiss = a;
        continue;
      }
      return { allow: true, rule: a.id };
    }
    if (hashMiss) {
      return {
        allow: false,
        rule: hashMiss.id,
        code: 'hash_not_pinned',
        reason: `${name} ${version}: file sha256 ${sha256 ?? '(none given)'} is not among the hashes pinned by policy rule ${hashMiss.id}`,
      };
    }
    const ranges = allows.map((a) => `${a.versions || 'any'} (policy rule ${a.id})`).join(' or ');
    return { allow: false, rule: allows[0].id, code: 'version_not_allowed', reason: `${name} ${version} is outside the allowed range ${ranges}` };
  }

  /**
   * The age verdict (issue 27) for a file decideFile allowed, published at `published` (epoch ms,
   * null when the upstream gave none): null when it may be served (old enough, or an allow rule
   * that matches it is exempt: hashes pinned, or no age set; internal names are never aged), else
   * the refusal, with `until` (when it will be old enough, or null) for page caches.
   */
  decideAge(name: string, version: string, sha256: string | undefined, published: number | null, now: number): AgedRefusal | null {
    let first: AgedRefusal | null = null;
    for (const a of this.allow.get(name) ?? []) {
      if (!matches(a, version, a.prereleases) || (a.sha256 && !(sha256 && a.sha256.has(sha256)))) continue;
      if (!a.age) return null;
      const v = judgeAge(a.age, `${name} ${version}`, published, now);
      if (!v) return null;
      const pin = `to take it now, review it and pin it exactly with its hashes (an exact pin overrides the minimum age): airlock pin pypi '${name}==${version}'`;
      first ??= { allow: false, rule: v.rule, code: 'too_new', reason: `${v.reason}; ${pin}`, until: v.until };
    }
    // The internal index is the organisation's own publishing: no cooldown against itself.
    return first && this.internalRule(name) ? null : first;
  }

  /**
   * The ecosystem's age verdict (pypi.min_age, exclude_newer, on_missing_time) for `what`, published
   * at `published`: what a bulk pin reports as cooldown for a release whose hashes nobody reviewed.
   */
  ecosystemAge(what: string, published: number | null, now: number): { rule: string; reason: string } | null {
    return judgeAge(this.eco, what, published, now);
  }

  /** Whether a release published at `published` is old enough by the ecosystem's settings (`airlock pin pypi NAME` picks the newest such release). */
  oldEnough(published: number | null, now: number): boolean {
    return judgeAge(this.eco, '', published, now) === null;
  }

  /** Whether any rule of `name` sets an age (so a page of it may change with time alone). */
  aged(name: string): boolean {
    return (this.allow.get(name) ?? []).some((a) => a.age !== null);
  }

  /** Every allowed name, and the internal globs (look-alike checks compare new names with them). */
  names(): { allowed: string[]; internal: string[] } {
    return { allowed: [...this.allow.keys()], internal: this.internalGlobs.map((g) => g.glob) };
  }

  /** Names a client may ask for, for the root listing (internal globs cannot be listed). */
  listedNames(): string[] {
    return [...this.allow.keys()].filter((n) => !this.deny.get(n)?.some((d) => d.versions === '')).sort();
  }

  get size(): number {
    let n = 0;
    for (const v of this.allow.values()) n += v.length;
    return n;
  }
}

function push<T>(m: Map<string, T[]>, k: string, v: T): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

function checkName(name: string, path: (string | number)[]): string {
  if (typeof name !== 'string' || !isValidProjectName(name)) {
    throw new PolicyError(path, `bad project name ${JSON.stringify(name)}: expected a PEP 508 name (letters, digits, '.', '_', '-')`);
  }
  return normalizeName(name);
}

function checkSpecifier(spec: string | undefined, path: (string | number)[], memo: Map<string, boolean>): string {
  const s = (spec ?? '').trim();
  if (s === '') return '';
  if (!isValidSpecifier(s, memo))
    throw new PolicyError(path, `bad version specifier ${JSON.stringify(spec)}: expected a PEP 440 specifier set such as ">=2.31,<3" or "==2.5.1"`);
  return s;
}

function checkSha256(h: string, path: (string | number)[]): string {
  if (typeof h !== 'string' || !/^[0-9a-fA-F]{64}$/.test(h)) throw new PolicyError(path, `bad sha256 ${JSON.stringify(h)}: expected 64 hex digits`);
  return h.toLowerCase();
}
