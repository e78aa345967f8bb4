import type { Logger } from '../obs/logger.js';

/**
 * The seam after an advisory import that changed something has been applied to the live policy
 * (a scheduled feed sync on this replica, another replica's sync noticed here, or `airlock advisories import`
 * by hand noticed by the server). Hooks (alerting, "what changed, for whom") register here; a hook's failure
 * is logged and swallowed so it can never undo or block the import.
 *
 * Delivery is at least once, per replica: every replica that applies a change runs its hooks, and a change
 * applied but not yet told when a process died is told again at the next start (the store's advisoriesTold).
 * A hook that must act once per fleet dedupes (e.g. an outbox keyed by advisory and artefact).
 */
export interface AdvisoriesChange {
  /** Advisory ids added, changed or withdrawn by the import (may be empty when only the count is known). */
  changedIds: string[];
  /** Where the change came from: the name of the feed source whose sync made it (on whichever replica), 'import' (by hand); several joined by commas. */
  source: string;
}

export type AppliedHook = (change: AdvisoriesChange) => Promise<void>;

const hooks: AppliedHook[] = [];

export function onAdvisoriesApplied(h: AppliedHook): void {
  hooks.push(h);
}

/** For tests: forget every registered hook. */
export function clearAdvisoriesAppliedHooks(): void {
  hooks.length = 0;
}

/** Runs every hook in registration order; each one's error is logged (when a logger is given) and swallowed. */
export async function advisoriesApplied(change: AdvisoriesChange, log?: Logger): Promise<void> {
  for (const h of [...hooks]) {
    try {
      await h(change);
    } catch (e) {
      log?.error({ err: (e as Error).message, source: change.source, changed: change.changedIds.length }, 'an advisories-applied hook failed');
    }
  }
}
