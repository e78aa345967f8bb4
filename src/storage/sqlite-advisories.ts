import type Database from 'better-sqlite3';
import type { AdvisoryRow, AdvisoryStore, AdvisorySync, OlderThan, SyncQuery } from './meta-store.js';

interface SyncRow {
  id: number;
  source: string;
  started_at: number;
  finished_at: number;
  outcome: AdvisorySync['outcome'];
  mode: AdvisorySync['mode'];
  changed: number;
  high_water: string | null;
  error: string | null;
  generation: number;
}

export function syncOf(r: SyncRow): AdvisorySync & { id: number; generation: number } {
  return {
    id: r.id,
    source: r.source,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    outcome: r.outcome,
    mode: r.mode,
    changed: r.changed,
    highWater: r.high_water,
    error: r.error,
    generation: r.generation,
  };
}

/**
 * The sources of generations no advisory row has any more (every row of theirs written over since):
 * advisoryChangesSince reads only those of rows it finds, so they are never read again. Kept, the
 * table grew by a row per changed batch of every sync. Each row looks up the generation index
 * (advisories_by_generation); the table holds at most the generations in use. Both stores.
 */
export const PRUNE_SOURCES = `DELETE FROM advisory_generation_sources
  WHERE NOT EXISTS (SELECT 1 FROM advisories WHERE advisories.generation = advisory_generation_sources.generation)`;

/** Recorded syncs kept per source at least: ~3.5 days of failures retried every 5 minutes, 41 days of hourly syncs. */
export const SYNCS_KEPT = 1000;

/**
 * A source's recorded syncs past its newest SYNCS_KEPT ($1: the source), but its newest good sync
 * and its newest good sync with a high-water mark (freshness, the mark: advisories/sync.ts), and
 * those that alone name the source of a generation an advisory row still has (advisoryChangesSince;
 * syncs recorded before advisory_generation_sources, which names every sync's since). Kept whole,
 * the table grew by a row per sync for ever: 288 a day per source while one fails. Both stores,
 * with each sync's last write; it walks the source's index (advisory_syncs_by_source). Kept for any
 * generation in use, 100,000 rows made each write 31 ms (SQLite) to 180 ms (PostgreSQL).
 */
export const PRUNE_SYNCS = `DELETE FROM advisory_syncs WHERE source = $1
  AND id < COALESCE((SELECT id FROM advisory_syncs WHERE source = $1 ORDER BY id DESC LIMIT 1 OFFSET ${SYNCS_KEPT - 1}), 0)
  AND id <> COALESCE((SELECT id FROM advisory_syncs WHERE source = $1 AND outcome <> 'failed' ORDER BY id DESC LIMIT 1), 0)
  AND id <> COALESCE((SELECT id FROM advisory_syncs WHERE source = $1 AND outcome <> 'failed' AND high_water IS NOT NULL ORDER BY id DESC LIMIT 1), 0)
  AND (generation = 0 OR EXISTS (SELECT 1 FROM advisory_generation_sources g WHERE g.generation = advisory_syncs.generation)
    OR NOT EXISTS (SELECT 1 FROM advisories WHERE advisories.generation = advisory_syncs.generation))`;

/** Characters of records advisoryRecords reads between turns of the event loop (as a page of the paged reader, advisory-pages.ts). */
const READ_CHARS = 512 * 1024;

/** Advisories, their generation and the feed syncs in the embedded SQLite database (sqlite-schema.ts). */
export class SqliteAdvisories implements AdvisoryStore {
  constructor(private readonly db: Database.Database) {}

