import { PolicyError, pathString } from './types.js';

/**
 * The signing part of the policy (issue 26), compiled and pure: named signers under
 * policy.signing.signers, and per-rule `require` / `signers` / `publisher` fields of the PyPI, OCI
 * and Hub allow rules. Key and CA files are read by the config loader, which hands their PEM text
 * over in `key` / `ca` (policy/ does no I/O); here the text is only checked for its shape.
 */

/** One signer as written in YAML (named under signing.signers, or inline in a rule's `signers`). */
export interface SignerInput {
  /** Keyless (Fulcio certificate): the OIDC issuer, matched exactly. */
  issuer?: string;
  /** The certificate's SAN (email or URI), matched exactly... */
  subject?: string;
  /** ...or by this regular expression, anchored at both ends. */
  subject_pattern?: string;
  /** Key mode: a PEM public key (inline, or the text of key_file, put here by the config loader). */
  key?: string;
  key_file?: string;
  /** Certificate mode: the PEM CA certificate(s) a signing certificate must chain to (or ca_file). */
  ca?: string;
  ca_file?: string;
}

export interface SigningPolicyInput {
  signers?: Record<string, SignerInput>;
  /** Continuity (a later release signed by another identity): refuse (default) or warn. */
  on_change?: 'refuse' | 'warn';
}

/** What a rule may give: a signer name, or an inline signer. */
export type SignerRef = string | SignerInput;

/** The trusted publisher a PyPI rule requires (PEP 740): exactly one of github / gitlab. */
export interface PublisherInput {
  github?: string;
  gitlab?: string;
  workflow?: string;
  environment?: string;
}

/** The signature fields of an allow rule (PyPI: attested + publisher; OCI: signed/attested + signers; Hub: signed + signers + signature). */
export interface RuleSigningInput {
  require?: string;
  signers?: SignerRef[];
  publisher?: PublisherInput;
  signature?: string;
  /** Continuity (signing/continuity.ts): a later version under another signer, or unsigned after signed ones, is refused (default: signing.on_change) or warned. */
  on_change?: 'refuse' | 'warn';
}

interface IdentityMatch {
  /** The exact SAN, or null when a pattern is given. */
  subject?: string;
  subjectPattern?: RegExp;
}

/** A compiled signer: what verification checks an identity against. */
export type CompiledSigner =
  /** `issuer` absent only in continuitySigners' "any keyless signer" (a rule's keyless signer always names one). */
  | ({ kind: 'keyless'; name: string; issuer?: string } & IdentityMatch)
  | { kind: 'key'; name: string; pem: string }
  | ({ kind: 'ca'; name: string; pem: string; issuer?: string } & IdentityMatch);

export interface PublisherRule {
  kind: 'github' | 'gitlab';
  /** owner/name (GitHub) or namespace/project (GitLab), compared case-insensitively. */
  repository: string;
  /** GitHub: the file name under .github/workflows/ (release.yml); GitLab: the CI config path (.gitlab-ci.yml). */
  workflow: string;
  environment?: string;
}

export type RequireLevel = 'none' | 'signed' | 'attested';

/** A rule's compiled signature requirement. `rule` is the rule id (e.g. "pypi.allow[3]"), used in reasons and cache keys. */
export interface SignatureRequirement {
  rule: string;
  require: RequireLevel;
  signers: CompiledSigner[];
  publisher?: PublisherRule;
  /** Hub: the signature file's name in the snapshot (model.sig by default). */
  signature: string;
  /**
   * The rule id with everything it checks, as one string: the `rule` part of a results-cache key,
   * so that a reload that keeps the rule's id but changes its signers misses the cache.
   */
  cacheKey: string;
  /** Continuity: the rule's on_change, else signing.on_change, else refuse. */
  onChange: 'refuse' | 'warn';
}

function signerKey(s: CompiledSigner): unknown {
  if (s.kind === 'key') return ['key', s.pem];
  return [s.kind, s.issuer ?? null, s.subject ?? null, s.subjectPattern?.source ?? null, s.kind === 'ca' ? s.pem : null];
}

const SIGNER_KEYS = new Set(['issuer', 'subject', 'subject_pattern', 'key', 'key_file', 'ca', 'ca_file']);
const PEM_KEY = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;
const SIGNER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const REPO = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)+$/;

