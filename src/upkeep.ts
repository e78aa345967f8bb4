import type { Config } from './config/schema.js';
import type { BlobCache } from './core/cache.js';
import { prunePulls } from './core/chain.js';
import type { Recorder } from './core/records.js';
import { backgroundScrub } from './core/scrub.js';
import type { Logger } from './obs/logger.js';
import type { MetaStore } from './storage/meta-store.js';

const DAY = 86_400_000;
/** Time between measures of the disk's free space (cache.min_free_bytes) besides those at each fill. */
const DISK_EVERY_MS = 10_000;
/** Time between prunes of the quarantine by age and size (cache.quarantine_max_days / _bytes) besides those at each new rot. */
const QUARANTINE_EVERY_MS = 3_600_000;

/**
 * The serving cache's upkeep at start: one eviction pass (in the background), the background
 * scrub, a measure of the disk's free space every 10 s (evicting when it is below its reserve:
 * the record growing on the same disk takes space from the cache, never the other way), all
 * stopped on close, and a warning when shared metadata meets local blobs. The quarantine is pruned
 * by age and size at start and hourly, not only when another blob rots.
 */
export function startCacheUpkeep(cache: BlobCache, config: Config, log: Logger): { stop(): void } {
  void cache.evict().catch((e) => log.error({ err: (e as Error).message }, 'cache eviction failed'));
  const scrubber = backgroundScrub(cache, config.cache, log);
  const disk = setInterval(() => void cache.checkDisk().catch((e) => log.error({ err: (e as Error).message }, 'disk free-space check failed')), DISK_EVERY_MS);
  disk.unref();
  const prune = () =>
    void cache.store
      .pruneQuarantine?.()
      .then((gone) => gone.length && log.info({ removed: gone.length }, 'quarantined copies past cache.quarantine_max_days / _bytes removed'))
      .catch((e) => log.error({ err: (e as Error).message }, 'quarantine pruning failed'));
  prune();
  const quarantine = setInterval(prune, QUARANTINE_EVERY_MS);
  quarantine.unref();
  if (config.storage.meta === 'postgres' && config.storage.blobs === 'fs') {
    log.warn({}, 'metadata is shared (PostgreSQL) but blobs are in a local directory: run one replica, or share blobs too (storage.blobs: s3)');
  }
  return {
    stop: () => {
      clearInterval(disk);
      clearInterval(quarantine);
      scrubber.stop();
    },
  };
}

/**
 * Record retention (records.retention_days; 0 keeps everything): pull records older than that are
 * pruned from start (in the background: a record long past retention takes many batches, and the
 * server serves meanwhile) and then daily, each batch recorded by a chained audit/prune event.
 * `stop()` ends a prune under way after its current batch and resolves once it has.
 */
export function startRetention(records: Config['records'], d: { recorder: Recorder; meta: MetaStore; log: Logger }): { stop(): Promise<void> } {
  const stopping = new AbortController();
  let running: Promise<void> = Promise.resolve();
  const prune = async () => {
    if (records.retention_days <= 0 || stopping.signal.aborted) return;
    await d.recorder.flush();
    const n = await prunePulls(d.meta, Date.now() - records.retention_days * DAY, 'airlock-retention', undefined, stopping.signal);
    if (n > 0) d.log.info({ removed: n, retentionDays: records.retention_days }, 'pull records pruned (a chained audit/prune event records it)');
  };
  const start = () => {
    running = running.then(() => prune().catch((e) => d.log.error({ err: (e as Error).message }, 'record pruning failed')));
  };
  start();
  const timer = setInterval(start, DAY);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      stopping.abort();
      return running;
    },
  };
}
