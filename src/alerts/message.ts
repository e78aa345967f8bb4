import type { OsvRecord } from '../policy/advisories.js';
import type { ClientPulls, Impact } from './impact.js';

/**
 * The alert's content (issue 28): one document per advisory and artefact, stored in the outbox as
 * it was computed, and rendered per channel when sent: as is (json, signed) or as a Slack message.
 */
export interface AlertDocument {
  /** An advisory newly affects an artefact served; or a cached model file is newly refused after a scanner upgrade (alerts/model.ts). */
  event: 'airlock.advisory.affected' | 'airlock.model.refused';
  advisory: {
    id: string;
    modified: string;
    aliases: string[];
    summary: string;
    severity: { label: string | null; score: number | null };
    malicious: boolean;
  };
  package: { ecosystem: string; packages: { name: string; version: string }[]; fixed: string | null };
  artefact: { key: string; kind: Impact['kind']; files: { filename: string | null; sha256: string }[]; repositories: string[]; tags: string[] };
  clients: { client: string; pulls: number; first_pull: string; last_pull: string }[];
  /** The console's incident page of the advisory. */
  incident_url: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function incidentUrl(base: string, id: string): string {
  return `${base.replace(/\/+$/, '')}/-/ui/incidents/${encodeURIComponent(id)}`;
}

/** The clients of an alert as its document gives them (ISO times). */
export function clientLines(clients: ClientPulls[]): AlertDocument['clients'] {
  return clients.map((c) => ({ client: c.client, pulls: c.pulls, first_pull: iso(c.first), last_pull: iso(c.last) }));
}

export function alertDocument(rec: OsvRecord, impact: Impact, baseUrl: string): AlertDocument {
  return {
    event: 'airlock.advisory.affected',
    advisory: {
      id: rec.id,
      modified: rec.modified ?? '',
      aliases: [...new Set([...(rec.aliases ?? []), ...(rec.upstream ?? [])])],
      summary: rec.summary ?? '',
      severity: { label: impact.severity.label ?? null, score: impact.severity.score ?? null },
      malicious: impact.malicious,
    },
    package: { ecosystem: impact.ecosystem, packages: impact.packages, fixed: impact.fixed },
    artefact: { key: impact.artefact, kind: impact.kind, files: impact.files, repositories: impact.repositories, tags: impact.tags },
    clients: clientLines(impact.clients),
    incident_url: incidentUrl(baseUrl, rec.id),
  };
}

/** One line naming the advisory, its severity, the package and versions, and the fix. */
export function headline(d: AlertDocument): string {
  const sev = d.advisory.malicious ? 'MALICIOUS' : (d.advisory.severity.label ?? 'unrated');
  const pkgs = d.package.packages.map((p) => `${p.name} ${p.version}`).join(', ');
  const fix = d.package.fixed ? `fixed in ${d.package.fixed}` : 'no fixed version';
  return `${d.advisory.id} (${sev}${d.advisory.severity.score !== null ? ` ${d.advisory.severity.score}` : ''}) affects ${pkgs} (${d.package.ecosystem}; ${fix})`;
}

// A Slack section holds 3,000 characters: the rest are on the incident page.
const MAX_CLIENT_LINES = 20;

/** A Slack-compatible incoming-webhook body: `text` (the fallback and notification) and `blocks`. */
export function slackMessage(d: AlertDocument): { text: string; blocks: unknown[] } {
  const files = d.artefact.files.map((f) => `${f.filename ? `${f.filename} ` : ''}\`${f.sha256}\``).join('\n');
  const where = d.artefact.repositories.length
    ? `\nrepositories: ${d.artefact.repositories.join(', ')}${d.artefact.tags.length ? `; tags ${d.artefact.tags.join(', ')}` : ''}`
    : '';
  const clients = d.clients
    .slice(0, MAX_CLIENT_LINES)
    .map((c) => `• \`${c.client}\`: ${c.pulls} pull${c.pulls === 1 ? '' : 's'}, ${c.first_pull} to ${c.last_pull}`);
  if (d.clients.length > MAX_CLIENT_LINES) clients.push(`… and ${d.clients.length - MAX_CLIENT_LINES} more clients (incident page)`);
  const text = `Airlock: ${headline(d)}. ${d.clients.length} client${d.clients.length === 1 ? '' : 's'} pulled it. ${d.incident_url}`;
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${headline(d)}*\n${d.advisory.summary.slice(0, 1000)}` } },
      { type: 'section', text: { type: 'mrkdwn', text: `*Artefact* ${d.artefact.key}\n${files}${where}` } },
      { type: 'section', text: { type: 'mrkdwn', text: `*Clients that pulled it*\n${clients.join('\n') || 'none recorded'}` } },
      { type: 'section', text: { type: 'mrkdwn', text: `<${d.incident_url}|Incident page>` } },
    ],
  };
}