function str(v: unknown, path: (string | number)[], what: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw new PolicyError(path, `expected ${what}, got ${JSON.stringify(v) ?? 'nothing'}`);
  return v.trim();
}

/** Anchored at both ends, whatever the writer did: "a.*" never matches "xa..." nor "a...\nevil". */
function anchored(pattern: string, path: (string | number)[]): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, 'u');
  } catch (e) {
    throw new PolicyError(path, `bad regular expression ${JSON.stringify(pattern)}: ${(e as Error).message}`);
  }
}

function identity(s: SignerInput, path: (string | number)[]): IdentityMatch {
  if (s.subject !== undefined && s.subject_pattern !== undefined)
    throw new PolicyError([...path, 'subject_pattern'], 'give subject (exact) or subject_pattern (anchored regular expression), not both');
  if (s.subject !== undefined) return { subject: str(s.subject, [...path, 'subject'], 'a certificate subject (an email or URI)') };
  if (s.subject_pattern !== undefined)
    return { subjectPattern: anchored(str(s.subject_pattern, [...path, 'subject_pattern'], 'a pattern'), [...path, 'subject_pattern']) };
  return {};
}

/** Compile one signer (named or inline). */
export function compileSigner(s: SignerInput, name: string, path: (string | number)[]): CompiledSigner {
  if (!s || typeof s !== 'object' || Array.isArray(s))
    throw new PolicyError(path, 'expected a signer: {issuer, subject | subject_pattern}, {key | key_file} or {ca | ca_file}');
  for (const k of Object.keys(s)) {
    if (!SIGNER_KEYS.has(k))
      throw new PolicyError([...path, k], `unknown signer key ${JSON.stringify(k)} (expected issuer, subject, subject_pattern, key, key_file, ca or ca_file)`);
  }
  const hasKey = s.key !== undefined || s.key_file !== undefined;
  const hasCa = s.ca !== undefined || s.ca_file !== undefined;
  if (hasKey && hasCa) throw new PolicyError(path, 'a signer is a key (key/key_file) or a CA (ca/ca_file), not both');
  if (hasKey) {
    if (s.issuer !== undefined || s.subject !== undefined || s.subject_pattern !== undefined)
      throw new PolicyError(path, 'a key signer takes no issuer or subject (the key is the identity)');
    if (typeof s.key !== 'string') throw new PolicyError([...path, 'key_file'], `${s.key_file}: key_file is read by the config loader; no key text was given`);
    const m = PEM_KEY.exec(s.key);
    if (!m) throw new PolicyError([...path, s.key_file !== undefined ? 'key_file' : 'key'], 'expected a PEM public key ("-----BEGIN PUBLIC KEY-----")');
    return { kind: 'key', name, pem: m[0] };
  }
  if (hasCa) {
    if (typeof s.ca !== 'string')
      throw new PolicyError([...path, 'ca_file'], `${s.ca_file}: ca_file is read by the config loader; no certificate text was given`);
    if (!PEM_CERT.test(s.ca))
      throw new PolicyError([...path, s.ca_file !== undefined ? 'ca_file' : 'ca'], 'expected PEM certificate(s) ("-----BEGIN CERTIFICATE-----")');
    const issuer = s.issuer === undefined ? {} : { issuer: str(s.issuer, [...path, 'issuer'], 'an issuer') };
    return { kind: 'ca', name, pem: s.ca, ...issuer, ...identity(s, path) };
  }
  const issuer = str(s.issuer, [...path, 'issuer'], 'an OIDC issuer URL (keyless signer), or key/key_file, or ca/ca_file');
  const id = identity(s, path);
  if (id.subject === undefined && !id.subjectPattern)
    throw new PolicyError(path, 'a keyless signer needs subject (exact) or subject_pattern (anchored regular expression) beside its issuer');
  return { kind: 'keyless', name, issuer, ...id };
}

