import { loadConfig } from '../config/load.js';
import { HitReader } from '../core/cache-hit.js';
import { openBlobs, openMeta } from '../backends.js';
import { SCANNER_VERSION, type ScanReport } from '../scan/index.js';
import { rescanBlob } from '../hf/rescan.js';
import { AirlockError } from '../core/errors.js';

export interface RescanResult {
  total: number;
  rescanned: number;
  /** Blobs whose new report has refusal findings or imports the old one did not. */
  changed: { sha256: string; format: string; before: string; after: string }[];
  missing: number;
  /** Blobs whose stored copy no longer matched its digest: quarantined, no report kept (fetched again on their next pull). */
  corrupt: number;
}

function summary(r: ScanReport | null): string {
  if (!r) return 'none';
  const bad = r.findings.filter((f) => f.severity !== 'info').map((f) => f.code);
  return `${r.format}; imports ${r.globals.length ? r.globals.join(' ') : 'none'}; findings ${bad.length ? bad.join(' ') : 'none'}`;
}

/**
 * Re-judge every inspected blob in the cache with this scanner version (after a scanner upgrade,
 * or with --all to re-read them all). Decisions apply the current policy to the stored reports at
 * serve time, so a newly refused file stops being served as soon as its report says so.
 */
export async function rescan(configFile: string, opts: { all?: boolean; progress?: (done: number, total: number) => void } = {}): Promise<RescanResult> {
  const loaded = loadConfig(configFile);
  const meta = await openMeta(loaded);
  const store = await openBlobs(loaded, { cleanSpool: false });
  const out: RescanResult = { total: 0, rescanned: 0, changed: [], missing: 0, corrupt: 0 };
  // Only verified bytes are judged: each read is checked against the blob's chunk list; a rotted copy is quarantined and forgotten.
  const hits = new HitReader(store, meta, async (sha256) => {
    await meta.deleteBlob(sha256);
    await store.quarantine(sha256).catch(() => null);
  });
  const read = async (sha256: string) => {
    const blob = await meta.getBlob(sha256);
    if (!blob) return null;
    const file = await hits.bytes(sha256, blob.size);
    if (!file) throw new AirlockError('DIGEST_MISMATCH', `sha256:${sha256} no longer matches its digest`);
    return file;
  };
  try {
    const rows = (await meta.listScans()).filter((r) => opts.all || r.scanner !== SCANNER_VERSION);
    out.total = rows.length;
    let done = 0;
    for (const row of rows) {
      const r = await rescanBlob(meta, read, row.sha256, opts.all);
      if (r.status === 'missing') out.missing++;
      else if (r.status === 'corrupt') out.corrupt++;
      else if (r.status === 'rescanned') {
        out.rescanned++;
        if (summary(r.before) !== summary(r.after))
          out.changed.push({ sha256: row.sha256, format: r.after.format, before: summary(r.before), after: summary(r.after) });
      }
      opts.progress?.(++done, rows.length);
    }
  } finally {
    await meta.close();
  }
  return out;
}
