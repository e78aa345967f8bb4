import picomatch from 'picomatch';
import { checkDigest } from '../names/oci.js';
import { refuses, type Advisories, type AdvisoryMatch, type RefuseLevel, checkRefuseLevel } from './advisories.js';
import { PolicyError, type Decision } from './types.js';

/**
 * The gate on images: judge an image's inventory (its OS and Python packages) against imported
 * advisories, per repository, with reviewed exceptions that expire by themselves. Pure: the
 * inventory, the advisories and the time are given.
 */
export interface ImageSettingsInput {
  /** Refuse images carrying a package affected at or above this level (default: advisories.refuse). */
  refuse?: string;
  /** Count only advisories that name a fixed version (an unfixable finding has no upgrade to ask for). */
  fixable_only?: boolean;
  /** An image whose packages cannot all be judged (a database Airlock cannot read, an OS release with no advisories imported): refuse (default) or allow. */
  unjudged?: 'refuse' | 'allow';
}

export interface ImagePolicyInput extends ImageSettingsInput {
  /** Per-repository overrides, by canonical repository or glob (docker.io/nvidia/*); the first match applies. */
  repositories?: (ImageSettingsInput & { repository: string })[];
}

export interface AdvisoryExceptionInput {
  /** The advisory id or one of its aliases (CVE-2024-1234, DEBIAN-CVE-..., GHSA-...). */
  id: string;
  /** Only for this repository (or glob); absent means every repository. */
  repository?: string;
  /** Only for this manifest or index digest. */
  digest?: string;
  reason: string;
  /** Last day the exception applies (YYYY-MM-DD, UTC); after it the advisory counts again. */
  expires: string;
}

/** What the judge reads of an inventory (src/image's Inventory has this shape). */
export interface InventoryView {
  os?: { id: string; versionId?: string; prettyName?: string; ecosystem?: string };
  packages: { type: 'deb' | 'apk' | 'rpm' | 'pypi'; name: string; version: string; source?: string; sourceVersion?: string; location: string }[];
  unreadable: string[];
}

export interface ImageFinding extends AdvisoryMatch {
  package: { type: string; name: string; version: string; source?: string; location: string };
  /** Counts against the image under the repository's settings. */
  refusing: boolean;
  /** The exception that waives it (rule id and reason), when one applies. */
  excepted?: string;
}

export interface ImageVerdict {
  decision: Decision;
  /** Every advisory that affects a package of the image, worst first. */
  findings: ImageFinding[];
  /** What could not be judged, and expired exceptions. */
  notes: string[];
  level: RefuseLevel;
}

interface Settings {
  level: RefuseLevel;
  fixableOnly: boolean;
  unjudged: 'refuse' | 'allow';
  rule: string;
}

interface Exception {
  id: string;
  rule: string;
  repo: ((r: string) => boolean) | null;
  digest: string | null;
  reason: string;
  /** First instant (ms) at which it no longer applies. */
  until: number;
  expires: string;
}

const SEVERITY_RANK = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1 } as const;
const rank = (m: AdvisoryMatch) => (m.malicious ? 5 : m.severity.label ? SEVERITY_RANK[m.severity.label] : 0);

export class ImagePolicy {
  private readonly base: Settings;
  private readonly overrides: { match: (r: string) => boolean; settings: Settings }[] = [];
  private readonly exceptions: Exception[] = [];