function compilePublisher(p: PublisherInput, path: (string | number)[]): PublisherRule {
  if (!p || typeof p !== 'object' || Array.isArray(p))
    throw new PolicyError(path, 'expected {github: owner/repo | gitlab: namespace/project, workflow: FILE, environment?: NAME}');
  for (const k of Object.keys(p)) {
    if (!['github', 'gitlab', 'workflow', 'environment'].includes(k))
      throw new PolicyError([...path, k], `unknown publisher key ${JSON.stringify(k)} (expected github, gitlab, workflow or environment)`);
  }
  if ((p.github === undefined) === (p.gitlab === undefined)) throw new PolicyError(path, 'give exactly one of github: owner/repo or gitlab: namespace/project');
  const kind = p.github !== undefined ? 'github' : 'gitlab';
  const repository = str(p[kind], [...path, kind], kind === 'github' ? 'owner/repo' : 'namespace/project');
  if (!REPO.test(repository))
    throw new PolicyError([...path, kind], `expected ${kind === 'github' ? 'owner/repo' : 'namespace/project'}, got ${JSON.stringify(repository)}`);
  const workflow = str(
    p.workflow,
    [...path, 'workflow'],
    kind === 'github' ? 'the workflow file name (e.g. release.yml)' : 'the CI config path (e.g. .gitlab-ci.yml)',
  );
  const out: PublisherRule = { kind, repository, workflow };
  if (p.environment !== undefined) out.environment = str(p.environment, [...path, 'environment'], 'an environment name');
  return out;
}

/** The compiled policy.signing block: named signers, and the compiler for rules' signature fields. */
export class SigningPolicy {
  private readonly named = new Map<string, CompiledSigner>();
  /** Key and CA signers given inline in rules (continuitySigners). */
  private readonly inline: CompiledSigner[] = [];
  readonly onChange: 'refuse' | 'warn';

  constructor(input: SigningPolicyInput, base: (string | number)[] = ['signing']) {
    for (const [name, s] of Object.entries(input.signers ?? {})) {
      if (!SIGNER_NAME.test(name)) throw new PolicyError([...base, 'signers', name], `bad signer name ${JSON.stringify(name)}: letters, digits, '.', '_', '-'`);
      this.named.set(name, compileSigner(s, name, [...base, 'signers', name]));
    }
    const oc = input.on_change ?? 'refuse';
    if (oc !== 'refuse' && oc !== 'warn') throw new PolicyError([...base, 'on_change'], `expected refuse or warn, got ${JSON.stringify(oc)}`);
    this.onChange = oc;
  }

  signer(name: string): CompiledSigner | undefined {
    return this.named.get(name);
  }

  signerNames(): string[] {
    return [...this.named.keys()].sort();
  }

  /**
   * Compile a rule's signature fields. `levels` are the values `require` may take for this
   * ecosystem (none first); `uses` which of signers/publisher/signature the ecosystem accepts.
   * Returns null when the rule requires nothing and names nothing.
   */
  compileRule(
    r: RuleSigningInput,
    path: (string | number)[],
    levels: RequireLevel[],
    uses: { signers?: boolean; publisher?: boolean; signature?: boolean },
  ): SignatureRequirement | null {
    const rule = pathString(path);
    const require = (r.require ?? 'none') as RequireLevel;
    if (!levels.includes(require)) throw new PolicyError([...path, 'require'], `expected one of ${levels.join(', ')}, got ${JSON.stringify(r.require)}`);
    if (r.signers !== undefined && !uses.signers) throw new PolicyError([...path, 'signers'], 'this ecosystem takes a publisher, not signers');
    if (r.publisher !== undefined && !uses.publisher)
      throw new PolicyError([...path, 'publisher'], 'publisher (trusted publisher) applies to PyPI rules only; use signers');
    if (r.signature !== undefined && !uses.signature)
      throw new PolicyError([...path, 'signature'], 'signature (the signature file name) applies to Hub rules only');
    if (r.signers !== undefined && !Array.isArray(r.signers)) throw new PolicyError([...path, 'signers'], 'expected a list of signer names or inline signers');
    const signers = (r.signers ?? []).map((s, j) => {
      if (typeof s === 'string') {
        const found = this.named.get(s);
        if (!found) {
          const known = this.signerNames();
          throw new PolicyError(
            [...path, 'signers', j],
            `unknown signer ${JSON.stringify(s)}${known.length ? ` (policy signing.signers has ${known.join(', ')})` : ' (policy signing.signers is empty)'}`,
          );
        }
        return found;
      }
      const inline = compileSigner(s, `${rule}.signers[${j}]`, [...path, 'signers', j]);
      this.inline.push(inline);
      return inline;
    });
    const publisher = r.publisher !== undefined ? compilePublisher(r.publisher, [...path, 'publisher']) : undefined;
    let signature = 'model.sig';
    if (r.signature !== undefined) {
      signature = str(r.signature, [...path, 'signature'], 'a file name');
      if (signature.startsWith('/') || signature.split('/').includes('..'))
        throw new PolicyError([...path, 'signature'], `expected a path inside the repository, got ${JSON.stringify(signature)}`);
    }
    if (require !== 'none' && signers.length === 0 && !publisher) {
      throw new PolicyError(
        [...path, 'require'],
        `require: ${require} needs ${uses.publisher ? 'a publisher ({github: owner/repo, workflow: FILE})' : 'signers (names from signing.signers, or inline)'} to check the signature against`,
      );
    }
    const onChange = r.on_change ?? this.onChange;
    if (onChange !== 'refuse' && onChange !== 'warn') throw new PolicyError([...path, 'on_change'], `expected refuse or warn, got ${JSON.stringify(onChange)}`);
    // A rule's own on_change is kept (continuity of a project whose signer is on record applies under any rule).
    if (require === 'none' && signers.length === 0 && !publisher && r.signature === undefined && r.on_change === undefined) return null;
    const cacheKey = `${rule} ${JSON.stringify([require, signers.map(signerKey), publisher ?? null, signature])}`;
    return { rule, require, signers, ...(publisher ? { publisher } : {}), signature, cacheKey, onChange };
  }

