import type { Logger } from '../obs/logger.js';
import { advisoryBatches } from '../storage/advisory-pages.js';
import type { AdvisoryStore, AdvisorySync, LeaseStore } from '../storage/meta-store.js';
import { advisoriesApplied } from './applied.js';
import type { FeedFetch, FeedSource, OsvFeed } from './feed.js';
import { turn } from '../core/turns.js';
import { normTime, olderThan } from './osv.js';

export interface FeedsOptions {
  meta: AdvisoryStore & LeaseStore;
  feed: OsvFeed;
  sources: FeedSource[];
  /** Time between syncs of a source. */
  intervalMs: number;
  /** Time between checks of the store for advisories imported elsewhere (0: only after this replica's syncs and on demand). */
  pollMs: number;
  /** A source's data older than this is stale: a warning (0: never). */
  maxAgeMs: number;
  /**
   * Put the stored records of `ids` (changed since the generation applied here) into the policy in
   * force (reload.ts applyAdvisoryChanges); returns how many are active. Once `signal` is aborted (a
   * stop) it ends at its next read, throwing.
   */
  apply: (signal: AbortSignal, ids: string[]) => Promise<number>;
  /** This replica, as the owner of a source's sync lease. */
  owner: string;
  log: Logger;
  /** Each sync's outcome (metrics). */
  counted?: (source: string, outcome: AdvisorySync['outcome']) => void;
}

/** Where a source stands, from the syncs recorded by every replica. */
export interface FeedState {
  source: string;
  /** When its newest good (changed or unchanged) sync finished; null: never. */
  syncedAt: number | null;
  ageSeconds: number | null;
  last: (AdvisorySync & { id: number }) | null;
}

/** A failed sync is tried again after at most this long. */
const RETRY_MS = 300_000;
/** A sync lease not renewed for this long was left by a dead replica: another takes it over. */
const LEASE_STALE_MS = 120_000;
const LEASE_RENEW_MS = 20_000;
/** What syncNow gives for a sync a stop cut short (returned, never recorded). */
export const STOPPED = 'stopped before it finished: the advisory feeds were stopped (the server shutting down)';
/**
 * Good syncs looked through for a source's newest high-water mark. Only good ones: among the last
 * 100 syncs of any outcome, a source failing for ~8 h (a retry every 5 minutes) had none left, and
 * lost both its mark (the next sync was a full one) and its freshness (shown as never synced).
 */
const HISTORY = 100;

/**
 * Advisory feeds kept fresh (issue 28). Each tick: every source whose last sync (on any replica,
 * from the store's advisory_syncs) is older than the interval is synced by the one replica that
 * takes its lease; then any change to the stored advisories (this sync, another replica's, an
 * `airlock advisories import` by hand) is applied to the policy in force, and the hooks of
 * applied.ts are told what changed. A sync whose fetch or checks fail is recorded with its error and writes nothing:
 * the advisories in force stay as they were.
 */
export class AdvisoryFeeds {
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | null = null;
  private states = new Map<string, FeedState>();
  /** A pass has looked at the store since start (the first looks whatever the poll). */
  private looked = false;
  private noticing: Promise<string[]> | null = null;
  private noticeAgain: Promise<string[]> | null = null;
  /** The syncs under way, each with what cuts it short (stop). */
  private readonly underWay = new Map<AbortController, Promise<AdvisorySync>>();
  /** Aborted by stop(): no more passes, and what is under way ends at its next step. */
  private readonly halt = new AbortController();

  constructor(private readonly o: FeedsOptions) {}

  /**
   * Start from the generation last told to the hooks (the store's advisoriesTold): changes made while
   * no replica ran, or that a replica applied but died before telling, are applied and told by the
   * first tick, which runs now. The hooks hear of a change at least once.
   */
  start(generation: number): void {
    this.generation = generation;
    const every = this.o.pollMs > 0 ? Math.min(this.o.pollMs, this.o.intervalMs) : Math.min(60_000, this.o.intervalMs);
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
    void this.tick();
  }

  /** Aborted by stop(): a re-read of the advisories under way (apply, a SIGHUP's in server.ts) ends at its next page. */
  get signal(): AbortSignal {
    return this.halt.signal;
  }

  /**
   * No more passes, and a sync under way is cut short (a server's shutdown waited for a whole export's
   * download and writes): its download is abandoned and its writes stop before the next batch
   * (syncNow). A notice under way (after a sync, or a SIGHUP's) is cut short too: its read (of every
   * stored record when most changed: 2 s for 60,000) stops at the next page or record, and it tells
   * nothing (the next start does).
   * Resolves once they have ended (the sync not recorded: sync below).
   */
  async stop(): Promise<void> {
    this.halt.abort();
    clearInterval(this.timer);
    for (const cut of this.underWay.keys()) cut.abort();
    await Promise.allSettled([this.ticking, ...this.underWay.values(), this.noticing, this.noticeAgain]);
  }

  /** One pass (syncs due, then apply what changed); a pass under way is joined, not doubled. */
  tick(): Promise<void> {
    this.ticking ??= this.pass().finally(() => (this.ticking = null));
    return this.ticking;
  }

