import picomatch from 'picomatch';
import { PICKLE_PROFILES } from './pickle-profiles.js';
import { COMMIT, displayRepo, isValidRef, isValidRepoId, type HfRepoType } from '../names/hf.js';
import { compileAge, judgeAge, type AgeInput, type AgeRule } from './age.js';
import { SigningPolicy, type SignatureRequirement, type SignerRef } from './signing.js';
import { PolicyError, type Decision, type RefusalCode } from './types.js';

/** How file contents are judged (organisation-wide in hf.scan, per repository in allow[].scan). */
export interface HfScanInput {
  /** allow-profile: pickles pass when every import is on the profile; deny: no pickle-based file. */
  pickle?: 'allow-profile' | 'deny';
  profile?: 'torch-weights' | 'torch-numpy';
  /** Python files and auto_map / Keras Lambda code: refused unless allowed. */
  remote_code?: 'deny' | 'allow';
  /** Files of no recognised model format (JSON, text, images, ...). */
  opaque?: 'allow' | 'deny';
  /** Only these formats (safetensors, gguf, pickle, torch-zip, json, opaque, ...). */
  formats?: string[];
  /** Files a person reviewed: served whatever the scanner says. */
  sha256?: string[];
}

export interface HfAllowInput {
  /** Repository id as on the Hub: "org/name" or a legacy one-part id ("gpt2"). */
  repo: string;
  type?: HfRepoType;
  /** Approved commits (40 lowercase hex). */
  commits?: string[];
  /** Branch or tag names mapped to a pinned commit; answered as that commit whatever upstream says. */
  refs?: Record<string, string>;
  /** Optional globs of files that may be served (a glob without "/" matches the file name in any folder). */
  files?: string[];
  scan?: HfScanInput;
  /** Signatures (issue 26): none (default) or signed (an OpenSSF model signature, `signature`, by one of signers). */
  require?: string;
  signers?: SignerRef[];
  /** The signature file in the snapshot (model.sig by default). */
  signature?: string;
}

export interface HfDenyInput {
  /** Repository id or a glob of them ("evil-org/*"). */
  repo: string;
  type?: HfRepoType;
  /** Only these files (globs); absent means the whole repository. */
  files?: string[];
  reason?: string;
}

export interface HfPolicyInput {
  /** Minimum age of a commit a branch or tag resolves to at `airlock pin hf` (issue 27; every served commit is a pin). */
  min_age?: AgeInput['min_age'];
  exclude_newer?: string;
  on_missing_time?: string;
  scan?: HfScanInput;
  allow?: HfAllowInput[];
  deny?: HfDenyInput[];
}

interface ScanRule {
  id: string;
  pickle: 'allow-profile' | 'deny';
  profile: Set<string>;
  profileName: string;
  remoteCode: 'deny' | 'allow';
  opaque: 'allow' | 'deny';
  formats: Set<string> | null;
  sha256: Set<string>;
}

/** What a content decision needs from the scanner's report (kept structural: policy stays pure). */
export interface ContentReport {
  format: string;
  pickle: boolean;
  globals: string[];
  /** Pickle opcodes torch's weights-only unpickler does not implement. */
  pickleOps?: string[];
  /** For archives: the member each import was first seen in. */
  where?: Record<string, string>;
  findings: { severity: 'refuse' | 'code' | 'info'; code: string; message: string }[];
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const FORMATS = ['safetensors', 'gguf', 'pickle', 'joblib', 'torch-zip', 'torch-legacy', 'numpy', 'npz', 'keras', 'zip', 'archive', 'json', 'python', 'opaque'];

interface AllowRule {
  scan: ScanRule;
  id: string;
  commits: Set<string>;
  refs: Map<string, string>;
  files: ((p: string) => boolean) | null;
  fileGlobs: string[];
}

interface DenyRule {
  id: string;
  type: HfRepoType;
  match: (repo: string) => boolean;
  files: ((p: string) => boolean) | null;
  reason: string | undefined;
}

/** What the Hub's error contract needs to know about a refusal. */
export type HfRefusal = Decision & { allow: false; hubCode: 'RepoNotFound' | 'RevisionNotFound' | 'EntryNotFound' };

const key = (type: HfRepoType, repo: string) => `${type}:${repo}`;

function globMatcher(globs: string[]): (p: string) => boolean {
  return picomatch(globs, { dot: true, basename: true });
}

/** Pure Hugging Face decisions: which repos, at which commits, which files. */
export class HfPolicy {
  private readonly allow = new Map<string, AllowRule>();
  private readonly deny: DenyRule[] = [];
  private readonly scanDefault: ScanRule;
  private readonly requirements = new Map<string, SignatureRequirement>();
  /** hf.min_age, hf.exclude_newer, hf.on_missing_time: applied where a moving ref becomes a pin (commitAge). */
  private readonly age: AgeRule;

