/**
 * The alert outbox (issue 28; one seam of the metadata store, held to test/contract/alert-store.ts):
 * alerts waiting to be sent to a notification channel, one row per (advisory id, advisory modified,
 * artefact, channel), inserted idempotently so replicas computing the same impact make one row; the
 * (advisory id, modified) pairs already evaluated, so an import interrupted by a crash is evaluated
 * at the next start; and claims with an owner and an expiry, so one replica sends each row and a
 * dead replica's claims are taken over.
 */
export interface NewAlert {
  advisoryId: string;
  modified: string;
  /** What is affected, e.g. "pkg:pypi/name@1.0" or "oci:sha256:...". */
  artefact: string;
  /** The channel's name (notify.webhooks[].name). */
  channel: string;
  /** The alert's content (JSON), rendered for the channel when sent. */
  payload: string;
}

export interface AlertRow extends NewAlert {
  id: number;
  createdAt: number;
  attempts: number;
  /** Not before this time (ms): the backoff after a failure. */
  nextAt: number;
  deliveredAt: number | null;
  lastError: string | null;
  claimOwner: string | null;
  claimUntil: number | null;
}

export interface AdvisoryKey {
  id: string;
  modified: string;
}

export interface AlertStore {
  /** Whether alerting's baseline was taken (the advisories present when channels were first configured). */
  hasAlertBaseline(): Promise<boolean>;
  /** Take the baseline once per store: mark `keys` evaluated without alerts; false (nothing marked) when one was taken already. */
  takeAlertBaseline(keys: AdvisoryKey[], now: number): Promise<boolean>;
  /** Every (advisory id, modified) pair evaluated. */
  listEvaluated(): Promise<AdvisoryKey[]>;
  /** The (artefact, channel) pairs alerted for an advisory id, under any `modified`. */
  alertedArtefacts(advisoryId: string): Promise<{ artefact: string; channel: string }[]>;
  /** In one transaction: insert the alerts (one already present on its key is left alone) and mark `evaluated`; returns how many rows were new. */
  enqueueAlerts(alerts: NewAlert[], evaluated: AdvisoryKey[], now: number): Promise<number>;
  /** Claim up to `limit` rows due at `now` (undelivered, past their backoff, unclaimed or their claim expired) for `owner` until `now + leaseMs`. */
  claimAlerts(owner: string, now: number, leaseMs: number, limit: number): Promise<AlertRow[]>;
  /** Record a claimed row's delivery, or its failure and next attempt; false when `owner` no longer holds the claim. */
  finishAlert(id: number, owner: string, outcome: { deliveredAt: number } | { error: string; nextAt: number }): Promise<boolean>;
  /** Rows, newest first; of one advisory id when given. */
  listAlerts(f: { advisoryId?: string; limit: number }): Promise<AlertRow[]>;
  /** Undelivered rows, and of them those that failed at least once. */
  alertCounts(): Promise<{ pending: number; failing: number }>;
}