  /**
   * Continuity (signing/continuity.ts) under a rule that requires nothing, for a project whose signer
   * is on record: whoever signed must be found out, so any keyless signer the trusted root verifies
   * (issuer and subject compared afterwards, with the recorded signer), and every key and CA this
   * policy names (a key signature verifies only with its key), without their identity constraints.
   */
  continuitySigners(): CompiledSigner[] {
    const out: CompiledSigner[] = [{ kind: 'keyless', name: 'any keyless signer' }];
    const seen = new Set<string>();
    for (const s of [...this.named.values(), ...this.inline]) {
      if (s.kind === 'keyless' || seen.has(`${s.kind}:${s.pem}`)) continue;
      seen.add(`${s.kind}:${s.pem}`);
      out.push(s.kind === 'key' ? s : { kind: 'ca', name: s.name, pem: s.pem });
    }
    return out;
  }

  /**
   * The requirement an artefact is checked under for continuity when its rule (`own`, null when
   * it has no signing fields) requires nothing: `level` (PyPI attested, OCI signed, Hub signed) by
   * continuitySigners, the rule's signature file and on_change, else signing.on_change.
   */
  continuityRequirement(rule: string, own: SignatureRequirement | null, level: RequireLevel): SignatureRequirement {
    const signers = this.continuitySigners();
    const signature = own?.signature ?? 'model.sig';
    const cacheKey = `continuity ${rule} ${JSON.stringify([level, signers.map(signerKey), signature])}`;
    return { rule, require: level, signers, signature, cacheKey, onChange: own?.onChange ?? this.onChange };
  }
}

/** The fields the loader resolves: every signer object in the policy, with its path (for key_file / ca_file). */
export function signerObjects(policy: {
  signing?: SigningPolicyInput;
  pypi?: { allow?: RuleSigningInput[] };
  oci?: { allow?: RuleSigningInput[] };
  hf?: { allow?: RuleSigningInput[] };
}): { signer: SignerInput; path: (string | number)[] }[] {
  const out: { signer: SignerInput; path: (string | number)[] }[] = [];
  for (const [name, s] of Object.entries(policy.signing?.signers ?? {}))
    if (s && typeof s === 'object') out.push({ signer: s, path: ['signing', 'signers', name] });
  for (const eco of ['pypi', 'oci', 'hf'] as const) {
    (policy[eco]?.allow ?? []).forEach((a, i) => {
      (Array.isArray(a?.signers) ? a.signers : []).forEach((s, j) => {
        if (s && typeof s === 'object') out.push({ signer: s, path: [eco, 'allow', i, 'signers', j] });
      });
    });
  }
  return out;
}