  constructor(input: HfPolicyInput, base: (string | number)[], signing: SigningPolicy = new SigningPolicy({})) {
    this.age = compileAge(input, base);
    this.scanDefault = compileScan(input.scan ?? {}, undefined, [...base, 'scan'], 'hf.scan');
    (input.allow ?? []).forEach((a, i) => {
      const path = [...base, 'allow', i];
      const type = a.type ?? 'model';
      if (!isValidRepoId(a.repo))
        throw new PolicyError([...path, 'repo'], `expected a Hub repository id such as "openai-community/gpt2" or "gpt2", got ${JSON.stringify(a.repo)}`);
      const k = key(type, a.repo);
      if (this.allow.has(k))
        throw new PolicyError([...path, 'repo'], `${displayRepo(type, a.repo)} is already allowed by ${this.allow.get(k)!.id}; merge the two entries`);
      const commits = new Set<string>();
      (a.commits ?? []).forEach((c, j) => {
        if (!COMMIT.test(c))
          throw new PolicyError([...path, 'commits', j], `expected a full commit id (40 lowercase hex characters), got ${JSON.stringify(c)}`);
        commits.add(c);
      });
      const refs = new Map<string, string>();
      for (const [ref, commit] of Object.entries(a.refs ?? {})) {
        if (!isValidRef(ref) || COMMIT.test(ref)) throw new PolicyError([...path, 'refs', ref], `${JSON.stringify(ref)} is not a branch or tag name`);
        if (!COMMIT.test(String(commit))) {
          throw new PolicyError(
            [...path, 'refs', ref],
            `a branch or tag must map to a pinned commit (40 lowercase hex characters), got ${JSON.stringify(commit)}`,
          );
        }
        refs.set(ref, commit);
        commits.add(commit);
      }
      if (commits.size === 0) {
        throw new PolicyError(
          [...path, 'commits'],
          `${displayRepo(type, a.repo)}: expected at least one pinned commit (commits or refs); "airlock pin hf ${displayRepo(type, a.repo)}@main" adds one`,
        );
      }
      let files: AllowRule['files'] = null;
      if (a.files) {
        a.files.forEach((g, j) => {
          if (typeof g !== 'string' || g.length === 0 || g.startsWith('/') || g.includes('..'))
            throw new PolicyError([...path, 'files', j], `expected a relative glob such as "*.safetensors", got ${JSON.stringify(g)}`);
        });
        files = globMatcher(a.files);
      }
      const scan = a.scan ? compileScan(a.scan, this.scanDefault, [...path, 'scan'], `hf.allow[${i}].scan`) : this.scanDefault;
      const req = signing.compileRule(a, path, ['none', 'signed'], { signers: true, signature: true });
      if (req) this.requirements.set(`hf.allow[${i}]`, req);
      this.allow.set(k, { id: `hf.allow[${i}]`, commits, refs, files, fileGlobs: a.files ?? [], scan });
    });
    (input.deny ?? []).forEach((d, i) => {
      const path = [...base, 'deny', i];
      const glob = d.repo.includes('*');
      if (!glob && !isValidRepoId(d.repo))
        throw new PolicyError([...path, 'repo'], `expected a Hub repository id or a glob of them, got ${JSON.stringify(d.repo)}`);
      this.deny.push({
        id: `hf.deny[${i}]`,
        type: d.type ?? 'model',
        match: glob ? picomatch(d.repo) : (r: string) => r === d.repo,
        files: d.files ? globMatcher(d.files) : null,
        reason: d.reason,
      });
    });
  }

  /** The signature requirement of an allow rule (by its id, as in a Decision's rule), or null when it requires nothing. */
  requirement(rule: string): SignatureRequirement | null {
    return this.requirements.get(rule) ?? null;
  }

  get size(): number {
    return this.allow.size;
  }

  /** Every allowed repository as it is named (datasets/ORG/NAME for a dataset). */
  repos(): string[] {
    return [...this.allow.keys()].map((k) => (k.startsWith('dataset:') ? `datasets/${k.slice(8)}` : k.slice(k.indexOf(':') + 1)));
  }

  knows(type: HfRepoType, repo: string): boolean {
    return this.allow.has(key(type, repo));
  }

