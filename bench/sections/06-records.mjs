// Section 6. Record throughput: SQLite, PostgreSQL, three replicas on one PostgreSQL chain; what a
// retention prune does to the event loop (bench/prune-gap.mjs)
import { join } from 'node:path';

export async function run(ctx) {
  const { ROOT, QUICK, work, row, target } = ctx;
  const { startPostgres, recordRate } = await import(join(ROOT, 'bench', 'records.mjs'));
  const { SqliteMetaStore } = await import(join(ROOT, 'dist', 'storage', 'sqlite-meta-store.js'));
  const { PgMetaStore } = await import(join(ROOT, 'dist', 'storage', 'pg-meta-store.js'));
  const { verifyChain } = await import(join(ROOT, 'dist', 'core', 'chain.js'));
  const N = QUICK ? 5_000 : 30_000;
  const sq = new SqliteMetaStore(join(work, 'records.db'));
  const sqRate = await recordRate(ROOT, [sq], N);
  await sq.close();
  row('record: served rows/s (group commit)', 'SQLite (embedded)', { rowsPerSec: sqRate });
  const pgsrv = await startPostgres();
  if (pgsrv) {
    try {
      const one = await PgMetaStore.open(pgsrv.url, { schema: 'one' });
      const pgRate = await recordRate(ROOT, [one], N);
      row('record: served rows/s (group commit)', 'PostgreSQL 15, one replica', { rowsPerSec: pgRate, ratioVsSqlite: pgRate / sqRate });
      await one.close();
      const three = await Promise.all([0, 1, 2].map(() => PgMetaStore.open(pgsrv.url, { schema: 'three' })));
      const threeRate = await recordRate(ROOT, three, Math.floor(N / 3));
      const chain = await verifyChain(three[0]);
      row('record: served rows/s (group commit)', 'PostgreSQL 15, three replicas, one chain', {
        rowsPerSec: threeRate,
        ratioVsOne: threeRate / pgRate,
        chainVerifies: chain.problem ? 'NO' : 'yes',
      });
      target("three replicas on one PostgreSQL chain keep >= 0.8x one replica's record rate", threeRate / pgRate >= 0.8, `${(threeRate / pgRate).toFixed(2)}x`);
      for (const s of three) await s.close();
    } finally {
      pgsrv.stop();
    }
  } else row('record: served rows/s (group commit)', 'PostgreSQL 15', { note: 'postgresql-15 not installed: row skipped' });
  // Pruning 90% of a record as one transaction (before) and a batch at a time, side by side.
  const { pruneGap } = await import(join(ROOT, 'bench', 'prune-gap.mjs'));
  const { one, batched } = await pruneGap(join(ROOT, 'dist'), QUICK ? 200_000 : 1_000_000);
  const gapOf = (r) => ({
    removed: r.removed,
    secs: +r.secs.toFixed(1),
    worstGapMs: Math.round(r.worstGapMs),
    p99GapMs: Math.round(r.p99GapMs),
    verifies: r.verifies,
  });
  row('record: retention prune, event-loop gap (SQLite)', 'one transaction', gapOf(one));
  row('record: retention prune, event-loop gap (SQLite)', batched.label, { ...gapOf(batched), ratioVsOne: +(batched.worstGapMs / one.worstGapMs).toFixed(3) });
  target(
    'a retention prune stops the event loop for at most 0.5 s (one batch)',
    batched.worstGapMs <= 500 && batched.verifies,
    `${Math.round(batched.worstGapMs)} ms`,
  );
}
