import type { FileBytes } from '../core/bytes.js';
import type { HfRepoType } from '../names/hf.js';
import type { HfPolicy } from '../policy/index.js';
import type { Decision } from '../policy/types.js';
import { nameFindings, scan, SCANNER_VERSION, type ScanReport } from '../scan/index.js';
import type { ScanStore } from '../storage/meta-store.js';

/**
 * Model-file inspection as a service over the scan store, shared by the Hugging Face front-end
 * and `airlock rescan`: a blob's report is the stored one when this scanner version wrote it,
 * else a new scan, which is stored. Decisions apply the current policy to a report at serve time.
 */
export class Inspections {
  constructor(private readonly meta: ScanStore) {}

  /** The stored report for a blob, if the current scanner wrote it. */
  async stored(sha256: string): Promise<ScanReport | null> {
    const row = await this.meta.getScan(sha256);
    return row && row.scanner === SCANNER_VERSION ? (JSON.parse(row.report) as ScanReport) : null;
  }

  /** Judge verified bytes (a cached blob, a git file checked against its blob id): the stored report, else a scan, stored. */
  async inspect(sha256: string, file: FileBytes): Promise<ScanReport> {
    const known = await this.stored(sha256);
    if (known) return known;
    return this.rescan(sha256, file);
  }

  /** Scan verified bytes again with this scanner version and store the report. */
  async rescan(sha256: string, file: FileBytes): Promise<ScanReport> {
    const report = await scan(file);
    await this.keep(sha256, report);
    return report;
  }

  /** Keep a report made elsewhere (the fill's inspector, once the bytes it read have verified). */
  keep(sha256: string, report: ScanReport): Promise<void> {
    return this.meta.putScan(sha256, SCANNER_VERSION, JSON.stringify(report));
  }
}

/** The policy's decision on a report, with the findings its file name adds (a pickle named .safetensors). */
export function contentDecision(policy: HfPolicy, type: HfRepoType, repo: string, path: string, sha256: string, report: ScanReport): Decision {
  return policy.decideContent(type, repo, path, sha256, { ...report, findings: [...report.findings, ...nameFindings(path, report)] });
}

/** The pull record's summary for a reviewed file (policy HfPolicy.reviewed): allowed by its sha256, not inspected. */
export function reviewedSummary(decision: Decision): string {
  return JSON.stringify({ verdict: 'allow', reviewed: decision.rule, inspected: false });
}

/** What goes into the pull record: the format, the verdict, the imports and the findings. */
export function scanSummary(report: ScanReport | null, decision: Decision | null): string | null {
  if (!report) return null;
  return JSON.stringify({
    scanner: report.scanner,
    format: report.format,
    verdict: decision ? (decision.allow ? 'allow' : 'deny') : undefined,
    globals: report.globals.slice(0, 50),
    findings: report.findings.slice(0, 20),
  });
}
