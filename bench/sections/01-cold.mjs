// Section 1. Cold pull-through: one PyPI file pulled cold through a fresh Airlock beside the direct
// download, unthrottled and from a 200 MiB/s upstream.
import { median } from '../lib/proc.mjs';
import { curl } from '../lib/http.mjs';

export async function run(ctx) {
  const { S, FAST_WAN, files, WARMUP, UP, setRate, startAirlock, row, target, peakRss } = ctx;
  for (const [label, bps, prefix] of [
    ['unthrottled', 0, 'bench-cold'],
    ['200 MiB/s', FAST_WAN, 'bench-wan'],
  ]) {
    await setRate(bps);
    const direct = [];
    const through = [];
    let peak = 0;
    for (let r = 0; r < S.reps; r++) {
      const f = files.find((x) => x.project === `${prefix}${r}`);
      direct.push(await curl(`${UP}/files/${f.name}`));
      const a = await startAirlock();
      await a.warmPage(WARMUP);
      await curl(a.fileUrl(WARMUP));
      await a.warmPage(f);
      a.rss.reset();
      through.push(await curl(a.fileUrl(f)));
      peak = Math.max(peak, a.rss.reset());
      await a.stop();
    }
    const d = { mibps: median(direct.map((x) => x.mibps)), ttfbMs: median(direct.map((x) => x.ttfb)) * 1000 };
    const t = { mibps: median(through.map((x) => x.mibps)), ttfbMs: median(through.map((x) => x.ttfb)) * 1000 };
    const ratio = t.mibps / d.mibps;
    row(`cold ${label}`, 'direct from upstream', d);
    row(`cold ${label}`, 'Airlock (verify + cache)', { ...t, ratio, peakRssMB: peak / 1e6 });
    peakRss[`cold ${label}`] = peak;
    const need = bps ? 0.95 : 0.6;
    target(`cold ${label} throughput >= ${need}x direct`, ratio >= need, `${ratio.toFixed(2)}x`);
    target(`cold ${label} TTFB within 5 ms of direct`, t.ttfbMs - d.ttfbMs <= 5, `+${(t.ttfbMs - d.ttfbMs).toFixed(1)} ms`);
  }
  await setRate(0);
}