  private denied(type: HfRepoType, repo: string, file?: string): HfRefusal | null {
    for (const r of this.deny) {
      if (r.type !== type || !r.match(repo)) continue;
      if (r.files && (file === undefined || !r.files(file))) continue;
      const what = r.files ? `${displayRepo(type, repo)}/${file}` : displayRepo(type, repo);
      return {
        allow: false,
        rule: r.id,
        code: 'denied',
        reason: `${what} is denied by policy (${r.id})${r.reason ? `: ${r.reason}` : ''}`,
        hubCode: r.files ? 'EntryNotFound' : 'RepoNotFound',
      };
    }
    return null;
  }

  decideRepo(type: HfRepoType, repo: string): Decision | HfRefusal {
    const d = this.denied(type, repo);
    if (d) return d;
    const a = this.allow.get(key(type, repo));
    if (!a) {
      return {
        allow: false,
        rule: 'hf.allow',
        code: 'not_allowlisted',
        reason: `${displayRepo(type, repo)} is not on the Hugging Face allowlist of this mirror; ask for it to be pinned (airlock pin hf ${displayRepo(type, repo)}@main)`,
        hubCode: 'RepoNotFound',
      };
    }
    return { allow: true, rule: a.id };
  }

  /**
   * Whether a commit a branch or tag resolves to is old enough to pin (issue 27): null when it is,
   * else why not. `date` is the commit's date from the Hub (epoch ms; null when it gave none).
   */
  commitAge(what: string, date: number | null, now: number): { rule: string; reason: string } | null {
    const v = judgeAge(this.age, what, date, now);
    return v && { rule: v.rule, reason: v.reason.replace('the upstream gives no upload time', 'the Hub gives no commit date') };
  }

  /**
   * A revision as clients send it (commit, branch, tag, refs/pr/N, or "HEAD") resolves only to a
   * pinned commit: a branch through the policy's refs, never through what upstream says today.
   */
  resolveRevision(type: HfRepoType, repo: string, revision: string): { decision: Decision | HfRefusal; commit?: string } {
    const r = this.decideRepo(type, repo);
    if (!r.allow) return { decision: r };
    const a = this.allow.get(key(type, repo))!;
    let commit: string | undefined;
    if (COMMIT.test(revision)) commit = a.commits.has(revision) ? revision : undefined;
    else if (revision === 'HEAD') commit = a.refs.get('HEAD') ?? a.refs.get('main');
    else commit = a.refs.get(revision);
    if (!commit) {
      const what = COMMIT.test(revision) ? `commit ${revision}` : `revision ${JSON.stringify(revision)}`;
      return {
        decision: {
          allow: false,
          rule: a.id,
          code: COMMIT.test(revision) ? 'digest_not_pinned' : 'tag_not_pinned',
          reason: `${what} of ${displayRepo(type, repo)} is not pinned in policy (${a.id}); pin it with: airlock pin hf ${displayRepo(type, repo)}@${revision === 'HEAD' ? 'main' : revision}`,
          hubCode: 'RevisionNotFound',
        },
      };
    }
    return { decision: { allow: true, rule: a.id }, commit };
  }

  /** Whether one file of an allowed repository may be served (and listed). */
  decideFile(type: HfRepoType, repo: string, file: string): Decision | HfRefusal {
    const d = this.denied(type, repo, file);
    if (d) return d;
    const a = this.allow.get(key(type, repo));
    if (!a) return this.decideRepo(type, repo);
    if (a.files && !a.files(file)) {
      return {
        allow: false,
        rule: a.id,
        code: 'not_allowlisted',
        reason: `${file} is not among the files allowed for ${displayRepo(type, repo)} (${a.id} allows ${a.fileGlobs.join(', ')})`,
        hubCode: 'EntryNotFound',
      };
    }
    return { allow: true, rule: a.id };
  }

  /**
   * A file a person reviewed (its sha256 under the repo's `scan.sha256` or `hf.scan.sha256`): allowed
   * whatever a scan would say, so it is not inspected at all (hf/resolve.ts asks this first). Null otherwise.
   */
  reviewed(type: HfRepoType, repo: string, sha256: string): Decision | null {
    const s = this.allow.get(key(type, repo))?.scan ?? this.scanDefault;
    if (s.sha256.has(sha256)) return { allow: true, rule: `${s.id}.sha256` };
    if (this.scanDefault.sha256.has(sha256)) return { allow: true, rule: `${this.scanDefault.id}.sha256` };
    return null;
  }

