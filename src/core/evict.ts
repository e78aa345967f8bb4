import type { BlobStore } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';

/**
 * Forget the least recently used blobs until `toFree` bytes are freed (or none is left to evict),
 * never one that is `busy` (read or filled now). The index row goes first, so a blob is never
 * served after its file is deleted; a file that cannot be deleted is said through `failed`.
 */
export async function evictLeastUsed(
  meta: BlobIndex,
  store: BlobStore,
  toFree: number,
  busy: (sha256: string) => boolean,
  failed: (sha256: string) => (e: unknown) => void,
): Promise<{ count: number; freed: number }> {
  let count = 0;
  let freed = 0;
  let skipped = 0;
  while (freed < toFree) {
    const page = await meta.leastRecentlyUsed(skipped + 256);
    const candidates = page.slice(skipped);
    if (candidates.length === 0) break;
    for (const b of candidates) {
      if (freed >= toFree) break;
      if (busy(b.sha256)) {
        skipped++;
        continue;
      }
      await meta.deleteBlob(b.sha256);
      await store.delete(b.sha256).catch(failed(b.sha256));
      freed += b.size;
      count++;
    }
    if (page.length < skipped + 256) break;
  }
  return { count, freed };
}
