import { createHash } from 'node:crypto';
import { loadConfig } from '../config/load.js';
import { openBlobs, openMeta } from '../backends.js';
import type { AirlockError } from '../core/errors.js';

export interface StoreVerifyResult {
  checked: number;
  bytes: number;
  /** Blobs whose bytes no longer hash to their name (or have another size), and blobs whose file is gone. */
  corrupt: { sha256: string; got: string | null; size: number; actual: number | null }[];
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
  const meta = openMeta(loaded);
  const store = await openBlobs(loaded, { cleanSpool: false });
  const out: StoreVerifyResult = { checked: 0, bytes: 0, corrupt: [], missing: [], repaired: !!opts.repair };
  try {
    let after = '';
    for (;;) {
      const page = await meta.listBlobs(after, 500);
      if (page.length === 0) break;
      for (const b of page) {
        after = b.sha256;
        let body;
        try {
          body = await store.open(b.sha256);
        } catch (e) {
          if ((e as AirlockError).code !== 'NOT_FOUND') throw e;
          out.missing.push(b.sha256);
          if (opts.repair) await meta.deleteBlob(b.sha256);
          continue;
        }
        const h = createHash('sha256');
        let n = 0;
        for await (const chunk of body) {
          h.update(chunk as Buffer);
          n += (chunk as Buffer).length;
        }
        const got = h.digest('hex');
        out.checked++;
        out.bytes += n;
        if (got !== b.sha256 || n !== b.size) {
          out.corrupt.push({ sha256: b.sha256, got, size: b.size, actual: n });
          if (opts.repair) {
            await meta.deleteBlob(b.sha256);
            await store.delete(b.sha256);
          }
        }
        opts.progress?.(out.checked);
      }
    }
    return out;
  } finally {
    await meta.close();
  }
}
