import type { FileBytes } from '../core/bytes.js';
import { AirlockError } from '../core/errors.js';
import type { HfRepoType } from '../names/hf.js';
import type { Logger } from '../obs/logger.js';
import type { HfPolicy } from '../policy/index.js';
import type { Decision } from '../policy/types.js';
import { SCANNER_VERSION, type ScanReport } from '../scan/index.js';
import type { PullLog, ScanStore } from '../storage/meta-store.js';
import { contentDecision, Inspections } from './inspection.js';

/** One cached model file judged again: what the old report and the new one say, or why it could not be read. */
export type Rescanned =
  { status: 'rescanned'; before: ScanReport | null; after: ScanReport } | { status: 'current' } | { status: 'missing' } | { status: 'corrupt' };

/**
 * Scan one cached blob again with this scanner version, from verified bytes only (`read` checks
 * every byte against the blob's chunk list and forgets a rotted copy: null). A blob another
 * replica has already rescanned is left alone (`current`), so a fleet shares the work.
 */
export async function rescanBlob(meta: ScanStore, read: (sha256: string) => Promise<FileBytes | null>, sha256: string, all = false): Promise<Rescanned> {
  const old = await meta.getScan(sha256);
  if (old && old.scanner === SCANNER_VERSION && !all) return { status: 'current' };
  const before = old ? (JSON.parse(old.report) as ScanReport) : null;
  let after: ScanReport;
  // The chunk checks run as the scanner reads: a rotted chunk ends the scan, and no report is kept.
  try {
    const file = await read(sha256);
    if (!file) return { status: 'missing' };
    after = await new Inspections(meta).rescan(sha256, file);
  } catch (e) {
    const code = (e as AirlockError).code;
    if (code === 'NOT_FOUND') return { status: 'missing' };
    if (code === 'DIGEST_MISMATCH') return { status: 'corrupt' };
    throw e;
  }
  return { status: 'rescanned', before, after };
}

/** A cached model file that the current policy allowed under its old report and refuses under its new one. */
export interface NewlyRefused {
  sha256: string;
  /** The repository and path it was last pulled as ("datasets/" prefix for datasets). */
  repo: string;
  path: string;
  decision: Extract<Decision, { allow: false }>;
  before: ScanReport | null;
  after: ScanReport;
}

/**
 * Whether a rescan turned an allowed file into a refused one under the policy in force, judged as
 * the file was last served (its repository and path from the newest pull row with its digest):
 * the verdict depends on both (a repository's profile, a pickle named .safetensors).
 */
export async function newlyRefused(
  policy: HfPolicy,
  pulls: PullLog,
  sha256: string,
  before: ScanReport | null,
  after: ScanReport,
): Promise<NewlyRefused | null> {
  const [row] = await pulls.listPulls({ ecosystem: 'hf', sha256, decision: 'allow', limit: 1 });
  if (!row || !row.filename) return null;
  const type: HfRepoType = row.name.startsWith('datasets/') ? 'dataset' : 'model';
  const repo = type === 'dataset' ? row.name.slice('datasets/'.length) : row.name;
  const now = contentDecision(policy, type, repo, row.filename, sha256, after);
  if (now.allow) return null;
  const then = before ? contentDecision(policy, type, repo, row.filename, sha256, before) : null;
  if (then && !then.allow) return null;
  return { sha256, repo: row.name, path: row.filename, decision: now, before, after };
}

export interface BackgroundRescanDeps {
  meta: ScanStore & PullLog;
  /** Verified random access to a cached blob (BlobCache.fileBytes). */
  read: (sha256: string) => Promise<FileBytes | null>;
  /** The HF policy in force at each decision (reloads apply to files judged after them). */
  policy: () => HfPolicy;
  log: Logger;
  /** Files rescanned per minute at most (hf.rescan_per_minute; 0: never in the background). */
  perMinute: number;
  /** Told of each newly refused file (a log line and a metric are written regardless). */
  onRefused?: (r: NewlyRefused) => void | Promise<void>;
  onProgress?: (r: Rescanned) => void;
}

/**
 * After a scanner upgrade, the files the old scanner judged are judged again in the background, at
 * most `perMinute` a minute so that a large cache does not crowd out serving, one at a time, newest
 * scanner last. Serving never waits for it: a file's next pull scans it anyway when its stored
 * report is from another scanner version. Newly refused files are logged and reported.
 */
export function startBackgroundRescan(d: BackgroundRescanDeps): { stop(): void; done: Promise<number> } {
  let stopped = false;
  let wake: (() => void) | null = null;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      t.unref();
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  const run = async (): Promise<number> => {
    if (d.perMinute <= 0) return 0;
    const stale = (await d.meta.listScans()).filter((r) => r.scanner !== SCANNER_VERSION);
    if (stale.length === 0) return 0;
    d.log.info({ files: stale.length, scanner: SCANNER_VERSION, perMinute: d.perMinute }, 'rescanning cached model files judged by an older scanner');
    const gap = 60_000 / d.perMinute;
    let refused = 0;
    for (const row of stale) {
      if (stopped) break;
      const started = Date.now();
      try {
        const r = await rescanBlob(d.meta, d.read, row.sha256);
        d.onProgress?.(r);
        if (r.status === 'rescanned') {
          const n = await newlyRefused(d.policy(), d.meta, row.sha256, r.before, r.after);
          if (n) {
            refused++;
            d.log.warn(
              { sha256: n.sha256, repo: n.repo, path: n.path, reason: n.decision.reason },
              'a cached model file is refused after rescanning with the new scanner',
            );
            await d.onRefused?.(n);
          }
        }
      } catch (e) {
        d.log.error({ sha256: row.sha256, err: (e as Error).message }, 'background rescan of a cached model file failed');
      }
      const wait = gap - (Date.now() - started);
      if (wait > 0 && !stopped) await pause(wait);
    }
    if (!stopped) d.log.info({ files: stale.length, newlyRefused: refused }, 'background rescan finished');
    return refused;
  };
  const done = run().catch((e) => {
    d.log.error({ err: (e as Error).message }, 'background rescan stopped');
    return 0;
  });
  return {
    stop: () => {
      stopped = true;
      (wake as (() => void) | null)?.();
    },
    done,
  };
}