  /**
   * Inside a transaction: upsert (but a row `older` than the stored copy), and give the changed rows
   * the next generation (bumped only when something changed), told as `source`'s.
   */
  private upsert(recs: AdvisoryRow[], source?: string, older?: OlderThan): { ids: string[]; generation: number } {
    const get = this.db.prepare<[string], { record: string; modified: string }>('SELECT record, modified FROM advisories WHERE id = ?');
    const gen = this.db.prepare<[], { generation: number }>('SELECT generation FROM advisory_generation WHERE id = 1');
    const next = gen.get()!.generation + 1;
    const put = this.db.prepare('INSERT OR REPLACE INTO advisories (id, modified, record, generation) VALUES (?, ?, ?, ?)');
    const ids: string[] = [];
    for (const r of recs) {
      const old = get.get(r.id);
      if (old && (old.record === r.record || older?.(r.modified, old.modified, r.id))) continue;
      put.run(r.id, r.modified, r.record, next);
      ids.push(r.id);
    }
    if (ids.length === 0) return { ids, generation: next - 1 };
    this.db.prepare('UPDATE advisory_generation SET generation = ? WHERE id = 1').run(next);
    if (source !== undefined) this.db.prepare('INSERT INTO advisory_generation_sources (generation, source) VALUES (?, ?)').run(next, source);
    return { ids, generation: next };
  }

  async putAdvisories(recs: AdvisoryRow[], source?: string, older?: OlderThan): Promise<number> {
    return this.db.transaction(() => this.upsert(recs, source, older).ids.length).immediate();
  }

  async listAdvisories(): Promise<string[]> {
    return this.db
      .prepare<[], { record: string }>('SELECT record FROM advisories')
      .all()
      .map((r) => r.record);
  }

  async advisoryPage(after: string | null, limit: number, maxChars = Infinity): Promise<{ id: string; record: string }[]> {
    // The page's rows while the records before each come to under maxChars (at least one row). Their
    // sizes from octet_length (UTF-8 bytes, at least the characters), which reads a row's header, not
    // its record: LENGTH counts characters, and read every one of the `limit` records to cut the page
    // after a few, 50-110 ms a page for records of ~200 KB (the event loop stopped at each page).
    const page = `SELECT a.id, a.record FROM (
         SELECT id, SUM(n) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - n AS before
         FROM (SELECT id, octet_length(record) AS n FROM advisories ${after === null ? '' : 'WHERE id > @after'} ORDER BY id LIMIT @limit)) AS w
       JOIN advisories a ON a.id = w.id WHERE w.before < @maxChars ORDER BY a.id`;
    const cap = Number.isFinite(maxChars) ? maxChars : Number.MAX_SAFE_INTEGER;
    const rows = this.db
      .prepare<[object], { id: string; record: string }>(page)
      .all(after === null ? { limit, maxChars: cap } : { after, limit, maxChars: cap });
    // A short page (the last, or one cut by its size): the pages read fill the connection's cache
    // (16 MB), which SQLite empties at the first read after another connection's commit (an import),
    // ~4 ms a MB with the event loop stopped: 60-130 ms. Freed here, it costs ~1 ms.
    if (rows.length < limit) this.db.pragma('shrink_memory');
    return rows;
  }

  async advisoryRecords(ids: string[]): Promise<{ id: string; record: string }[]> {
    // A turn of the event loop once the rows read come to READ_CHARS: read at once, 100 changed records
    // of ~250 KB (a package with many releases) stopped the server's loop for 100-150 ms.
    const get = this.db.prepare<[string], { id: string; record: string }>('SELECT id, record FROM advisories WHERE id = ?');
    const out: { id: string; record: string }[] = [];
    let chars = 0;
    for (const id of new Set(ids)) {
      if (chars >= READ_CHARS) {
        await new Promise<void>((r) => setImmediate(r));
        chars = 0;
      }
      const row = get.get(id);
      if (!row) continue;
      out.push(row);
      chars += row.record.length;
    }
    return out;
  }

  async advisoriesModified(ids: string[]): Promise<Map<string, string>> {
    const get = this.db.prepare<[string], { modified: string }>('SELECT modified FROM advisories WHERE id = ?');
    const out = new Map<string, string>();
    for (const id of ids) {
      const row = get.get(id);
      if (row) out.set(id, row.modified);
    }
    return out;
  }

