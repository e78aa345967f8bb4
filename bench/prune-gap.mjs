// node bench/prune-gap.mjs [ROWS]: what a retention prune does to the server's event loop (SQLite);
// also section 6 of `npm run bench` (pruneGap below).
// A record of ROWS rows (default 1,000,000, ~10,000 a day) is written with the store's own schema,
// then 90% of it is pruned with the server's settings (the checkpoint thread on), once in a single
// transaction (how every prune ran before) and once a batch at a time (core/chain.ts PRUNE_BATCH),
// each on a fresh copy. A 5 ms timer measures the event loop meanwhile: the longest gap is how long
// every client of the server would have waited. Prints both rows and their ratio; a program, not a test.
import Database from 'better-sqlite3';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const STEP = 8640; // ms between rows: 10,000 a day

/** Both prunes of a ROWS-row record with `dist`'s code; returns { one, batched } rows. */
export async function pruneGap(dist, ROWS) {
  const { SqliteMetaStore } = await import(join(dist, 'storage', 'sqlite-meta-store.js'));
  const chain = await import(join(dist, 'core', 'chain.js'));
  const dir = mkdtempSync(join(tmpdir(), 'airlock-prune-gap-'));
  try {
    const seed = join(dir, 'seed.db');
    new SqliteMetaStore(seed).close();
    const db = new Database(seed);
    const ins = db.prepare(
      "INSERT INTO pulls (ts, client, ecosystem, name, version, filename, sha256, cache, decision) VALUES (?, ?, 'pypi', ?, '1.0', 'f-1.0-py3-none-any.whl', ?, 'hit', 'allow')",
    );
    db.transaction(() => {
      for (let i = 0; i < ROWS; i++) ins.run(1000 + i * STEP, `ci-${i % 50}`, `p${i % 500}`, (i % 1000).toString(16).padStart(64, '0'));
    })();
    db.exec('INSERT INTO pull_days SELECT (ts / 86400000) * 86400000, ecosystem, decision, COUNT(*) FROM pulls GROUP BY 1, 2, 3');
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();

    async function run(label, maxRows) {
      const path = join(dir, `${label}.db`);
      copyFileSync(seed, path);
      const meta = new SqliteMetaStore(path);
      meta.checkpointInBackground(() => {});
      const gaps = [];
      let last = performance.now();
      const timer = setInterval(() => {
        const t = performance.now();
        gaps.push(t - last);
        last = t;
      }, 5);
      const t0 = performance.now();
      const removed = await chain.prunePulls(meta, 1000 + Math.floor(ROWS * 0.9) * STEP, 'bench', maxRows);
      const secs = (performance.now() - t0) / 1000;
      await new Promise((r) => setTimeout(r, 20));
      clearInterval(timer);
      const verified = await chain.verifyChain(meta);
      await meta.close();
      gaps.sort((a, b) => a - b);
      const row = { label, removed, secs, worstGapMs: gaps.at(-1), p99GapMs: gaps[Math.floor(gaps.length * 0.99)], verifies: !verified.problem };
      console.log(
        `${label.padEnd(22)} removed ${removed} rows in ${secs.toFixed(1)} s; event loop: longest gap ${row.worstGapMs.toFixed(0)} ms, p99 ${row.p99GapMs.toFixed(0)} ms; verifies: ${row.verifies}`,
      );
      return row;
    }

    const one = await run('one transaction', Number.MAX_SAFE_INTEGER);
    const batched = await run(`batches of ${chain.PRUNE_BATCH}`, chain.PRUNE_BATCH);
    return { one, batched };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { one, batched } = await pruneGap(process.env.DIST ?? join(ROOT, 'dist'), Number(process.argv[2] ?? 1_000_000));
  console.log(
    `longest event-loop gap, batched / one transaction: ${(batched.worstGapMs / one.worstGapMs).toFixed(3)}x; time to prune: ${(batched.secs / one.secs).toFixed(2)}x`,
  );
}
