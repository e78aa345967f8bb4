import { ChunkHasher, makeChunkList, usableChunks } from './chunks.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';
import type { AirlockError } from './errors.js';

export interface ScrubResult {
  checked: number;
  bytes: number;
  /** Blobs whose bytes no longer hash to their name (or have another size). */
  corrupt: { sha256: string; got: string; size: number; actual: number }[];
  /** Blobs whose descriptor outlived their file. */
  missing: string[];
  /** Verified blobs whose chunk list was written (they had none, or a wrong one). */
  listed: number;
}

export interface ScrubOptions {
  /** Forget what fails (its bytes go to quarantine): the next pull fetches and verifies it again. */
  repair?: boolean;
  /** Read at most this many bytes per second (0: as fast as the disk goes); a background scrub stays out of the way. */
  bytesPerSecond?: number;
  /** Start after this digest (a background scrub resumes where it stopped). */
  after?: string;
  /** Stop early (server shutdown). */
  signal?: AbortSignal;
  progress?: (checked: number, sha256: string) => void;
  /** Told of each bad blob as it is found (log it loudly). */
  onBad?: (sha256: string, problem: string) => void;
}

/**
 * Read every stored blob back and check it against its digest and size (and write the chunk list
 * of a verified blob that has none, core/chunks.ts): disk rot or a file
 * edited behind Airlock's back is found even for blobs nobody pulls. `airlock store verify` runs
 * it once; the server runs it in the background at cache.scrub_rate. Safe beside a running
 * server: it reads, and a repair removes only what no longer verifies.
 */
export async function scrubStore(meta: BlobIndex, store: BlobStore, opts: ScrubOptions = {}): Promise<ScrubResult> {
  const out: ScrubResult = { checked: 0, bytes: 0, corrupt: [], missing: [], listed: 0 };
  const rate = opts.bytesPerSecond ?? 0;
  const started = Date.now();
  let after = opts.after ?? '';
  for (;;) {
    const page = await meta.listBlobs(after, 500);
    if (page.length === 0) break;
    for (const b of page) {
      if (opts.signal?.aborted) return out;
      after = b.sha256;
      let body;
      try {
        body = await store.open(b.sha256);
      } catch (e) {
        if ((e as AirlockError).code !== 'NOT_FOUND') throw e;
        out.missing.push(b.sha256);
        opts.onBad?.(b.sha256, 'its file is missing');
        if (opts.repair) await meta.deleteBlob(b.sha256);
        continue;
      }
      const h = new ChunkHasher();
      for await (const chunk of body) {
        h.update(chunk as Buffer);
        out.bytes += (chunk as Buffer).length;
        // Paced: sleep whenever reading is ahead of the allowed rate.
        if (rate > 0) {
          const ahead = (out.bytes / rate) * 1000 - (Date.now() - started);
          if (ahead > 5) await new Promise((r) => setTimeout(r, ahead));
        }
      }
      const { digest: got, digests } = h.digest();
      const n = h.bytes;
      out.checked++;
      if (got === b.sha256 && n === b.size) {
        // Verified whole: its chunk list is written if it has none (cached before them) or a wrong one.
        const list = usableChunks(await meta.getChunks(b.sha256), b.sha256, b.size);
        if (!list || !list.digests.equals(digests)) {
          await meta.putChunks(b.sha256, makeChunkList(b.sha256, b.size, digests));
          out.listed++;
        }
      }
      if (got !== b.sha256 || n !== b.size) {
        // Read again before calling it bad: a blob evicted and stored anew while it was read is not rot.
        const now = await meta.getBlob(b.sha256);
        if (now) {
          out.corrupt.push({ sha256: b.sha256, got, size: b.size, actual: n });
          opts.onBad?.(b.sha256, `its bytes hash to sha256:${got} (${n} of ${b.size} bytes)`);
          if (opts.repair) {
            await meta.deleteBlob(b.sha256);
            await store.quarantine(b.sha256);
          }
        }
      }
      opts.progress?.(out.checked, b.sha256);
    }
  }
  return out;
}

/**
 * The server's background scrub: the whole store re-verified at `scrub_rate` MiB/s, every
 * `scrub_every` seconds, what fails quarantined and forgotten (so fetched again on its next pull).
 */
export function backgroundScrub(
  cache: { meta: BlobIndex; store: BlobStore; forget(sha256: string, got: string): Promise<void> },
  cfg: { scrub_rate: number; scrub_every: number },
  log: { info(o: object, m: string): void; error(o: object, m: string): void },
): { stop(): void; done: Promise<void> } {
  const ctl = new AbortController();
  if (cfg.scrub_rate <= 0) return { stop: () => {}, done: Promise.resolve() };
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      t.unref();
      ctl.signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
    });
  const done = (async () => {
    while (!ctl.signal.aborted) {
      const t0 = Date.now();
      try {
        const r = await scrubStore(cache.meta, cache.store, {
          bytesPerSecond: cfg.scrub_rate * 2 ** 20,
          signal: ctl.signal,
          // The cache forgets (and quarantines) a bad blob, and logs it as any rotted read does.
          onBad: (sha256, problem) => void cache.forget(sha256, problem).catch(() => {}),
        });
        if (!ctl.signal.aborted)
          log.info(
            { checked: r.checked, bytes: r.bytes, corrupt: r.corrupt.length, missing: r.missing.length, seconds: Math.round((Date.now() - t0) / 1000) },
            'background scrub finished',
          );
      } catch (e) {
        log.error({ err: (e as Error).message }, 'background scrub failed');
      }
      await sleep(cfg.scrub_every * 1000);
    }
  })();
  return { stop: () => ctl.abort(), done };
}
