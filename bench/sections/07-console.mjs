// Section 7. Console pages on a 1,000,000-row record (issue 16): every page rendered in under 100 ms.
import { join } from 'node:path';

export async function run(ctx) {
  const { ROOT, QUICK, startAirlock, row, target } = ctx;
  const { fillRecord, consolePageTimes } = await import(join(ROOT, 'bench', 'console.mjs'));
  const ROWS = QUICK ? 100_000 : 1_000_000;
  let token;
  const t0 = performance.now();
  const a = await startAirlock({ prepare: async (dataDir) => (token = await fillRecord(ROOT, dataDir, ROWS)) });
  const filled = (performance.now() - t0) / 1000;
  const times = await consolePageTimes(a.url, token);
  for (const [path, ms] of Object.entries(times)) row(`console page, ${ROWS.toLocaleString('en')} records`, path, { medianMs: ms });
  const worst = Math.max(...Object.values(times));
  row(`console page, ${ROWS.toLocaleString('en')} records`, '(record written in)', { seconds: filled });
  target(`every console page < 100 ms with ${ROWS.toLocaleString('en')} records`, worst < 100, `${worst.toFixed(1)} ms (worst)`);
  await a.stop();
}
