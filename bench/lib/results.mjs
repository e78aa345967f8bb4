// The run's results: rows (figures measured side by side), targets (met, missed or n/a), printed at
// the end and written to bench/results/<time>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';

const GiB = 1 << 30;

export function createResults({ QUICK, S }) {
  const results = {
    machine: {
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      memoryGiB: Math.round(totalmem() / GiB),
      kernel: release(),
      node: process.version,
      date: new Date().toISOString(),
      quick: QUICK,
    },
    sizes: S,
    rows: [],
    targets: [],
  };
  /** One line per section on stderr, so a long run shows where it is. */
  const progress = (what) => process.stderr.write(`[bench] ${what}\n`);
  const row = (scenario, subject, figures) => {
    results.rows.push({ scenario, subject, ...figures });
  };
  /** A target: met (true), missed (false) or not measured here (null); `extra` (e.g. perRound) goes into the JSON. */
  const target = (name, ok, detail, extra = {}) => results.targets.push({ name, met: ok, detail, ...extra });
  return { results, progress, row, target };
}

/** Print the rows and targets, and write the JSON file. */
export function report(ROOT, QUICK, results) {
  const fmt = (v) => (typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : (v ?? ''));
  console.log('');
  for (const r of results.rows) {
    const { scenario, subject, ...fig } = r;
    const figs = Object.entries(fig)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${fmt(v)}`)
      .join('  ');
    console.log(`${scenario.padEnd(42)} ${subject.padEnd(38)} ${figs}`);
  }
  console.log('\nTargets:');
  for (const t of results.targets) console.log(`  [${t.met === null ? 'n/a ' : t.met ? ' ok ' : 'MISS'}] ${t.name}: ${t.detail}`);
  const outDir = join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${results.machine.date.replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`);
  writeFileSync(out, JSON.stringify(results, null, 2));
  console.log(`\nwrote ${out}`);
}
