import { readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { blobCache, hfHub, openBlobs, openMeta, upstreamHttp, withOciUpstream } from '../backends.js';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { HashPool } from '../core/hasher.js';
import { LivePolicy } from '../core/live-policy.js';
import type { HfContext } from '../hf/context.js';
import { ModelSignatures } from '../hf/signature.js';
import { Refusal } from '../http/refusal.js';
import { displayRepo, type HfRepoType } from '../names/hf.js';
import { normalizeName } from '../names/pypi.js';
import { parseImageRef } from '../names/oci.js';
import { Metrics } from '../obs/metrics.js';
import { ImageSignatures } from '../oci/signatures.js';
import { Advisories } from '../policy/advisories.js';
import { canonicalRepository } from '../policy/oci.js';
import type { SignatureRequirement } from '../policy/signing.js';
import type { IndexSource } from '../pypi/index.js';
import { integrityBaseOf, Provenances } from '../pypi/provenance.js';
import { loadTrustRoots } from '../reload.js';
import { Continuity, continuityIdentity, continuityProject } from '../signing/continuity.js';
import type { SignatureResult } from '../signing/verify.js';
import type { MetaStore } from '../storage/meta-store.js';
import { PolicyEditor } from './policy-edit.js';

/**
 * `airlock pin` records the verified identity beside each pin (issue 26, item 6). After a pin is
 * written, each pinned release, digest or commit whose allow rule (in the policy as pinned)
 * requires a signature is verified now, as the server will verify it (the same code: PEP 740
 * provenance, the image signature gate, the model signature), and:
 * - its signer is recorded in the metadata store's signers table when the project has none yet
 *   (continuity: the first wins, as at a first verified pull), or compared with the recorded one;
 * - a comment line naming that signer is written above the pin's entry in the policy file,
 *   through the byte-preserving editor (only that line is added; the Git diff shows it);
 * - a pin that does not verify, or whose signer differs from the recorded one, is pinned as before
 *   with a warning that says why the server will refuse it (nothing recorded, no comment).
 * Pins under no signing rule open nothing and print nothing more.
 */

export type PinItem =
  | { eco: 'pypi'; name: string; version: string; source: IndexSource; files: { filename: string; sha256: string }[] }
  | { eco: 'oci'; repository: string; digest: string }
  | { eco: 'hf'; type: HfRepoType; repo: string; commit: string };

interface Checked {
  item: PinItem;
  req: SignatureRequirement;
  /** What the pin is, as the comment and messages name it. */
  what: string;
  project: string;
  version: string;
  result: SignatureResult;
}

const today = () => new Date().toISOString().slice(0, 10);
const label = (i: PinItem) =>
  i.eco === 'pypi' ? `${i.name}==${i.version}` : i.eco === 'oci' ? `${i.repository}@${i.digest}` : `${displayRepo(i.type, i.repo)}@${i.commit}`;

/** The requirement the pinned policy puts on an item (null: no signing rule applies). */
function requirementOf(loaded: LoadedConfig, i: PinItem): SignatureRequirement | null {
  const p = loaded.policy;
  let rule: string | undefined;
  if (i.eco === 'pypi') {
    const d = p.pypi.decideFile(i.name, i.version, i.files[0]?.sha256);
    rule = d.allow ? d.rule : undefined;
  } else if (i.eco === 'oci') {
    const d = p.oci.decideDigest(i.repository, i.digest);
    rule = d.allow ? d.rule : undefined;
  } else {
    const r = p.hf.resolveRevision(i.type, i.repo, i.commit);
    rule = r.decision.allow ? r.decision.rule : undefined;
  }
  const req = rule ? (i.eco === 'pypi' ? p.pypi : i.eco === 'oci' ? p.oci : p.hf).requirement(rule) : null;
  return req && req.require !== 'none' ? req : null;
}

/** Verify, record and note the signers of pinned items; `out` gets one line per item checked, `err` the warnings. */
export async function recordPinSigners(
  configFile: string,
  items: PinItem[],
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream = process.stderr,
): Promise<void> {
  const loaded = loadConfig(configFile);
  const todo = items.map((item) => ({ item, req: requirementOf(loaded, item) })).filter((t): t is { item: PinItem; req: SignatureRequirement } => !!t.req);
  if (todo.length === 0) return;
  const checked: Checked[] = [];
  const warn = (i: PinItem, why: string) => err.write(`warning: ${label(i)}: ${why.replace(/\s+/g, ' ')}\n`);
  for (const eco of ['pypi', 'oci', 'hf'] as const) {
    const mine = todo.filter((t) => t.item.eco === eco);
    if (mine.length === 0) continue;
    try {
      checked.push(...(await VERIFY[eco](loaded, mine, warn)));
    } catch (e) {
      for (const t of mine) warn(t.item, `the signature could not be checked at pin time (${(e as Error).message}); the server checks it at the first pull`);
    }
  }
  if (checked.length === 0) return;
  const meta = await openMeta(loaded, { create: true });
  const noted: { c: Checked; identity: string }[] = [];
  try {
    const continuity = new Continuity(meta, 0);
    for (const c of checked) {
      const identity = continuityIdentity(c.result)!;
      const had = await meta.getSigner(c.item.eco, continuityProject(c.item.eco, c.project));
      const d = await continuity.check({
        ecosystem: c.item.eco,
        project: c.project,
        version: c.version,
        rule: c.req.rule,
        onChange: c.req.onChange,
        result: c.result,
      });
      const recorded = d.action === 'pass' ? ` (${had ? 'the recorded signer of' : 'recorded as the signer of'} ${c.project})` : '';
      out.write(`${c.req.require === 'attested' ? 'attested' : 'signed'}: ${c.what} by ${identity}${recorded}\n`);
      if (d.action !== 'pass') warn(c.item, d.reason);
      noted.push({ c, identity });
    }
  } finally {
    await meta.close();
  }
  notePolicy(loaded, noted, err);
}

/** The comment lines, above each pin's entry, in one write; the policy must load after it (else the old bytes are put back). */
function notePolicy(loaded: LoadedConfig, noted: { c: Checked; identity: string }[], err: NodeJS.WritableStream): void {
  const old = readFileSync(loaded.policyFile, 'utf8');
  const ed = new PolicyEditor(old, loaded.policyPathInFile, loaded.policyFile);
  for (const { c, identity } of noted) {
    const index = entryIndex(ed, c.item);
    const text = `airlock pin ${today()}: ${c.what} ${c.req.require === 'attested' ? 'attested' : 'signed'} by ${identity}`;
    if (index < 0 || !ed.commentAbove(c.item.eco, index, text))
      err.write(`warning: ${label(c.item)}: the signer was recorded, but its entry in ${loaded.policyFile} is not in a block list; not noted there\n`);
  }
  if (!ed.changed) return;
  try {
    writeFileSync(loaded.policyFile, ed.result());
    loadConfig(loaded.configFile);
  } catch (e) {
    writeFileSync(loaded.policyFile, old);
    err.write(`warning: the signers were recorded, but not noted in ${loaded.policyFile}: ${(e as Error).message}\n`);
  }
}

/** The entry that holds the pin, found as the pin functions find it (pin-apply.ts). */
function entryIndex(ed: PolicyEditor, i: PinItem): number {
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
  const values = (v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.values(v).map(String) : []);
  if (i.eco === 'pypi')
    return ed.entries('pypi').findIndex((e) => normalizeName(String(e.name)) === i.name && String(e.versions ?? '').replace(/\s/g, '') === `==${i.version}`);
  if (i.eco === 'oci')
    return ed
      .entries('oci')
      .findIndex((e) => canonicalRepository(String(e.repository)) === i.repository && [...list(e.digests), ...values(e.tags)].includes(i.digest));
  return ed
    .entries('hf')
    .findIndex((e) => String(e.repo) === i.repo && String(e.type ?? 'model') === i.type && [...list(e.commits), ...values(e.refs)].includes(i.commit));
}

type Verify = (loaded: LoadedConfig, todo: { item: PinItem; req: SignatureRequirement }[], warn: (i: PinItem, why: string) => void) => Promise<Checked[]>;

const silent = pino({ level: 'silent' });
const liveOf = (loaded: LoadedConfig) => new LivePolicy(loaded.policy, new Advisories([]), { file: loaded.policyFile, sha256: '' });

/** PyPI: each file's PEP 740 provenance, as the server fetches and verifies it; one signer per release (its first file's). */
const verifyPypi: Verify = async (loaded, todo, warn) => {
  const meta = await openMeta(loaded, { create: true });
  const http = upstreamHttp(loaded, 'pypi');
  const out: Checked[] = [];
  try {
    const trust = await loadTrustRoots(meta, silent);
    const c = loaded.config.pypi;
    const integrity = { public: c.integrity_url ?? integrityBaseOf(c.upstream), internal: c.internal ? integrityBaseOf(c.internal) : null };
    const prov = new Provenances({ http, meta, trust, log: silent, integrity });
    for (const { item, req } of todo) {
      if (item.eco !== 'pypi' || req.require !== 'attested') continue;
      const results: SignatureResult[] = [];
      for (const f of item.files) {
        try {
          const v = await prov.check({ project: item.name, version: item.version, filename: f.filename, sha256: f.sha256, source: item.source }, req, {
            name: item.name,
            filename: f.filename,
            version: item.version,
          });
          results.push(v.result);
        } catch (e) {
          if (!(e instanceof Refusal)) throw e;
          results.length = 0;
          // The integrity API failing is not a verdict: the server asks again at the first pull.
          warn(item, e.code === 'upstream_failed' ? `not checked at pin time: ${e.message}` : `the server will refuse it: ${e.message}`);
          break;
        }
      }
      const ids = new Set(results.map((r) => continuityIdentity(r)));
      if (results.length === 0) continue;
      if (ids.size > 1) warn(item, `its files are attested by different publishers (${[...ids].join(', ')}); the first is recorded`);
      const what = `${item.name}==${item.version} (${results.length} file${results.length === 1 ? '' : 's'})`;
      out.push({ item, req, what, project: item.name, version: item.version, result: results[0] });
    }
  } finally {
    await http.close();
    await meta.close();
  }
  return out;
};

/** Images: the server's signature gate (referrers API, tag schemes) for the pinned digest. */
const verifyOci: Verify = (loaded, todo, warn) =>
  withOciUpstream(loaded, async ({ upstream, cache, meta }) => {
    const trust = await loadTrustRoots(meta, silent);
    const live = liveOf(loaded);
    const sigs = new ImageSignatures({ upstream, cache, meta, live, log: silent, maxManifestBytes: loaded.config.oci.max_manifest_bytes, trust });
    const out: Checked[] = [];
    for (const { item, req } of todo) {
      if (item.eco !== 'oci') continue;
      const ref = parseImageRef(`${item.repository}@${item.digest}`, loaded.config.oci.default_registry);
      if (!ref.ok) continue;
      const t = upstream.targetOf(ref.ref);
      const v = await sigs.check(t, item.digest, req);
      if (v.code === 'upstream_failed') {
        warn(item, `not checked at pin time: ${v.reason ?? 'the registry failed'}`);
        continue;
      }
      if (!v.ok) {
        warn(item, `the server will refuse it: ${v.reason ?? v.code}`);
        continue;
      }
      out.push({ item, req, what: `${item.repository}@${item.digest.slice(0, 19)}…`, project: t.repo, version: v.subject ?? item.digest, result: v });
    }
    return out;
  });

/** Models: the server's model signature check (model.sig against the commit's files) for the pinned commit. */
const verifyHf: Verify = async (loaded, todo, warn) => {
  const meta: MetaStore = await openMeta(loaded, { create: true });
  const http = upstreamHttp(loaded, 'hf');
  const hashes = new HashPool(1);
  const out: Checked[] = [];
  let cache: ReturnType<typeof blobCache> | undefined;
  try {
    const store = await openBlobs(loaded, { cleanSpool: false });
    cache = blobCache(loaded, { store, meta, hashes, log: silent, metrics: new Metrics(false) });
    const trust = await loadTrustRoots(meta, silent);
    const hub = hfHub(loaded, { http, meta, log: silent });
    const live = liveOf(loaded);
    // What the signature check reads of the deps: the policy, the Hub, the blob cache and the alias store (no recorder, no continuity).
    const deps = { live, hub, cache, meta, log: silent, maxFileBytes: loaded.config.hf.max_file_bytes, trust } as unknown as HfContext;
    const sigs = new ModelSignatures(deps, trust);
    for (const { item, req } of todo) {
      if (item.eco !== 'hf') continue;
      const snap = await hub.snapshot(item.type, item.repo, item.commit);
      const s = await sigs.check(snap, req.rule);
      if (!s.required) continue;
      if (!s.result.ok) {
        warn(item, `the server will refuse it: ${s.result.reason ?? 'unsigned'}`);
        continue;
      }
      const name = displayRepo(item.type, item.repo);
      out.push({ item, req, what: `${name}@${item.commit.slice(0, 12)}`, project: name, version: item.commit, result: s.result });
    }
  } finally {
    if (cache) await cache.shutdown();
    await hashes.close();
    await http.close();
    await meta.close();
  }
  return out;
};

const VERIFY: Record<PinItem['eco'], Verify> = { pypi: verifyPypi, oci: verifyOci, hf: verifyHf };
