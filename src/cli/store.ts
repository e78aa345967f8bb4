import { loadConfig } from '../config/load.js';
import { openBlobs, openMeta } from '../backends.js';
import { scrubStore } from '../core/scrub.js';

export interface StoreVerifyResult {
  checked: number;
  bytes: number;
  /** Blobs whose bytes no longer hash to their name (or have another size), and blobs whose file is gone. */
  corrupt: { sha256: string; got: string; size: number; actual: number }[];
  missing: string[];
  /** Whether bad entries were forgotten (their descriptor and file removed, so they are fetched again). */
  repaired: boolean;
}

/**
 * `airlock store verify`: read every stored blob back and check it against its digest and size
 * (disk rot, a file edited behind Airlock's back). With `repair`, a bad or missing blob is
 * forgotten: its descriptor and file are removed and the next pull fetches and verifies it again.
 * Safe beside a running server (it reads; a repair only removes what no longer verifies).
 */
export async function verifyStore(configFile: string, opts: { repair?: boolean; progress?: (done: number) => void } = {}): Promise<StoreVerifyResult> {
  const loaded = loadConfig(configFile);
  const meta = await openMeta(loaded);
  const store = await openBlobs(loaded, { cleanSpool: false });
  try {
    const r = await scrubStore(meta, store, { repair: opts.repair, progress: opts.progress });
    return { ...r, repaired: !!opts.repair };
  } finally {
    await meta.close();
  }
}