  private async pass(): Promise<void> {
    let synced = false;
    for (const s of this.o.sources) {
      if (this.halt.signal.aborted) return;
      try {
        synced = (await this.maybeSync(s)) || synced;
      } catch (e) {
        this.o.log.error({ source: s.name, err: (e as Error).message }, 'advisory feed: could not check or record a sync');
      }
    }
    // Stopped: what a sync cut short wrote is applied by the next start (from the generation last told).
    if (this.halt.signal.aborted) return;
    // The first pass looks whatever the poll (start()): with advisories.poll 0 a change not told when the
    // last run stopped (a stop during a sync's last write or its notice) waited for the next sync here.
    if (this.o.pollMs > 0 || synced || !this.looked) {
      this.looked = true;
      await this.notice().catch((e) => this.o.log.error({ err: (e as Error).message }, 'advisories: applying a change failed'));
    }
    await this.refreshStates().catch(() => {});
  }

  /** Sync `s` when due and this replica gets its lease; true when a sync ran here. */
  private async maybeSync(s: FeedSource): Promise<boolean> {
    if (!this.due((await this.o.meta.advisorySyncs({ source: s.name, limit: 1 }))[0])) return false;
    const key = `advisory-sync:${s.name}`;
    if (!(await this.o.meta.takeLease(key, this.o.owner, LEASE_STALE_MS))) return false;
    const renew = setInterval(() => void this.o.meta.renewLease(key, this.o.owner).catch(() => {}), LEASE_RENEW_MS);
    renew.unref();
    try {
      // Another replica may have synced between the check and the lease.
      if (!this.due((await this.o.meta.advisorySyncs({ source: s.name, limit: 1 }))[0]) || this.halt.signal.aborted) return false;
      await this.syncNow(s);
      return true;
    } finally {
      clearInterval(renew);
      await this.o.meta.releaseLease(key, this.o.owner).catch(() => {});
    }
  }

  private due(last: AdvisorySync | undefined): boolean {
    if (!last) return true;
    const wait = last.outcome === 'failed' ? Math.min(this.o.intervalMs, RETRY_MS) : this.o.intervalMs;
    return Date.now() - last.finishedAt >= wait;
  }

  /**
   * Sync one source now: incremental from the newest good sync's high-water mark when the source
   * allows it, else (or when too much changed) the whole all.zip; verified whole before anything is
   * written, then written in batches (storage/advisory-pages.ts) with a turn of the event loop
   * between them, the last batch in one transaction with the sync's record. Returns the sync as recorded.
   * A stop cuts it short (below).
   */
  syncNow(s: FeedSource): Promise<AdvisorySync> {
    const cut = new AbortController();
    const done = this.sync(s, cut.signal).finally(() => this.underWay.delete(cut));
    this.underWay.set(cut, done);
    return done;
  }

  private async sync(s: FeedSource, signal: AbortSignal): Promise<AdvisorySync> {
    const startedAt = Date.now();
    const history = await this.o.meta.advisorySyncs({ source: s.name, limit: HISTORY, good: true });
    const mark = history.find((h) => h.highWater)?.highWater ?? null;
    let mode: AdvisorySync['mode'] = s.incremental && mark ? 'incremental' : 'full';
    let sync: AdvisorySync;
    let changed = 0;
    try {
      let got: FeedFetch | null = mode === 'incremental' ? await this.o.feed.changed(s, mark!, (ids) => this.o.meta.advisoriesModified(ids), signal) : null;
      if (!got) {
        mode = 'full';
        got = await this.o.feed.full(s, signal);
      }
      // Never past this sync's start: a time within the clock skew (feed.ts) is fetched again next time, not held as the mark.
      const began = normTime(new Date(startedAt).toISOString())!;
      const fetched = got.highWater && got.highWater > began ? began : got.highWater;
      const highWater = mark && (!fetched || fetched < mark) ? mark : fetched;
      // A full export of 20,000 records written in one transaction stopped the server's event loop
      // (SQLite) for 0.3-0.75 s, its JSON for ~0.1 s more. The mark is recorded with the last batch
      // only: a sync cut short between batches (a stop, a store error) is taken again whole next time.
      // A stale mirror or a replayed all.zip must not roll a record back (un-withdraw it, narrow its
      // ranges): a row older than the stored copy is skipped, judged in the write's own transaction.
      const batches = [...advisoryBatches(got.records)];
      for (const b of batches.slice(0, -1)) {
        signal.throwIfAborted();
        changed += await this.o.meta.putAdvisories(b, s.name, olderThan);
        await turn();
      }
      signal.throwIfAborted();
      sync = { source: s.name, startedAt, finishedAt: Date.now(), outcome: 'changed', mode, changed, highWater, error: null };
      changed += (await this.o.meta.recordAdvisorySync(batches[batches.length - 1] ?? [], sync, olderThan)).length;
      sync = { ...sync, outcome: changed ? 'changed' : 'unchanged', changed };
      this.o.log.info({ source: s.name, mode, records: got.records.length, changed, requests: got.requests, highWater }, 'advisory feed synced');
    } catch (e) {
      // What earlier batches wrote stays (each record no older than the one it replaced), and is counted.
      const kept = changed ? 'the batches written are kept, the rest comes with the next sync' : 'the advisories in force are kept';
      if (signal.aborted) {
        // Cut short by a stop (whatever the abandoned download threw): not recorded. A failed sync's row
        // would hold the next start back for the retry delay, count a failure in the metrics and show on
        // every replica's readiness until the next good sync, at every rolling restart. The source stays
        // due, so the next start (or another replica) takes it at once; its batches' generations are the
        // source's (advisory_generation_sources), and the mark did not move.
        this.o.log.info({ source: s.name, mode, changed }, `advisory feed sync stopped with the feeds (not recorded; taken again at the next start); ${kept}`);
        return { source: s.name, startedAt, finishedAt: Date.now(), outcome: 'failed', mode, changed, highWater: mark, error: STOPPED };
      }
      const error = (e as Error).message;
      sync = { source: s.name, startedAt, finishedAt: Date.now(), outcome: 'failed', mode, changed, highWater: mark, error };
      this.o.log.error({ source: s.name, mode, err: error, changed }, `advisory feed sync failed${changed ? ' while writing' : ''}; ${kept}`);
      await this.o.meta.recordAdvisorySync([], sync);
    }
    this.o.counted?.(s.name, sync.outcome);
    return sync;
  }

