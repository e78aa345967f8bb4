import { describe, expect, it } from 'vitest';
import type { AdvisoryRow, AdvisoryStore, AdvisorySync } from '../../src/storage/meta-store.js';
import { rng } from '../helpers/advisory-rig.js';

/** A fresh advisory store, with what the contract reads of its tables (SQL both backends speak). */
export interface RawAdvisoryStore {
  store: AdvisoryStore;
  rows(sql: string): Promise<Record<string, unknown>[]>;
  /** From now on no row of advisory_generation_sources is ever deleted (a trigger): the store as it was before it pruned them. */
  keepEverySource(): Promise<void>;
}

/**
 * The source of each generation (advisory_generation_sources) is kept only while an advisory row
 * still has that generation: a table that grew by a row per changed batch of every sync (~80 per
 * full sync of osv.dev's PyPI export) and was never pruned. What advisoryChangesSince answers, ids
 * and sources, from any generation, is what the unpruned store answers.
 */
export function advisorySourcesContract(name: string, fresh: () => Promise<RawAdvisoryStore>): void {
  describe(`AdvisoryStore contract (generation sources kept only while in use): ${name}`, () => {
    it('after many syncs, imports by hand and failed syncs: the sources held are the generations in use, and every answer is the unpruned one', async () => {
      const pruned = await fresh();
      const kept = await fresh();
      await kept.keepEverySource();
      const r = rng(28);
      const ids = Array.from({ length: 150 }, (_, i) => `PYSEC-2026-${String(i).padStart(3, '0')}`);
      let version = 0;
      const some = (n: number): AdvisoryRow[] => {
        const pick = new Set(Array.from({ length: n }, () => ids[Math.floor(r() * ids.length)]));
        return [...pick].map((id) => ({ id, modified: String(++version), record: JSON.stringify({ id, v: version }) }));
      };
      const both = async (fn: (s: AdvisoryStore) => Promise<unknown>) => {
        const [a, b] = await Promise.all([fn(pruned.store), fn(kept.store)]);
        expect(a).toEqual(b);
      };
      const inUse = async (x: RawAdvisoryStore) =>
        (await x.rows('SELECT DISTINCT generation FROM advisories ORDER BY generation')).map((g) => Number(g.generation));
      const held = async (x: RawAdvisoryStore) =>
        (await x.rows('SELECT generation FROM advisory_generation_sources ORDER BY generation')).map((g) => Number(g.generation));
      for (let step = 0; step < 80; step++) {
        const kind = r();
        const source = r() < 0.5 ? 'osv-pypi' : 'osv-debian';
        const sync: AdvisorySync = { source, startedAt: step, finishedAt: step, outcome: 'changed', mode: 'full', changed: 0, highWater: null, error: null };
        if (kind < 0.15) {
          // By hand: no source.
          const recs = some(1 + Math.floor(r() * 40));
          await both((s) => s.putAdvisories(recs));
        } else if (kind < 0.25) {
          // A sync that changed nothing.
          await both((s) => s.recordAdvisorySync([], { ...sync, outcome: 'unchanged' }));
        } else {
          // A sync in batches of 15, the last with its record; one in eight fails before its last batch.
          const recs = some(1 + Math.floor(r() * 70));
          const batches = Array.from({ length: Math.ceil(recs.length / 15) }, (_, i) => recs.slice(i * 15, i * 15 + 15));
          for (const b of batches.slice(0, -1)) await both((s) => s.putAdvisories(b, source));
          if (r() < 0.125) await both((s) => s.recordAdvisorySync([], { ...sync, outcome: 'failed', error: 'disk full' }));
          else await both((s) => s.recordAdvisorySync(batches.at(-1)!, sync));
        }
        if (kind >= 0.15) {
          const gens = await inUse(pruned);
          expect((await held(pruned)).every((g) => gens.includes(g))).toBe(true);
        }
      }
      // A last sync, so the last step's pruning is seen whatever it was.
      const last: AdvisorySync = {
        source: 'osv-pypi',
        startedAt: 99,
        finishedAt: 99,
        outcome: 'unchanged',
        mode: 'full',
        changed: 0,
        highWater: null,
        error: null,
      };
      await both((s) => s.recordAdvisorySync([], last));
      const gens = await inUse(pruned);
      expect((await held(pruned)).every((g) => gens.includes(g))).toBe(true);
      const generation = await pruned.store.advisoryGeneration();
      expect(await kept.store.advisoryGeneration()).toBe(generation);
      // The walk wrote over whole generations (the test is not vacuous), and the store let go of their sources.
      expect((await held(kept)).length).toBeGreaterThan((await held(pruned)).length + 20);
      for (let g = 0; g <= generation; g++) await both((s) => s.advisoryChangesSince(g));
    });
  });
}
