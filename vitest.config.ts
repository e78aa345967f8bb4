import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configDefaults, defineConfig } from 'vitest/config';

/**
 * `npm test` runs the suite in two passes (AIRLOCK_TESTS): `parallel`, two files at a time, then
 * `timed`, one at a time. A timed file asserts something about time (an event-loop stall, a rate,
 * a deadline, a send timeout): it measures a duration (a precise clock, or `Date.now() -` a start
 * held in a variable), or says `timed:` in a comment. Run beside another file on this two-core
 * machine its measurements would be the other file's load. A file that reads Date.now() only for a
 * timestamp (`Date.now() - 3_600_000`, an `ago(ms)` helper's `Date.now() - ms`) or a wait's generous
 * deadline is not timed. Unset, every file runs one at a time (vitest's default here,
 * cores - 1), as a file named on the command line does.
 */
const TIMED = /performance\.now\(|Date\.now\(\) - (?!ms\))[A-Za-z_]|- t0\b|hrtime|monitorEventLoopDelay|longestStall|cpuUsage\(|\btimed:/;

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  );
}

const pass = process.env.AIRLOCK_TESTS;
if (pass !== undefined && pass !== 'parallel' && pass !== 'timed') throw new Error(`AIRLOCK_TESTS is parallel or timed, not ${pass}`);
const timed = pass ? testFiles('test').filter((f) => TIMED.test(readFileSync(f, 'utf8'))) : [];

export default defineConfig({
  test: {
    include: pass === 'timed' ? timed : ['test/**/*.test.ts'],
    exclude: pass === 'parallel' ? [...configDefaults.exclude, ...timed] : configDefaults.exclude,
    ...(pass === 'parallel' ? { maxWorkers: 2, minWorkers: 2 } : {}),
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // A temporary root per run, removed at its end (test/helpers/temp-root.ts).
    globalSetup: ['test/helpers/temp-root.ts'],
  },
});
