import { changedSettings, ConfigError, loadConfig, type LoadedConfig } from './config/load.js';
import type { LivePolicy } from './core/live-policy.js';
import { policyVersion } from './core/live-policy.js';
import { slicer } from './core/turns.js';
import type { Logger } from './obs/logger.js';
import { Advisories } from './policy/index.js';
import type { OsvRecord, Prepared } from './policy/advisories.js';
import { TrustRoots } from './signing/trust.js';
import { advisoryPages } from './storage/advisory-pages.js';
import type { MetaStore } from './storage/meta-store.js';

/** The advisories imported into the metadata store (`airlock advisories import`), read a page at a time (advisory-pages.ts), their maps built in slices; `signal` ends the read (throws). */
export async function readAdvisories(meta: MetaStore, signal?: AbortSignal): Promise<Advisories> {
  const advisories = new Advisories();
  for await (const page of advisoryPages<OsvRecord>(meta, undefined, undefined, signal)) advisories.add(page);
  return advisories.sealed(slicer());
}

/** Per policy in force: the reloads begun, and the latest begun of those put in force. */
const reloads = new WeakMap<LivePolicy, { begun: number; inForce: number }>();
function sequence(live: LivePolicy): { begun: number; inForce: number } {
  const seq = reloads.get(live) ?? { begun: 0, inForce: 0 };
  reloads.set(live, seq);
  return seq;
}

/**
 * Re-read imported advisories into the policy in force; returns how many are active. Reads take a
 * while (pages, the event loop turning between them) and two can overlap (SIGHUP beside a change
 * noticed): the one begun later wins, so an older read that ends last does not put back what the
 * newer one replaced (a change made during both reads bumps the generation: the next notice applies it).
 */
export async function reloadAdvisories(meta: MetaStore, live: LivePolicy, log: Logger, signal?: AbortSignal): Promise<number> {
  const seq = sequence(live);
  const mine = ++seq.begun;
  const advisories = await readAdvisories(meta, signal);
  if (mine < seq.inForce) return live.advisories.size;
  seq.inForce = mine;
  live.replaceAdvisories(advisories);
  log.info({ advisories: advisories.size }, 'advisories reloaded');
  return advisories.size;
}

/** Changed ids read from the store at a time when a notice applies them. */
const CHANGED_READ = 100;

/**
 * Apply what a notice found changed in the store (advisories/sync.ts): the records of `ids` as
 * stored now are read, parsed and prepared in slices with turns of the event loop between them,
 * then put into the advisories in force in one step, the other records shared as they were.
 * Re-reading every record at each notice cost ~1 s of CPU for 20,000 (GC stops up to 73 ms) for a
 * sync that changed three. When half the records or more changed (a first sync, the first notice
 * after a start from an old mark) every record is re-read instead, in pages (reloadAdvisories), as
 * when a changed row's record is not held under the row's id (below). A stop ends it at its next record.
 * Two reads side by side: the one begun later wins, as in reloadAdvisories.
 */
export async function applyAdvisoryChanges(meta: MetaStore, live: LivePolicy, log: Logger, ids: string[], signal?: AbortSignal): Promise<number> {
  const held = live.advisories;
  // A row whose id has a U+FFFD may be one an import before e426203 stored under an id with a lone
  // surrogate (the stores keep it with U+FFFD in its place), or one written over such a row: the record
  // it held is in force under its JSON id, which no changed id names. Every record is re-read.
  if (ids.length * 2 >= held.size + held.withdrawn || ids.some((id) => id.includes('\uFFFD'))) return reloadAdvisories(meta, live, log, signal);
  const seq = sequence(live);
  const mine = ++seq.begun;
  const changes: Prepared[] = [];
  // One slicer for the whole apply: reading, preparing and building the maps share its slices.
  const slice = slicer();
  for (let at = 0; at < ids.length; at += CHANGED_READ) {
    signal?.throwIfAborted();
    for (const row of await meta.advisoryRecords(ids.slice(at, at + CHANGED_READ))) {
      // A stop ends it at the next record, not after the read's 100: records of ~200 KB listing many
      // releases take ~7 ms each to parse and prepare, and a server's shutdown waited ~1 s for them.
      signal?.throwIfAborted();
      changes.push(Advisories.prepare(JSON.parse(row.record) as OsvRecord));
      await slice();
    }
  }
  if (mine < seq.inForce) return live.advisories.size;
  // Rows are never deleted: a changed id not read back under its own id is a row whose record has
  // another id (as above), or one its own id does not find (SQLite reads such an id back otherwise
  // than it stored it). Which record it held before is not known here: every record is re-read.
  const found = new Set(changes.map((p) => p.rec.id));
  if (ids.some((id) => !found.has(id))) return reloadAdvisories(meta, live, log, signal);
  seq.inForce = mine;
  // Onto the advisories in force now (a SIGHUP's whole re-read may have been put in force meanwhile).
  const next = await live.advisories.withChangesSliced(changes, slice);
  if (mine < seq.inForce) return live.advisories.size;
  live.replaceAdvisories(next);
  log.info({ advisories: next.size, changed: ids.length }, 'advisories changed: applied');
  return next.size;
}

/**
 * Re-read the policy from the configuration file and swap it in whole; a bad file keeps the old
 * policy and says why. Only the policy is applied: other settings that changed are named in a
 * warning (they need a restart).
 */
export function reloadPolicy(loaded: LoadedConfig, live: LivePolicy, log: Logger): boolean {
  try {
    const next = loadConfig(loaded.configFile);
    // An emptied configuration (a truncated write, `---`, `null`) would load as every default with
    // no policy: a policy that allows nothing. Refused like an empty policy_file (config/load.ts).
    if (next.empty)
      throw new ConfigError(
        `${next.configFile}: the configuration file is empty (or only comments, or a null document): it would refuse every pull; write policy: {} to mean that on purpose`,
      );
    const policy = live.replacePolicy(next.policy, policyVersion(next.policyFile));
    log.info({ file: loaded.policyFile, pypi: policy.pypi.size, oci: policy.oci.size, hf: policy.hf.size }, 'policy reloaded');
    if (policy.pypi.size + policy.oci.size + policy.hf.size === 0)
      log.warn({ file: loaded.policyFile }, 'the reloaded policy allows nothing: every pull is refused');
    const changed = changedSettings(loaded.config, next.config);
    if (changed.length) log.warn({ changed }, 'configuration changes outside the policy need a restart; they were not applied');
    return true;
  } catch (e) {
    log.error({ err: (e as Error).message }, 'policy reload failed; keeping the previous policy');
    live.reloadFailed((e as Error).message);
    return false;
  }
}

/** The trusted root at start: the newest imported one, else the shipped one; a broken stored root is logged (signatures then fail closed). */
export async function loadTrustRoots(meta: MetaStore, log: Logger): Promise<TrustRoots> {
  const trust = new TrustRoots(meta);
  await reloadTrust(trust, log);
  return trust;
}

/** Re-read the trusted root (after `airlock trust import`); returns the version in use, or null. */
export async function reloadTrust(trust: TrustRoots, log: Logger): Promise<string | null> {
  const root = await trust.refresh();
  if (root) log.info({ trustVersion: root.version, source: root.source }, 'trusted root loaded');
  else log.error({ err: trust.problem }, 'no usable Sigstore trusted root: signature rules refuse until one is imported');
  return root?.version ?? null;
}
