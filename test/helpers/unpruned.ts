import { sourcesOf } from '../../src/storage/sqlite-advisories.js';

/**
 * What advisoryChangesSince(g) answers on a store that never pruned advisory_generation_sources: a
 * trigger (SQLite or PostgreSQL, below) copies every source row written into shadow_sources, which
 * nothing prunes; the answer is read from it as the store reads its own table (advisoryChangesSince).
 */
export const SHADOW_SQLITE = `CREATE TABLE shadow_sources (generation INTEGER NOT NULL, source TEXT NOT NULL);
  CREATE TRIGGER shadow_sources_copy AFTER INSERT ON advisory_generation_sources
  BEGIN INSERT INTO shadow_sources (generation, source) VALUES (NEW.generation, NEW.source); END;`;
export const SHADOW_PG = `CREATE TABLE shadow_sources (generation BIGINT NOT NULL, source TEXT NOT NULL);
  CREATE FUNCTION shadow_sources_copy() RETURNS trigger AS $$
  BEGIN INSERT INTO shadow_sources (generation, source) VALUES (NEW.generation, NEW.source); RETURN NEW; END $$ LANGUAGE plpgsql;
  CREATE TRIGGER shadow_sources_copy AFTER INSERT ON advisory_generation_sources FOR EACH ROW EXECUTE FUNCTION shadow_sources_copy();`;

/** The reads an unpruned store makes: every row's id and generation, every sync's and every source row ever written. */
export const UNPRUNED_READS = {
  rows: 'SELECT id, generation FROM advisories ORDER BY id',
  bySync: 'SELECT source, generation FROM advisory_syncs UNION SELECT source, generation FROM shadow_sources',
  kept: 'SELECT generation FROM advisory_generation_sources ORDER BY generation',
  /** What the store itself knows of each generation's source. */
  known: 'SELECT source, generation FROM advisory_syncs UNION SELECT source, generation FROM advisory_generation_sources',
  shadow: 'SELECT generation FROM shadow_sources ORDER BY generation',
};

export interface Unpruned {
  rows: { id: string; generation: number }[];
  bySync: { source: string; generation: number }[];
}

/** advisoryChangesSince(g) as an unpruned store answers it. */
export function unprunedSince(u: Unpruned, g: number): { ids: string[]; sources: string[]; generation: number } {
  const rows = u.rows.filter((r) => r.generation > g);
  if (rows.length === 0) return { ids: [], sources: [], generation: g };
  const gens = [...new Set(rows.map((r) => r.generation))];
  return {
    ids: rows.map((r) => r.id),
    sources: sourcesOf(
      gens,
      u.bySync.filter((s) => s.generation > g),
    ),
    generation: Math.max(g, ...gens),
  };
}

/**
 * Generation by generation (what advisoryChangesSince answers only as a union over g and later, where
 * one mislabelled generation hides among others of the same sources): each generation a row has, with
 * the source the store knows for it and the one an unpruned store knows.
 */
export function perGeneration(u: Unpruned, known: { source: string; generation: number }[]): { store: [number, string][]; unpruned: [number, string][] } {
  const gens = [...new Set(u.rows.map((r) => r.generation))].sort((a, b) => a - b);
  return {
    store: gens.map((g) => [g, sourcesOf([g], known)[0]]),
    unpruned: gens.map((g) => [g, sourcesOf([g], u.bySync)[0]]),
  };
}
