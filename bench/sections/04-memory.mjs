// Section 4. Memory: 8 concurrent distinct cold transfers, then 50 concurrent cold pulls (5 runs, 1 with --quick),
// then 60 slow clients on one warm hit.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { curl } from '../lib/http.mjs';
import { median, sleep } from '../lib/proc.mjs';

const MiB = 1 << 20;

export async function run(ctx) {
  const { QUICK, S, DISTINCT, MANY, files, startAirlock, row, target, peakRss } = ctx;
  {
    const a = await startAirlock();
    const ds = files.filter((f) => f.project?.startsWith('bench-d'));
    for (const f of ds) await a.warmPage(f);
    a.rss.reset();
    const t0 = performance.now();
    const all = await Promise.all(ds.map((f) => curl(a.fileUrl(f))));
    const secs = (performance.now() - t0) / 1000;
    peakRss['8 distinct'] = a.rss.reset();
    row(`memory: ${DISTINCT} distinct cold ${S.distinct / MiB} MiB transfers`, 'Airlock', {
      aggregateMibps: all.reduce((s, x) => s + x.bytes, 0) / MiB / secs,
      peakRssMB: peakRss['8 distinct'] / 1e6,
    });
    await a.stop();
  }
  {
    // 50 at once from one client: 16 start (transfers.per_client), the rest wait for the client's own.
    // Issue 29 asks for 5 of 5 runs under 200 MB: 5 runs (1 with --quick), each a fresh server, all cold.
    const ms = files.filter((f) => f.project?.startsWith('bench-m'));
    const peaks = [];
    const rates = [];
    for (let run = 0; run < (QUICK ? 1 : 5); run++) {
      const a = await startAirlock();
      for (const f of ms) await a.warmPage(f);
      a.rss.reset();
      const t0 = performance.now();
      const all = await Promise.all(ms.map((f) => curl(a.fileUrl(f))));
      const secs = (performance.now() - t0) / 1000;
      peaks.push(a.rss.reset());
      rates.push(all.reduce((s, x) => s + x.bytes, 0) / MiB / secs);
      await a.stop();
    }
    peakRss['50 distinct'] = Math.max(...peaks);
    row(`memory: ${MANY} concurrent cold ${ms[0].size / MiB} MiB pulls`, 'Airlock', {
      aggregateMibps: median(rates),
      peakRssMB: peakRss['50 distinct'] / 1e6,
      peakRssMBPerRun: peaks.map((p) => (p / 1e6).toFixed(0)).join(' '),
    });
    // "With the recommended glibc settings": those startAirlock sets, unless BENCH_GLIBC_TUNABLES measures others.
    const under = peaks.filter((p) => p <= 200e6).length;
    target(
      `issue 29: ${MANY} concurrent cold pulls <= 200 MB peak RSS in ${peaks.length} of ${peaks.length} runs (recommended glibc settings)`,
      process.env.BENCH_GLIBC_TUNABLES === undefined ? under === peaks.length : null,
      `${under} of ${peaks.length} runs under (${peaks.map((p) => (p / 1e6).toFixed(0)).join(', ')} MB)${process.env.BENCH_GLIBC_TUNABLES === undefined ? '' : '; BENCH_GLIBC_TUNABLES set, not the recommended settings'}`,
      { perRound: peaks.map((p) => p / 1e6) },
    );
  }
  await slowReaders(ctx);
}

// Issue 29 (memory bounded under many slow readers): 60 clients at 2 MB/s each on one warm 1 GiB
// hit, beside one client on the same server. Before the shared chunk budget (core/hit-body.ts
// HitMemory) each transfer held 4 MiB of chunk buffers (375 MB peak against 151 for one client).
async function slowReaders(ctx) {
  const { QUICK, files, startAirlock, row, target, peakRss } = ctx;
  const f = files[0];
  const a = await startAirlock();
  await a.warmPage(f);
  await curl(a.fileUrl(f));
  for (let i = 0; i < 600 && !existsSync(a.blobPath(f)); i++) await sleep(100);
  const secs = QUICK ? 3 : 10;
  const peakWith = async (n) => {
    a.rss.reset();
    const kids = Array.from({ length: n }, () => spawn('curl', ['-s', '-o', '/dev/null', '--limit-rate', '2M', a.fileUrl(f)], { stdio: 'ignore' }));
    await sleep(secs * 1000);
    const peak = a.rss.reset();
    for (const k of kids) k.kill();
    await sleep(500);
    return peak;
  };
  const one = await peakWith(1);
  const sixty = await peakWith(60);
  peakRss['60 slow warm'] = sixty;
  row('memory: 60 clients at 2 MB/s on one warm hit', 'Airlock', { peakRssMB: sixty / 1e6, oneClientPeakRssMB: one / 1e6, growthMB: (sixty - one) / 1e6 });
  // The budget (32 MiB) plus one chunk per client, with room for the collector's lag.
  const bound = (32 + 60 * 1.05) * 1048576 * 1.25;
  target(
    '60 slow clients on a warm hit grow RSS by at most the hit budget plus a chunk each',
    sixty - one <= bound,
    `${((sixty - one) / 1e6).toFixed(0)} MB over one client (bound ${(bound / 1e6).toFixed(0)} MB)`,
  );
  await a.stop();
}
