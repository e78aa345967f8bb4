import { popularNames } from '../config/popular.js';
import type { Logger } from '../obs/logger.js';
import type { LookalikeEcosystem, LookalikeIndex, LookalikeWarning } from '../names/lookalike.js';
import type { Policy } from '../policy/index.js';
import { lookalikeIndex } from '../policy/lookalike.js';
import type { StoredPullRecord } from '../storage/meta-store.js';

/**
 * The look-alike warnings the refusals page shows beside an approval (approval.ts): the refused
 * name against the policy's names, the internal names and the popular names shipped in
 * share/popular/ (the record's names are left to `airlock pin`, which reads them). One index per
 * ecosystem and policy, built on first use and dropped with the policy on a reload.
 */
const built = new WeakMap<Policy, Map<LookalikeEcosystem, LookalikeIndex | null>>();
const ECOSYSTEMS: string[] = ['pypi', 'hf', 'oci'];

export function lookalikesFor(policy: Policy, log: Logger): (r: StoredPullRecord) => LookalikeWarning[] {
  let byEco = built.get(policy);
  if (!byEco) built.set(policy, (byEco = new Map()));
  const indexes = byEco;
  return (r) => {
    if (!ECOSYSTEMS.includes(r.ecosystem)) return [];
    const eco = r.ecosystem as LookalikeEcosystem;
    if (!indexes.has(eco)) {
      try {
        indexes.set(
          eco,
          lookalikeIndex(
            policy,
            eco,
            popularNames(eco).map((name) => ({ name, source: 'popular' as const })),
          ),
        );
      } catch (e) {
        // A broken installation shows no warnings rather than no refusals page; it is logged.
        log.warn({ err: (e as Error).message }, 'look-alike check unavailable on the refusals page');
        indexes.set(eco, null);
      }
    }
    return indexes.get(eco)?.check(r.name) ?? [];
  };
}
