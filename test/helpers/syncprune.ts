import { expect } from 'vitest';
import { clearAdvisoriesAppliedHooks, onAdvisoriesApplied } from '../../src/advisories/applied.js';
import type { AdvisoryRow, AdvisoryStore, AdvisorySync, LeaseStore } from '../../src/storage/meta-store.js';
import { SYNCS_KEPT } from '../../src/storage/sqlite-advisories.js';
import { feedsOver, rng } from './advisory-rig.js';

/**
 * What the attacks on advisory_syncs' pruning share (test/unit/break-syncprune.test.ts,
 * test/integration/break-syncprune-pg.test.ts): a model of what advisoryChangesSince must answer
 * with no pruning at all, and a seeded run of syncs, failures, a sync's batches and imports by hand.
 */
export type Store = AdvisoryStore & LeaseStore;

/** The store as if nothing were ever pruned: each id's record and generation, each generation's source. */
export class ChangesModel {
  readonly stored = new Map<string, string>();
  readonly rowGen = new Map<string, number>();
  readonly genSource = new Map<number, string>();
  gen = 0;

  /** A write as both stores do it without `older`: a row whose record differs (or is new) gets the next generation. */
  write(recs: AdvisoryRow[], source?: string): string[] {
    const next = this.gen + 1;
    const ids: string[] = [];
    for (const r of recs) {
      if (this.stored.get(r.id) === r.record) continue;
      this.stored.set(r.id, r.record);
      this.rowGen.set(r.id, next);
      ids.push(r.id);
    }
    if (ids.length) {
      this.gen = next;
      this.genSource.set(next, source ?? 'import');
    }
    return ids;
  }

  since(g: number): { ids: string[]; sources: string[]; generation: number } {
    const ids = [...this.rowGen]
      .filter(([, x]) => x > g)
      .map(([id]) => id)
      .sort();
    const gens = ids.map((id) => this.rowGen.get(id)!);
    return { ids, sources: [...new Set(gens.map((x) => this.genSource.get(x)!))].sort(), generation: Math.max(g, ...gens) };
  }
}

export interface RunCounts {
  /** Syncs recorded per source. */
  syncs: Map<string, number>;
}

const base = (source: string, i: number): AdvisorySync => ({
  source,
  startedAt: 1_000_000 + i,
  finishedAt: 1_000_001 + i,
  outcome: 'changed',
  mode: 'incremental',
  changed: 0,
  highWater: '2026-01-01T00:00:00.000000000Z',
  error: null,
});

/**
 * `ops` seeded operations over `stores` (each op on one of them at random: replicas of one database),
 * mirrored in `model`. osv-a syncs most and fails most (it is pruned); osv-b and osv-c sync rarely
 * (never pruned: fewer than SYNCS_KEPT); batches of a sync and imports by hand write over what the
 * syncs wrote, so some of osv-a's old generations fall out of use and others stay in use for long.
 * Every `checkEvery` ops, `check` is called. Without `imports` there is no import by hand: a generation
 * whose source was lost is then told as 'import', and advisoryChangesSince's sources (a union over the
 * generations after g) show it.
 */
export async function run(
  stores: Store[],
  model: ChangesModel,
  seed: number,
  ops: number,
  check: (op: number) => Promise<void>,
  checkEvery: number,
  o: { imports?: boolean } = {},
): Promise<RunCounts> {
  const r = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const syncs = new Map<string, number>();
  let v = 0;
  const recs = (n: number): AdvisoryRow[] =>
    Array.from({ length: n }, () => {
      // Most from a few ids written over often; some from many seldom written again (their generations stay in use for long).
      const id = r() < 0.7 ? `ID-${String(Math.floor(r() * 60)).padStart(2, '0')}` : `RARE-${String(Math.floor(r() * 2000)).padStart(4, '0')}`;
      // A third of the time the record as it is stored (no change), else a new version.
      const same = model.stored.get(id);
      const record = same !== undefined && r() < 0.33 ? same : JSON.stringify({ id, v: ++v });
      return { id, modified: '2026-01-01T00:00:00Z', record };
    });
  for (let i = 0; i < ops; i++) {
    const s = pick(stores);
    const x = r();
    if (x < 0.8) {
      const source = x < 0.68 ? 'osv-a' : x < 0.78 ? 'osv-b' : 'osv-c';
      // osv-a fails four times in five; a failed sync's last transaction writes nothing.
      const failed = source === 'osv-a' ? r() < 0.8 : r() < 0.2;
      const rows = failed ? [] : recs(Math.floor(r() * 4));
      const sync: AdvisorySync = failed ? { ...base(source, i), outcome: 'failed', error: 'down' } : base(source, i);
      const want = model.write(rows, source);
      expect((await s.recordAdvisorySync(rows, sync)).sort()).toEqual([...want].sort());
      syncs.set(source, (syncs.get(source) ?? 0) + 1);
    } else if (x < 0.9 || !o.imports) {
      // An earlier batch of a sync (advisory_generation_sources names its generation).
      const rows = recs(1 + Math.floor(r() * 3));
      const source = pick(['osv-a', 'osv-b']);
      const want = model.write(rows, source);
      expect(await s.putAdvisories(rows, source)).toBe(want.length);
    } else {
      const rows = recs(1 + Math.floor(r() * 3));
      const want = model.write(rows);
      expect(await s.putAdvisories(rows)).toBe(want.length);
    }
    if ((i + 1) % checkEvery === 0) await check(i + 1);
  }
  return { syncs };
}

/** advisoryChangesSince(g) as the model says, for each g given. */
export async function expectChanges(s: Store, model: ChangesModel, gs: number[]): Promise<void> {
  for (const g of gs) expect(await s.advisoryChangesSince(g), `advisoryChangesSince(${g})`).toEqual(model.since(g));
}

/** What the hooks of a replica that last told `g` are told at its start (advisories/applied.ts). */
export async function toldFrom(s: Store, g: number): Promise<string[]> {
  const told: string[] = [];
  clearAdvisoriesAppliedHooks();
  onAdvisoriesApplied(async (c) => void told.push(c.source));
  const feeds = feedsOver(s, []);
  try {
    feeds.start(g);
    await feeds.tick();
  } finally {
    await feeds.stop();
    clearAdvisoriesAppliedHooks();
  }
  return told;
}

export { SYNCS_KEPT };

/** The cost attacks' failed sync of osv-pypi and its mark (both stores). */
export const costRig: { hw: string; failed: AdvisorySync } = {
  hw: '2026-01-01T00:00:00.000000000Z',
  failed: {
    source: 'osv-pypi',
    startedAt: 1,
    finishedAt: 2,
    outcome: 'failed',
    mode: 'incremental',
    changed: 0,
    highWater: '2026-01-01T00:00:00.000000000Z',
    error: 'down',
  },
};
