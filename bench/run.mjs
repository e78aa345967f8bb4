// npm run bench [-- --quick]
// Measures Airlock beside the direct download, a plain Node server and (when installed) nginx,
// side by side in one run on this machine, and prints ratios. Writes bench/results/<time>.json.
// A program, not a test: it asserts nothing; it reports each target as met or missed.
//
// This file is the driver: options, the shared setup (fixtures and upstream, lib/fixtures.mjs;
// servers, lib/servers.mjs; clients and load generators, lib/http.mjs; results, lib/results.mjs)
// and the ordered list of sections, each a module under bench/sections/ exporting run(ctx).
import { rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loaders } from './lib/http.mjs';
import { prepareFixtures } from './lib/fixtures.mjs';
import { createResults, report } from './lib/results.mjs';
import { crossSectionTargets } from './lib/issue29.mjs';
import { airlockStarter, startStaticNginx } from './lib/servers.mjs';
import * as cold from './sections/01-cold.mjs';
import * as coldOci from './sections/01b-cold-oci.mjs';
import * as hfInspected from './sections/01c-hf-inspected.mjs';
import * as inventory from './sections/01d-inventory.mjs';
import * as warm from './sections/02-warm.mjs';
import * as policy from './sections/policy.mjs';
import * as coalescing from './sections/03-coalescing.mjs';
import * as fleet from './sections/03b-fleet.mjs';
import * as memory from './sections/04-memory.mjs';
import * as coldPeers from './sections/08-cold-peers.mjs';
import * as records from './sections/06-records.mjs';
import * as consolePages from './sections/07-console.mjs';
import * as pinBulk from './sections/09-pin-bulk.mjs';
import * as minAge from './sections/10-min-age.mjs';
import * as signed from './sections/11-signed.mjs';
import * as feeds from './sections/12-feeds.mjs';
import * as rejudge from './sections/13-rejudge.mjs';
import * as notice from './sections/14-notice.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// The glibc settings Airlock is deployed with (Dockerfile, npm start); bench runs after the build.
const { MALLOC_TUNABLES } = await import(join(ROOT, 'dist', 'obs', 'malloc.js'));
const QUICK = process.argv.includes('--quick');
// --only=1,1b,4 runs those sections alone (the keys in SECTIONS below) (while working on one of them; a full run is the record).
const ONLY = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const want = (s) => !ONLY || ONLY.includes(s);
const MiB = 1 << 20;
const GiB = 1 << 30;
const S = QUICK
  ? { big: 64 * MiB, coal: 32 * MiB, distinct: 64 * MiB, reps: 1, loadSec: 1, bigPage: 5000, policy: 10_000 }
  : { big: 1 * GiB, coal: 256 * MiB, distinct: 1 * GiB, reps: 3, loadSec: 5, bigPage: 5000, policy: 10_000 };
// --reps=N: N rounds where a row takes the median of several (a longer comparison than --quick's one).
const REPS = Number(process.argv.find((a) => a.startsWith('--reps='))?.slice(7) ?? 0);
if (REPS > 0) S.reps = REPS;

/**
 * The sections in the order they run: [--only key, progress line, module]. A section whose key is
 * null runs whatever --only says (the policy evaluation, in this process and short); a section's
 * progress line is printed even when --only leaves it out.
 */
const SECTIONS = [
  ['1', '1. Cold pull-through', cold],
  ['1b', '1b. Cold pull-through', coldOci],
  ['1c', '1c. Inspected HF files at 200 MiB/s', hfInspected],
  ['1d', '1d. Image inventory on a cold layer', inventory],
  ['2', '2. Warm serve', warm],
  [null, null, policy],
  ['3', '3. Coalescing', coalescing],
  ['3b', '3b. Coalescing across three replicas', fleet],
  ['4', '4. Memory', memory],
  ['8', '8. Cold pull against nginx proxy_cache and distribution', coldPeers],
  ['6', '6. Record throughput', records],
  ['7', '7. Console pages on a large record', consolePages],
  ['9', '9. airlock pin pypi -r, 100-file lock file', pinBulk],
  ['10', '10. Minimum age', minAge],
  ['11', '11. Signed images', signed],
  ['12', '12. Advisory feeds', feeds],
  ['13', '13. Re-judging 100,000 pulls and 1,000 inventories', rejudge],
  ['14', '14. A notice of changed advisories among 20,000', notice],
];

const { results, progress, row, target } = createResults({ QUICK, S });
console.log(
  `Airlock benchmark${QUICK ? ' (quick)' : ''}: ${results.machine.cpu}, ${results.machine.cores} cores, ${results.machine.memoryGiB} GiB, Node ${process.version}`,
);

const DISTINCT = 8;
const fx = await prepareFixtures({ ROOT, S, QUICK, DISTINCT });
/** What every section's run(ctx) gets. */
const ctx = {
  ROOT,
  QUICK,
  S,
  FAST_WAN: 200 * MiB,
  SLOW_WAN: 20 * MiB,
  CLIENTS: 16,
  DISTINCT,
  ...fx,
  startAirlock: airlockStarter({ ROOT, MALLOC_TUNABLES, ...fx }),
  startStaticNginx: (name, paths) => startStaticNginx(fx.work, name, paths),
  ...loaders(S.loadSec),
  results,
  row,
  target,
  progress,
  // Peak RSS by scenario, for the target over every scenario at the end.
  peakRss: {},
  // Figures issue 29's targets compare across sections (bench/lib/issue29.mjs).
  issue29: {},
};

for (const [key, title, section] of SECTIONS) {
  if (title) progress(title);
  if (key === null || want(key)) await section.run(ctx);
}

// (Sections run alone with --only may have sampled no scenario.)
if (Object.keys(ctx.peakRss).length) {
  const worstRss = Math.max(...Object.values(ctx.peakRss));
  target('peak RSS <= 200 MB in every scenario', worstRss <= 200e6, `${(worstRss / 1e6).toFixed(0)} MB (worst)`);
}
results.peakRssBytes = ctx.peakRss;
crossSectionTargets(target, ctx.issue29);
if (Object.keys(ctx.issue29).length) results.issue29 = ctx.issue29;

// ---------------------------------------------------------------------------------------------
fx.up.child.kill('SIGTERM');
rmSync(fx.work, { recursive: true, force: true });
report(ROOT, QUICK, results);
process.exit(0);
