// Section 4. Memory: 8 concurrent distinct cold transfers, then 50 concurrent cold pulls.
import { curl } from '../lib/http.mjs';

const MiB = 1 << 20;

export async function run(ctx) {
  const { S, DISTINCT, MANY, files, startAirlock, row, peakRss } = ctx;
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
    const a = await startAirlock();
    const ms = files.filter((f) => f.project?.startsWith('bench-m'));
    for (const f of ms) await a.warmPage(f);
    a.rss.reset();
    const t0 = performance.now();
    const all = await Promise.all(ms.map((f) => curl(a.fileUrl(f))));
    const secs = (performance.now() - t0) / 1000;
    peakRss['50 distinct'] = a.rss.reset();
    row(`memory: ${MANY} concurrent cold ${ms[0].size / MiB} MiB pulls`, 'Airlock', {
      aggregateMibps: all.reduce((s, x) => s + x.bytes, 0) / MiB / secs,
      peakRssMB: peakRss['50 distinct'] / 1e6,
    });
    await a.stop();
  }
}