  /**
   * Apply what changed in the store since the generation in force here (a sync on any replica, an
   * import by hand): put the changed records into the policy, then tell the hooks. Returns the ids.
   */
  notice(): Promise<string[]> {
    // One at a time (the timer, a sync, SIGHUP), so no change is told twice. A caller while one is
    // under way may have changed the store after it looked (a sync's last batches, written while a
    // SIGHUP's re-read ran): it gets a second pass once that one ends (shared by every such caller).
    // Joined instead, the sync's last batches stayed out of the policy until the next change.
    if (!this.noticing) return (this.noticing = this.applyChanges().finally(() => (this.noticing = null)));
    this.noticeAgain ??= this.noticing
      .catch(() => [])
      .then(() => {
        this.noticeAgain = null;
        return this.notice();
      });
    return this.noticeAgain;
  }

  private async applyChanges(): Promise<string[]> {
    const now = await this.o.meta.advisoryGeneration();
    if (now <= this.generation) return [];
    // Stretches of their own: after a sync, its last write, the ids changed (on SQLite ~50 ms when all
    // of 20,000 records changed; well under 1 ms for a batch) and the first read of the changed
    // records ran as one of ~100 ms.
    await turn();
    const { ids, sources, generation } = await this.o.meta.advisoryChangesSince(this.generation);
    await turn();
    let active: number;
    try {
      active = await this.o.apply(this.halt.signal, ids);
    } catch (e) {
      // Cut short by a stop: nothing told, the mark of what was told stays; the next start's first pass tells it.
      if (this.halt.signal.aborted) return [];
      throw e;
    }
    this.generation = Math.max(generation, this.generation);
    this.o.log.info({ changed: ids.length, sources, active, generation: this.generation }, 'advisories changed in the store: applied');
    if (ids.length) await advisoriesApplied({ changedIds: ids, source: sources.join(',') }, this.o.log);
    await this.o.meta.markAdvisoriesTold(this.generation);
    return ids;
  }

  /** Each source's freshness as last read from the store (metrics, the console, /-/readyz). */
  feeds(): FeedState[] {
    const now = Date.now();
    return this.o.sources.map((s) => {
      const st = this.states.get(s.name);
      return {
        source: s.name,
        syncedAt: st?.syncedAt ?? null,
        ageSeconds: st?.syncedAt ? Math.max(0, (now - st.syncedAt) / 1000) : null,
        last: st?.last ?? null,
      };
    });
  }

  /** Warnings for /-/readyz: a source older than the limit, or that has never synced and failed. */
  warnings(): string[] {
    const out: string[] = [];
    for (const f of this.feeds()) {
      const err = f.last?.outcome === 'failed' ? `; last error: ${f.last.error}` : '';
      if (f.syncedAt === null) {
        if (f.last) out.push(`advisory source ${f.source} has never synced${err}`);
      } else if (this.o.maxAgeMs > 0 && f.ageSeconds! * 1000 > this.o.maxAgeMs) {
        out.push(`advisory source ${f.source} last synced ${Math.round(f.ageSeconds!)} s ago, over advisories.max_age (${this.o.maxAgeMs / 1000} s)${err}`);
      }
    }
    return out;
  }

  private async refreshStates(): Promise<void> {
    for (const s of this.o.sources) {
      const [last] = await this.o.meta.advisorySyncs({ source: s.name, limit: 1 });
      const [good] = await this.o.meta.advisorySyncs({ source: s.name, limit: 1, good: true });
      this.states.set(s.name, { source: s.name, syncedAt: good?.finishedAt ?? null, ageSeconds: null, last: last ?? null });
    }
  }
}