  /**
   * Whether a file's content may be served, from the scanner's report: reviewed sha256 first,
   * then structural problems, formats, pickles against the profile, and code.
   */
  decideContent(type: HfRepoType, repo: string, path: string, sha256: string, report: ContentReport): Decision {
    const s = this.allow.get(key(type, repo))?.scan ?? this.scanDefault;
    const name = `${displayRepo(type, repo)}/${path}`;
    const reviewed = this.reviewed(type, repo, sha256);
    if (reviewed) return reviewed;
    // Every content refusal says how to go on: without the file, or with it after a review.
    const entry = this.allow.get(key(type, repo))?.id;
    const wayOut = entry
      ? `to go on without it, list only the files you need in ${entry}.files; to accept it after review, add its sha256 ${sha256} to ${entry}.scan.sha256`
      : `to accept it after review, add its sha256 ${sha256} to hf.scan.sha256`;
    const refuse = (code: RefusalCode, reason: string): Decision => ({ allow: false, rule: s.id, code, reason: `${name}: ${reason} (${wayOut})` });
    const outside = report.pickle ? report.globals.filter((g) => !s.profile.has(g)) : [];
    const ops = report.pickle ? (report.pickleOps ?? []) : [];
    const imports = [
      outside.length > 0
        ? `pickle imports ${outside.slice(0, 5).join(', ')}${outside.length > 5 ? ` and ${outside.length - 5} more` : ''}${inMembers(outside, report.where)}, outside the ${s.profileName} profile (what torch.load(weights_only=True) accepts)`
        : '',
      ops.length > 0
        ? `pickle uses opcode${ops.length > 1 ? 's' : ''} ${ops.slice(0, 5).join(', ')}, which torch.load(weights_only=True) does not implement (protocol 2 is what torch.save writes)`
        : '',
    ]
      .filter(Boolean)
      .join('; ');
    const bad = report.findings.find((f) => f.severity === 'refuse');
    if (bad) return refuse('content_refused', `${imports ? `${imports}; ` : ''}${bad.message}`);
    if (s.formats && !s.formats.has(report.format))
      return refuse('content_refused', `format ${report.format} is not among ${s.id}.formats (${[...s.formats].join(', ')})`);
    if (report.pickle) {
      if (s.pickle === 'deny') return refuse('content_refused', `a pickle-based file (${report.format}) and ${s.id}.pickle is deny`);
      if (imports) return refuse('content_refused', imports);
    }
    const code = report.findings.find((f) => f.severity === 'code');
    if (code && s.remoteCode === 'deny') return refuse('content_refused', `${code.message}; ${s.id}.remote_code is deny`);
    if (report.format === 'opaque' && s.opaque === 'deny') return refuse('content_refused', `not a recognised model format and ${s.id}.opaque is deny`);
    return { allow: true, rule: s.id };
  }

  /** The pinned refs of a repository (for the refs endpoint). */
  refs(type: HfRepoType, repo: string): [string, string][] {
    return [...(this.allow.get(key(type, repo))?.refs ?? [])].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  }
}

/** " (in member a.pyd, b.pkl)" for imports found inside an archive's members. */
function inMembers(globals: string[], where: Record<string, string> | undefined): string {
  if (!where) return '';
  const members = [...new Set(globals.map((g) => where[g]).filter(Boolean))];
  return members.length > 0 ? ` (in member ${members.slice(0, 3).join(', ')}${members.length > 3 ? ` and ${members.length - 3} more` : ''})` : '';
}

function compileScan(input: HfScanInput, parent: ScanRule | undefined, path: (string | number)[], id: string): ScanRule {
  const profileName = input.profile ?? (parent?.profileName as HfScanInput['profile']) ?? 'torch-weights';
  const profile = PICKLE_PROFILES[profileName];
  if (!profile) throw new PolicyError([...path, 'profile'], `expected torch-weights or torch-numpy, got ${JSON.stringify(input.profile)}`);
  let formats = parent?.formats ?? null;
  if (input.formats) {
    input.formats.forEach((f, i) => {
      if (!FORMATS.includes(f)) throw new PolicyError([...path, 'formats', i], `expected one of ${FORMATS.join(', ')}, got ${JSON.stringify(f)}`);
    });
    formats = new Set(input.formats);
  }
  const sha256 = new Set<string>();
  (input.sha256 ?? []).forEach((h, i) => {
    if (!SHA256_HEX.test(h)) throw new PolicyError([...path, 'sha256', i], `expected 64 lowercase hex characters, got ${JSON.stringify(h)}`);
    sha256.add(h);
  });
  return {
    id,
    pickle: input.pickle ?? parent?.pickle ?? 'allow-profile',
    profile,
    profileName,
    remoteCode: input.remote_code ?? parent?.remoteCode ?? 'deny',
    opaque: input.opaque ?? parent?.opaque ?? 'allow',
    formats,
    sha256,
  };
}
