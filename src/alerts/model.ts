import type { NewlyRefused } from '../hf/rescan.js';
import { SCANNER_VERSION } from '../scan/index.js';
import type { NewAlert } from '../storage/alert-store.js';
import type { MetaStore } from '../storage/meta-store.js';
import { eachPull } from '../storage/pull-pages.js';
import { ClientTally } from './impact.js';
import { clientLines, type AlertDocument } from './message.js';

/**
 * A cached model file newly refused after a scanner upgrade (hf/rescan.ts) as an alert: the same
 * outbox, channels and delivery as an advisory's, keyed by (scanner version, file), so replicas
 * rescanning the same file queue one alert. Its "advisory" is the scanner version; its link is the
 * console's page of the file, with every pull of it.
 */
export function modelAlertDocument(n: NewlyRefused, clients: AlertDocument['clients'], baseUrl: string): AlertDocument {
  const url = `${baseUrl.replace(/\/+$/, '')}/-/ui/artefact?ecosystem=hf&name=${encodeURIComponent(n.repo)}&sha256=${n.sha256}`;
  return {
    event: 'airlock.model.refused',
    advisory: {
      id: SCANNER_VERSION,
      modified: '',
      aliases: [],
      summary: `a cached model file served before is refused after rescanning with ${SCANNER_VERSION}: ${n.decision.reason}`,
      severity: { label: 'refused', score: null },
      malicious: false,
    },
    package: { ecosystem: 'hf', packages: [{ name: `${n.repo}/${n.path}`, version: n.sha256.slice(0, 12) }], fixed: null },
    artefact: { key: `hf:sha256:${n.sha256}`, kind: 'hf', files: [{ filename: n.path, sha256: n.sha256 }], repositories: [n.repo], tags: [] },
    clients,
    incident_url: url,
  };
}

/** Queue the alert of a newly refused model file on every channel; returns how many rows were new. */
export async function queueModelRefusal(meta: MetaStore, n: NewlyRefused, channels: string[], baseUrl: string, now = Date.now()): Promise<number> {
  const served = new ClientTally();
  await eachPull(meta, { ecosystem: 'hf', sha256: n.sha256, decision: 'allow' }, (p) => served.add(p));
  const payload = JSON.stringify(modelAlertDocument(n, clientLines(served.list()), baseUrl));
  const alerts: NewAlert[] = channels.map((channel) => ({ advisoryId: SCANNER_VERSION, modified: '', artefact: `hf:sha256:${n.sha256}`, channel, payload }));
  return meta.alerts.enqueueAlerts(alerts, [], now);
}
