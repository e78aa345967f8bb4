import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import { SingleFlight } from '../core/flight.js';
import { Refusal, type RefusalRow } from '../http/refusal.js';
import type { PublisherRule, SignatureRequirement } from '../policy/signing.js';
import { SignatureCache } from '../signing/cache.js';
import { signatureField } from '../signing/record.js';
import { verifyPep740, type Pep740Result } from '../signing/pep740.js';
import type { TrustRoots } from '../signing/trust.js';
import { MAX_BUNDLE_BYTES } from '../signing/verify.js';
import type { PageCache } from '../storage/meta-store.js';
import { readBoundedBytes, redact, type UpstreamHttp } from '../upstream/http.js';
import type { IndexSource } from './index.js';

/**
 * PEP 740 provenance for files whose allow rule requires `attested` (issue 26): fetched from the
 * upstream's integrity API, bounded in size and time, verified by src/signing/pep740.ts against the
 * file's name and the sha256 the index gave (known before any byte of the file is served) and the
 * rule's publisher. The bytes of a verified provenance are kept (memory, then the metadata store's
 * page cache, so a warm request or a restarted replica makes no upstream call) and results by
 * (file sha256 and name, provenance digest, trust version, rule). Anything else is a Refusal: `unsigned`
 * when the upstream has no provenance, `bad_signature` when it does not verify.
 */

export const INTEGRITY_MEDIA_TYPE = 'application/vnd.pypi.integrity.v1+json';
/** A provenance body may take this long in all (a host dripping bytes is cut, and refused). */
export const PROVENANCE_DEADLINE_MS = 15_000;
const MEMO_LIMIT = 2048;

/** The integrity API beside a simple index: https://pypi.org/simple/ → https://pypi.org/integrity/; null when the index URL does not end in /simple/. */
export function integrityBaseOf(indexUrl: string): string | null {
  const u = new URL(indexUrl);
  if (!u.pathname.endsWith('/simple/')) return null;
  u.pathname = `${u.pathname.slice(0, -'simple/'.length)}integrity/`;
  u.search = '';
  u.hash = '';
  return u.href;
}

/** Where Airlock serves a file's verified provenance, under its public base URL (null unless that is https). */
export function provenanceBase(publicUrl: string | undefined, prefix: string): string | null {
  if (!publicUrl) return null;
  const u = new URL(publicUrl);
  if (u.protocol !== 'https:') return null;
  const path = u.pathname.endsWith('/') ? u.pathname : `${u.pathname}/`;
  return `${u.origin}${path}${prefix.replace(/^\//, '')}/integrity/`;
}

/** The path of a file's provenance under a base (the upstream's integrity API, or Airlock's own). */
export function provenancePath(project: string, version: string, filename: string): string {
  return `${encodeURIComponent(project)}/${encodeURIComponent(version)}/${encodeURIComponent(filename)}/provenance`;
}

function describe(p: PublisherRule): string {
  return `${p.kind === 'github' ? 'GitHub' : 'GitLab'} ${p.repository} workflow ${p.workflow}${p.environment ? ` environment ${p.environment}` : ''}`;
}

export interface ProvenanceOptions {
  http: UpstreamHttp;
  meta: PageCache;
  trust: TrustRoots;
  log: Logger;
  /** The integrity API of each index (null: unknown, and attested files of that index are refused). */
  integrity: Record<IndexSource, string | null>;
  deadlineMs?: number;
}

/** A file as the check needs it: known from the page before any byte is served. */
export interface AttestedFile {
  project: string;
  version: string;
  filename: string;
  sha256: string;
  source: IndexSource;
}

export interface Verified {
  result: Pep740Result;
  /** The provenance's bytes as fetched and verified (what Airlock serves again). */
  bytes: Buffer;
}

type Fetched = { status: 'found'; bytes: Buffer } | { status: 'missing' | 'unreadable'; detail: string };

export class Provenances {
  private readonly results = new SignatureCache<Pep740Result>();
  /** Verified provenance bytes by file (LRU). */
  private readonly memo = new Map<string, Buffer>();
  /** Each kept provenance's digest, so a warm request hashes nothing. */
  private readonly digests = new WeakMap<Buffer, string>();
  private readonly flight = new SingleFlight<string, Fetched>();

  constructor(private readonly o: ProvenanceOptions) {}

  /**
   * The verified provenance of a file a rule requires to be attested, or a Refusal (thrown) to
   * answer before the first byte: the row, the log line and pip's error come from the front-end's
   * error handler. `row` is the refusal's row.
   */
  async check(f: AttestedFile, req: SignatureRequirement, row: RefusalRow): Promise<Verified> {
    const publisher = req.publisher;
    const wants = publisher ? `a PEP 740 attestation from ${describe(publisher)}` : 'a PEP 740 attestation';
    const refuse = (code: 'unsigned' | 'bad_signature', found: string, result?: Pep740Result): never => {
      const reason = `${f.filename}: policy rule ${req.rule} requires ${wants}; ${found}`.replace(/\s+/g, ' ').slice(0, 700);
      throw new Refusal({
        status: 403,
        code,
        rule: req.rule,
        reason,
        row: { ...row, version: f.version, sha256: f.sha256, signature: signatureField(result) },
      });
    };
    if (!publisher) refuse('bad_signature', 'the rule names no publisher to check it against');
    const got = await this.lookup(f, req, row, wants);
    if (got.status !== 'found') return refuse(got.status === 'missing' ? 'unsigned' : 'bad_signature', got.detail);
    if (!got.result.ok) {
      // verifyPep740's reason starts with the file's name, which this reason already gives.
      const why = (got.result.reason ?? 'no reason given').replace(`${f.filename}: `, '');
      return refuse('bad_signature', `its provenance fails: ${why}`, got.result);
    }
    return { result: got.result, bytes: got.bytes };
  }