  async recordAdvisorySync(recs: AdvisoryRow[], s: AdvisorySync, older?: OlderThan): Promise<string[]> {
    return this.db
      .transaction(() => {
        const { ids, generation } = this.upsert(recs, s.source, older);
        this.db
          .prepare(
            `INSERT INTO advisory_syncs (source, started_at, finished_at, outcome, mode, changed, high_water, error, generation)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(s.source, s.startedAt, s.finishedAt, outcomeOf(s, ids), s.mode, s.changed + ids.length, s.highWater, s.error, ids.length ? generation : 0);
        // Once per sync, with its last write (an import by hand adds no source: the next sync prunes what it left).
        this.db.prepare(PRUNE_SOURCES).run();
        this.db.prepare(PRUNE_SYNCS.replaceAll('$1', '@source')).run({ source: s.source });
        return ids;
      })
      .immediate();
  }

  async advisorySyncs(opts: SyncQuery): Promise<(AdvisorySync & { id: number; generation: number })[]> {
    const good = opts.good ? "outcome <> 'failed'" : '1';
    const rows =
      opts.source === undefined
        ? this.db.prepare<[number], SyncRow>(`SELECT * FROM advisory_syncs WHERE ${good} ORDER BY id DESC LIMIT ?`).all(opts.limit)
        : this.db
            .prepare<[string, number], SyncRow>(`SELECT * FROM advisory_syncs WHERE source = ? AND ${good} ORDER BY id DESC LIMIT ?`)
            .all(opts.source, opts.limit);
    return rows.map(syncOf);
  }

  async advisoryGeneration(): Promise<number> {
    return this.db.prepare<[], { generation: number }>('SELECT generation FROM advisory_generation WHERE id = 1').get()!.generation;
  }

  async advisoriesTold(): Promise<number> {
    return this.db.prepare<[], { told: number }>('SELECT told FROM advisory_generation WHERE id = 1').get()!.told;
  }

  async markAdvisoriesTold(generation: number): Promise<void> {
    this.db.prepare('UPDATE advisory_generation SET told = ? WHERE id = 1 AND told < ?').run(generation, generation);
  }

  async advisoryChangesSince(generation: number): Promise<{ ids: string[]; sources: string[]; generation: number }> {
    // Ids and their generations in one statement (as on PostgreSQL): read in two, a write committing
    // between them was applied but its ids were not told to the hooks. From the index on (generation,
    // id) alone, named: left to itself SQLite walked the primary key (for ORDER BY id) over every row,
    // reading each one's generation, 40-60 ms for 20,000 records when nothing or one batch was new.
    const rows = this.db
      .prepare<[number], { id: string; generation: number }>(
        'SELECT id, generation FROM advisories INDEXED BY advisories_by_generation WHERE generation > ? ORDER BY id',
      )
      .all(generation);
    // Nothing changed: no sources to name.
    if (rows.length === 0) return { ids: [], sources: [], generation };
    // Through advisory_syncs_by_generation, and UNION ALL (a generation named twice names one source):
    // advisory_syncs keeps thousands of rows (PRUNE_SYNCS), and a UNION walked all of it for the merge's
    // order, 31-99 ms with 100,000 syncs recorded (before they were pruned) for one changed record.
    const bySync = this.db
      .prepare<[number, number], { source: string; generation: number }>(
        'SELECT source, generation FROM advisory_syncs WHERE generation > ? UNION ALL SELECT source, generation FROM advisory_generation_sources WHERE generation > ?',
      )
      .all(generation, generation);
    const gens = [...new Set(rows.map((r) => r.generation))];
    return { ids: rows.map((r) => r.id), sources: sourcesOf(gens, bySync), generation: Math.max(generation, ...gens) };
  }
}

/** The sources behind the generations that changed rows: a sync's source, or 'import' for a generation no sync recorded (by hand). */
export function sourcesOf(gens: number[], bySync: { source: string; generation: number }[]): string[] {
  const known = new Map(bySync.map((s) => [s.generation, s.source]));
  return [...new Set(gens.map((g) => known.get(g) ?? 'import'))].sort();
}

/** A sync that did not fail changed something or nothing, as its batches (`s.changed`) and its last transaction found. */
export function outcomeOf(s: AdvisorySync, ids: string[]): AdvisorySync['outcome'] {
  return s.outcome === 'failed' ? 'failed' : s.changed + ids.length ? 'changed' : 'unchanged';
}
