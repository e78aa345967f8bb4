// The OSV record as Airlock reads it, and the severity it gives (pure).

/** The OSV fields Airlock reads (https://ossf.github.io/osv-schema/); everything else is kept as stored. */
export interface OsvRecord {
  id: string;
  modified?: string;
  withdrawn?: string;
  aliases?: string[];
  /** The records this one derives from (a Debian or Ubuntu record names its CVE here). */
  upstream?: string[];
  summary?: string;
  details?: string;
  severity?: { type: string; score: string }[];
  affected?: OsvAffected[];
  database_specific?: Record<string, unknown>;
}

export interface OsvAffected {
  package?: { ecosystem?: string; name?: string; purl?: string };
  ranges?: { type?: string; events?: Record<string, string>[] }[];
  versions?: string[];
  severity?: { type: string; score: string }[];
  ecosystem_specific?: Record<string, unknown>;
  database_specific?: Record<string, unknown>;
}
export type SeverityLabel = 'LOW' | 'MEDIUM' | 'HIGH' | 'CRITICAL';
export const ORDER: SeverityLabel[] = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];

/** A record's severity: a CVSS base score when it gives one, and a label. */
export interface Severity {
  score?: number;
  label?: SeverityLabel;
}

const roundUp1 = (x: number) => {
  const i = Math.round(x * 100000);
  return i % 10000 === 0 ? i / 100000 : (Math.floor(i / 10000) + 1) / 10;
};

/** CVSS v3.0/3.1 base score from a vector string (FIRST specification, section 7). */
export function cvss3BaseScore(vector: string): number | undefined {
  const m = /^CVSS:3\.[01]\/(.*)$/.exec(vector.trim());
  if (!m) return undefined;
  const v: Record<string, string> = {};
  for (const part of m[1].split('/')) {
    const [k, val] = part.split(':');
    v[k] = val;
  }
  const AV = { N: 0.85, A: 0.62, L: 0.55, P: 0.2 }[v.AV];
  const AC = { L: 0.77, H: 0.44 }[v.AC];
  const UI = { N: 0.85, R: 0.62 }[v.UI];
  const scopeChanged = v.S === 'C';
  const PR = { N: 0.85, L: scopeChanged ? 0.68 : 0.62, H: scopeChanged ? 0.5 : 0.27 }[v.PR];
  const cia = (x: string) => ({ H: 0.56, L: 0.22, N: 0 })[x];
  const C = cia(v.C);
  const I = cia(v.I);
  const A = cia(v.A);
  if ([AV, AC, UI, PR, C, I, A].some((x) => x === undefined) || (v.S !== 'U' && v.S !== 'C')) return undefined;
  const iss = 1 - (1 - C!) * (1 - I!) * (1 - A!);
  const impact = scopeChanged ? 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 : 6.42 * iss;
  if (impact <= 0) return 0;
  const exploitability = 8.22 * AV! * AC! * PR! * UI!;
  return scopeChanged ? roundUp1(Math.min(1.08 * (impact + exploitability), 10)) : roundUp1(Math.min(impact + exploitability, 10));
}

function labelOf(score: number): SeverityLabel | undefined {
  if (score <= 0) return undefined;
  return score < 4 ? 'LOW' : score < 7 ? 'MEDIUM' : score < 9 ? 'HIGH' : 'CRITICAL';
}

export function severityOf(rec: OsvRecord, a: OsvAffected): Severity {
  for (const s of [...(a.severity ?? []), ...(rec.severity ?? [])]) {
    if (s.type === 'CVSS_V3') {
      const score = cvss3BaseScore(s.score);
      if (score !== undefined) return { score, label: labelOf(score) };
    }
  }
  // Ubuntu's records rate each CVE (negligible, low, medium, high, critical).
  for (const s of [...(a.severity ?? []), ...(rec.severity ?? [])]) {
    if (s.type === 'Ubuntu') {
      const up = s.score.toUpperCase() as SeverityLabel;
      if (ORDER.includes(up)) return { label: up };
    }
  }
  // Debian rates each package's exposure as an urgency (low, medium, high; "unimportant" counts as low).
  const urgency = a.ecosystem_specific?.urgency;
  if (typeof urgency === 'string') {
    const u = urgency.replace(/\*$/, '').toLowerCase();
    const label = u === 'unimportant' ? 'LOW' : (u.toUpperCase() as SeverityLabel);
    if (ORDER.includes(label)) return { label };
  }
  // GHSA records carry a qualitative label; PYSEC may carry one in ecosystem_specific.
  const raw = (rec.database_specific?.severity ?? a.ecosystem_specific?.severity) as string | undefined;
  if (typeof raw === 'string') {
    const up = raw.toUpperCase() === 'MODERATE' ? 'MEDIUM' : (raw.toUpperCase() as SeverityLabel);
    if (ORDER.includes(up)) return { label: up };
  }
  return {};
}
