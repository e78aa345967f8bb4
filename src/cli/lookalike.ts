import { openMeta } from '../backends.js';
import { ConfigError, type LoadedConfig } from '../config/load.js';
import { popularNames } from '../config/popular.js';
import type { KnownName, LookalikeEcosystem, LookalikeWarning } from '../names/lookalike.js';
import { lookalikeIndex } from '../policy/lookalike.js';

/**
 * The look-alike gate of `airlock pin` (names/lookalike.ts): before a pin is written, the name is
 * compared with the policy's names, the internal names, the names most pulled through the mirror
 * (the newest RECORD_ROWS served pulls) and the popular names shipped in share/popular/. A
 * warning stops the pin, naming the look-alike and why, unless --accept-lookalike is given; then
 * a comment beside the entry says what was accepted. A look-alike of an internal name is refused
 * whatever the flag (dependency confusion by a near name).
 */

/** How many of the newest served pulls are counted for the record's names. */
const RECORD_ROWS = 5000;

/** The record's names, most pulled first, among the newest served pulls. */
async function recordNames(loaded: LoadedConfig, eco: LookalikeEcosystem): Promise<KnownName[]> {
  const meta = await openMeta(loaded, { create: true });
  try {
    const counts = new Map<string, number>();
    for (const r of await meta.listPulls({ ecosystem: eco, decision: 'allow', limit: RECORD_ROWS })) counts.set(r.name, (counts.get(r.name) ?? 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1]).map(([name]) => ({ name, source: 'record' }));
  } finally {
    await meta.close();
  }
}

/**
 * The look-alike check of one ecosystem, its known names read once: a bulk pin builds it once
 * and asks it for every name (lookalikeVerdict says what to do with the warnings).
 */
export async function lookalikeChecker(loaded: LoadedConfig, eco: LookalikeEcosystem): Promise<(name: string) => LookalikeWarning[]> {
  const popular = popularNames(eco).map((n) => ({ name: n, source: 'popular' as const }));
  const index = lookalikeIndex(loaded.policy, eco, [...(await recordNames(loaded, eco)), ...popular]);
  return (name) => index.check(name);
}

/**
 * What a pin does with a name's warnings: null (none: pin it), the comment to write beside its
 * entry (accepted), or a ConfigError naming the look-alike and why (not accepted, or a look-alike
 * of an internal name, which no flag approves).
 */
export function lookalikeVerdict(name: string, warnings: LookalikeWarning[], accept: boolean | undefined): string | null {
  if (warnings.length === 0) return null;
  const why = warnings.map((w) => w.reason).join('; ');
  const internal = warnings.find((w) => w.source === 'internal');
  if (internal)
    throw new ConfigError(
      `pin: refused: ${JSON.stringify(name)} looks like the internal name ${JSON.stringify(internal.like)} (${why}); a near copy of an internal name is how dependency confusion starts, so no flag approves it. If it is yours, add it to policy.pypi.internal`,
    );
  const like = warnings.find((w) => w.like)?.like;
  if (!accept)
    throw new ConfigError(
      `pin: ${JSON.stringify(name)} looks like ${like ? JSON.stringify(like) : 'a known name'}: ${why}. Not pinned: check the name; if it is the one you mean, pin again with --accept-lookalike (a comment beside the entry records it)`,
    );
  return `look-alike of ${like ?? 'a known name'} accepted: ${why}`.replace(/\s+/g, ' ');
}

/** One pin's gate: the check, then the verdict (above). */
export async function lookalikeGate(loaded: LoadedConfig, eco: LookalikeEcosystem, name: string, accept: boolean | undefined): Promise<string | null> {
  return lookalikeVerdict(name, (await lookalikeChecker(loaded, eco))(name), accept);
}

/**
 * A bulk pin's look-alike gate (../pin-bulk.ts): the known names read once, then per name the
 * comment to write beside an accepted look-alike's entry, or the one-line reason it is refused
 * ("look-alike of X (why)"), the same verdicts as a single pin (lookalikeVerdict).
 */
export async function lookalikeBulkGate(
  loaded: LoadedConfig,
  eco: LookalikeEcosystem,
  accept: boolean | undefined,
): Promise<(name: string) => { refused: string } | { comment: string | null }> {
  const check = await lookalikeChecker(loaded, eco);
  return (name) => {
    const warnings = check(name);
    try {
      return { comment: lookalikeVerdict(name, warnings, accept) };
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const why = warnings.map((w) => w.reason).join('; ');
      const internal = warnings.find((w) => w.source === 'internal');
      if (internal) return { refused: `look-alike of the internal name ${internal.like} (${why}); no flag approves it` };
      return { refused: `look-alike of ${warnings.find((w) => w.like)?.like ?? 'a known name'} (${why}); --accept-lookalike pins it with a comment` };
    }
  };
}