  /**
   * The file's provenance, fetched (or kept) and verified against `req`'s publisher (none: any
   * publisher, for continuity under a rule that names none), without refusing: `missing` (no
   * provenance), `unreadable` (too large), or `found` with the result, ok or not. The integrity API
   * failing is a Refusal (upstream_failed), thrown: nothing is served.
   */
  async lookup(
    f: AttestedFile,
    req: SignatureRequirement,
    row: RefusalRow,
    wants = 'a PEP 740 attestation',
  ): Promise<{ status: 'found'; result: Pep740Result; bytes: Buffer } | { status: 'missing' | 'unreadable'; detail: string }> {
    // '/' between the parts (none holds one): PostgreSQL's page cache refuses a NUL in text.
    const key = `${f.source}/${f.project}/${f.filename}/${f.sha256}`;
    let bytes = this.memo.get(key) ?? (await this.stored(key));
    const fromUpstream = !bytes;
    if (!bytes) {
      let got: Fetched;
      try {
        got = await this.flight.run(key, () => this.fetch(f));
      } catch (e) {
        // The integrity API failed (down, slow, an unexpected answer): on record as upstream_failed; nothing is served.
        if (!(e instanceof AirlockError && e.code.startsWith('UPSTREAM_'))) throw e;
        const reason = `${f.filename}: policy rule ${req.rule} requires ${wants}, and its provenance could not be fetched: ${e.message}`;
        const fileRow = { ...row, version: f.version, sha256: f.sha256 };
        throw new Refusal({ status: e.status, code: 'upstream_failed', decision: 'error', rule: req.rule, reason, row: fileRow });
      }
      if (got.status !== 'found') return got;
      bytes = got.bytes;
    }
    const result = this.verify(bytes, f, req);
    if (result.ok) {
      this.remember(key, bytes);
      if (fromUpstream) await this.persist(key, bytes);
    }
    return { status: 'found', result, bytes };
  }

  /** The trusted root verifications use now (null: none usable). */
  root(): ReturnType<TrustRoots['current']> {
    return this.o.trust.current();
  }

  private verify(bytes: Buffer, f: AttestedFile, req: SignatureRequirement): Pep740Result {
    const root = this.o.trust.current();
    const compute = () => verifyPep740(bytes, f.filename, f.sha256, req.publisher ?? null, root);
    if (!root) return compute();
    let digest = this.digests.get(bytes);
    if (!digest) this.digests.set(bytes, (digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`));
    // The file's name is part of what is verified (every attestation must name it): it keys the result with its sha256.
    return this.results.through(`${f.sha256} ${f.filename}`, digest, root.version, req.cacheKey, compute);
  }

  private remember(key: string, bytes: Buffer): void {
    this.memo.delete(key);
    this.memo.set(key, bytes);
    if (this.memo.size > MEMO_LIMIT) this.memo.delete(this.memo.keys().next().value!);
  }

  /** A verified provenance kept by this or another replica (the page cache holds text: only exact UTF-8 round trips are kept). */
  private async stored(key: string): Promise<Buffer | undefined> {
    const page = await this.o.meta.getPage(`pypi-provenance:${key}`);
    return page ? Buffer.from(page.body, 'utf8') : undefined;
  }

  private async persist(key: string, bytes: Buffer): Promise<void> {
    const text = bytes.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(bytes)) return;
    try {
      await this.o.meta.putPage({ key: `pypi-provenance:${key}`, body: text, fetchedAt: Date.now(), etag: null });
    } catch (e) {
      this.o.log.warn({ ecosystem: 'pypi', err: (e as Error).message }, 'could not keep a verified provenance; it will be fetched again');
    }
  }

  /** GET <integrity>/<project>/<version>/<filename>/provenance, bounded; a 404 is "no provenance", other failures are errors or refusals. */
  private async fetch(f: AttestedFile): Promise<Fetched> {
    const base = this.o.integrity[f.source];
    if (!base) {
      return {
        status: 'missing',
        detail: `Airlock knows no integrity API for the ${f.source} index (its URL does not end in /simple/; set pypi.integrity_url)`,
      };
    }
    const url = new URL(provenancePath(f.project, f.version, f.filename), base);
    const res = await this.o.http.get(url, {
      headers: { accept: INTEGRITY_MEDIA_TYPE },
      allowUrl: (u) => u.host === url.host && (u.protocol === 'https:' || u.protocol === 'http:'),
    });
    if (res.status === 404) {
      res.body.resume();
      return { status: 'missing', detail: `the ${f.source} index has no provenance for it (404 from ${redact(url)})` };
    }
    if (res.status !== 200) {
      res.body.resume();
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `the integrity API answered ${res.status} for ${redact(url)}`);
    }
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_BUNDLE_BYTES) {
      res.body.destroy();
      return { status: 'unreadable', detail: `the provenance is ${declared} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit` };
    }
    try {
      return { status: 'found', bytes: await readBoundedBytes(res.body, MAX_BUNDLE_BYTES, this.o.deadlineMs ?? PROVENANCE_DEADLINE_MS) };
    } catch (e) {
      // Too large: refused (it cannot be a provenance Airlock verifies). Too slow, or cut: the upstream failed.
      if (e instanceof AirlockError && e.code === 'UPSTREAM_BAD_RESPONSE')
        return { status: 'unreadable', detail: `the provenance is over the ${MAX_BUNDLE_BYTES}-byte limit` };
      throw e;
    }
  }
}
