import { InventoryCache } from '../audit/affected.js';
import type { Logger } from '../obs/logger.js';
import type { OsvRecord } from '../policy/advisories.js';
import type { Policy } from '../policy/index.js';
import { advisoryPages } from '../storage/advisory-pages.js';
import type { AdvisoryKey, NewAlert } from '../storage/alert-store.js';
import type { MetaStore } from '../storage/meta-store.js';
import { impactOf } from './impact.js';
import { alertDocument } from './message.js';

/**
 * Filling the outbox (issue 28). Each imported advisory version (id, modified) is evaluated once
 * per store: its impact is computed and its alerts inserted in the same transaction that marks it
 * evaluated, so a crash leaves it unmarked and the next start evaluates it again, and replicas
 * computing the same impact insert one row (the outbox key ignores duplicates).
 *
 * The baseline: the first time channels are configured, every advisory already imported is marked
 * evaluated without alerts (they were judged, and refused, before alerting existed; what was
 * pulled before is on the incident page and in `airlock affected`). Only advisories imported or
 * changed afterwards alert.
 */
export interface EvaluateDeps {
  meta: MetaStore;
  policy: () => Policy;
  channels: string[];
  baseUrl: string;
  log: Logger;
  /** Stop between two advisories (shutdown); the rest stay unmarked for the next start. */
  stopped?: () => boolean;
}

const keyOf = (r: OsvRecord): AdvisoryKey => ({ id: r.id, modified: r.modified ?? '' });
const text = (k: AdvisoryKey) => `${k.id}\0${k.modified}`;

/** The stored records that `keep` keeps, read a page at a time (storage/advisory-pages.ts: the server's event loop turns between pages). */
async function readRecords(meta: MetaStore, keep: (r: OsvRecord) => boolean = () => true): Promise<OsvRecord[]> {
  const out: OsvRecord[] = [];
  for await (const page of advisoryPages<OsvRecord>(meta)) for (const r of page) if (keep(r)) out.push(r);
  return out;
}

/** At start with channels configured: the baseline, once per store (true when this call took it). */
export async function takeBaseline(meta: MetaStore, log: Logger): Promise<boolean> {
  if (await meta.alerts.hasAlertBaseline()) return false;
  const keys = (await readRecords(meta)).map(keyOf);
  const taken = await meta.alerts.takeAlertBaseline(keys, Date.now());
  if (taken) log.info({ advisories: keys.length }, 'alerting configured: the advisories already imported are marked evaluated (no alerts for them)');
  return taken;
}

/** Evaluate every advisory version not yet evaluated; returns how many alerts were new. */
export async function evaluatePending(d: EvaluateDeps): Promise<number> {
  const done = new Set((await d.meta.alerts.listEvaluated()).map(text));
  const todo = await readRecords(d.meta, (r) => !done.has(text(keyOf(r))));
  let added = 0;
  // Each stored inventory parsed once per pass, not once per advisory naming one of its packages.
  const inventories = new InventoryCache(d.meta);
  for (const rec of todo) {
    if (d.stopped?.()) break;
    const prior = new Set((await d.meta.alerts.alertedArtefacts(rec.id)).map((a) => `${a.artefact}\0${a.channel}`));
    const alerts: NewAlert[] = [];
    for (const impact of await impactOf(d.meta, rec, d.policy(), inventories)) {
      const payload = JSON.stringify(alertDocument(rec, impact, d.baseUrl));
      // "Newly affected": an artefact already alerted for this advisory (an earlier version of the record) is not alerted again.
      for (const channel of d.channels)
        if (!prior.has(`${impact.artefact}\0${channel}`))
          alerts.push({ advisoryId: rec.id, modified: rec.modified ?? '', artefact: impact.artefact, channel, payload });
    }
    const n = await d.meta.alerts.enqueueAlerts(alerts, [keyOf(rec)], Date.now());
    if (n)
      d.log.warn({ advisory: rec.id, alerts: n, artefacts: [...new Set(alerts.map((a) => a.artefact))] }, 'advisory affects artefacts served: alerts queued');
    added += n;
  }
  return added;
}