  constructor(input: ImagePolicyInput, exceptions: AdvisoryExceptionInput[], defaultLevel: RefuseLevel, path: (string | number)[]) {
    const settings = (i: ImageSettingsInput, p: (string | number)[], inherit: Settings, rule: string): Settings => ({
      level: i.refuse !== undefined ? checkRefuseLevel(i.refuse, [...p, 'refuse']) : inherit.level,
      fixableOnly: i.fixable_only ?? inherit.fixableOnly,
      unjudged: i.unjudged ?? inherit.unjudged,
      rule,
    });
    this.base = settings(input, path, { level: defaultLevel, fixableOnly: false, unjudged: 'refuse', rule: 'advisories.images' }, 'advisories.images');
    (input.repositories ?? []).forEach((r, i) => {
      const p = [...path, 'repositories', i];
      if (!r.repository || typeof r.repository !== 'string')
        throw new PolicyError([...p, 'repository'], 'expected a repository (registry/name) or a glob of them');
      this.overrides.push({ match: picomatch(r.repository), settings: settings(r, p, this.base, `advisories.images.repositories[${i}]`) });
    });
    exceptions.forEach((e, i) => {
      const p = ['advisories', 'exceptions', i];
      if (!e.id) throw new PolicyError([...p, 'id'], 'expected the advisory id or alias the exception is for');
      if (!e.reason?.trim()) throw new PolicyError([...p, 'reason'], 'an exception needs a reason (what was reviewed, and why the image may be used)');
      const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(e.expires ?? ''));
      const until = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + 1) : NaN;
      if (!m || Number.isNaN(until) || new Date(until - 1).toISOString().slice(0, 10) !== e.expires) {
        throw new PolicyError(
          [...p, 'expires'],
          `expected the last day the exception applies as YYYY-MM-DD, got ${JSON.stringify(e.expires)}; exceptions always expire`,
        );
      }
      if (e.digest !== undefined) {
        const c = checkDigest(e.digest);
        if (!c.ok) throw new PolicyError([...p, 'digest'], c.reason);
      }
      this.exceptions.push({
        id: e.id,
        rule: `advisories.exceptions[${i}]`,
        repo: e.repository ? picomatch(e.repository) : null,
        digest: e.digest ?? null,
        reason: e.reason.trim(),
        until,
        expires: e.expires,
      });
    });
  }

  settingsFor(repo: string): Settings {
    return this.overrides.find((o) => o.match(repo))?.settings ?? this.base;
  }

  /** Whether the gate applies to any repository (the server then starts the gate's layer reader ahead of its first image). */
  gatesAny(): boolean {
    return this.base.level !== 'none' || this.overrides.some((o) => o.settings.level !== 'none');
  }

  /** Whether images of this repository are judged at all (the manifest then waits for an inventory). */
  gates(repo: string): boolean {
    return this.settingsFor(repo).level !== 'none';
  }

  private exceptionFor(m: AdvisoryMatch, repo: string, digests: string[], now: number, notes: string[]): Exception | undefined {
    for (const e of this.exceptions) {
      if (e.id !== m.id && !m.aliases.includes(e.id)) continue;
      if (e.repo && !e.repo(repo)) continue;
      if (e.digest && !digests.includes(e.digest)) continue;
      if (now >= e.until) {
        notes.push(`${e.rule} for ${e.id} expired on ${e.expires} and no longer applies`);
        continue;
      }
      return e;
    }
    return undefined;
  }

  /**
   * @param digests the manifest's digest first, then the index it was reached through (exceptions may name either)
   * @param level a level to judge at instead of the repository's (`airlock image check --fail-on`)
   */
  judge(repo: string, digests: string[], inv: InventoryView, advisories: Advisories, now: number, level?: RefuseLevel): ImageVerdict {
    const s = level ? { ...this.settingsFor(repo), level } : this.settingsFor(repo);
    const notes: string[] = [...inv.unreadable];
    const findings: ImageFinding[] = [];
    const osPkgs = inv.packages.filter((p) => p.type !== 'pypi');
    const eco = inv.os?.ecosystem;
    if (osPkgs.length > 0 && !eco) {
      notes.push(
        `${osPkgs.length} ${osPkgs[0].type} packages, but the OS (${inv.os?.prettyName ?? inv.os?.id ?? 'no os-release'}) is not a release Airlock matches advisories for`,
      );
    } else if (osPkgs.length > 0 && eco && advisories.osCoverage(eco) === 0) {
      notes.push(
        `no advisories for ${eco} are imported (airlock advisories import <${eco.split(':')[0]} all.zip>), so its ${osPkgs.length} packages were not checked`,
      );
    }
    const seen = new Set<string>();
    for (const p of inv.packages) {
      const matches = p.type === 'pypi' ? advisories.matchPypi(p.name, p.version) : eco ? advisories.matchOs(eco, p) : [];
      for (const m of matches) {
        const key = `${m.id}\0${p.type}\0${p.name}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const counts = refuses(s.level, m) && (!s.fixableOnly || m.fixed !== undefined || m.malicious);
        const ex = counts ? this.exceptionFor(m, repo, digests, now, notes) : undefined;
        const f: ImageFinding = {
          ...m,
          package: { type: p.type, name: p.name, version: p.version, ...(p.source ? { source: p.source } : {}), location: p.location },
          refusing: counts && !ex,
        };
        if (ex) f.excepted = `${ex.rule}: ${ex.reason} (until ${ex.expires})`;
        findings.push(f);
      }
    }
    findings.sort((a, b) => rank(b) - rank(a) || (b.severity.score ?? 0) - (a.severity.score ?? 0) || a.id.localeCompare(b.id));
    const refusing = findings.filter((f) => f.refusing);
    const what = `${repo}@${digests[0]}`;
    if (refusing.length > 0) {
      const worst = refusing.slice(0, 3).map(describe).join('; ');
      const more = refusing.length > 3 ? `; and ${refusing.length - 3} more` : '';
      return {
        level: s.level,
        findings,
        notes,
        decision: {
          allow: false,
          rule: s.rule,
          code: 'advisory',
          reason: `${what} carries ${refusing.length} package advisor${refusing.length === 1 ? 'y' : 'ies'} at or above ${s.level}${s.fixableOnly ? ' with a fix' : ''} (${s.rule}): ${worst}${more}. Use an image with the fixes, or add a reviewed entry to advisories.exceptions (id, reason, expires)`,
        },
      };
    }
    const unjudged = notes.filter((n) => !/ expired on /.test(n));
    if (s.level !== 'none' && s.unjudged === 'refuse' && unjudged.length > 0) {
      return {
        level: s.level,
        findings,
        notes,
        decision: {
          allow: false,
          rule: s.rule,
          code: 'unjudged',
          reason: `${what} cannot be fully judged: ${unjudged[0]}${unjudged.length > 1 ? ` (and ${unjudged.length - 1} more)` : ''}. To allow such images after review, set unjudged: allow for this repository in advisories.images`,
        },
      };
    }
    return { level: s.level, findings, notes, decision: { allow: true, rule: s.rule } };
  }
}

function describe(f: ImageFinding): string {
  const sev = f.malicious
    ? 'MALICIOUS'
    : f.severity.label
      ? `${f.severity.label}${f.severity.score !== undefined ? ` ${f.severity.score}` : ''}`
      : 'severity unknown';
  const cve = f.aliases.find((a) => a.startsWith('CVE-'));
  const pkg =
    f.package.source && f.package.source !== f.package.name
      ? `${f.package.source} (${f.package.name} ${f.package.version})`
      : `${f.package.name} ${f.package.version}`;
  return `${f.id}${cve && cve !== f.id ? ` (${cve})` : ''} ${sev} in ${pkg}, ${f.fixed ? `fixed in ${f.fixed}` : 'no fix yet'}`;
}
