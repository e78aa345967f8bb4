// Section 3. Coalescing: 16 clients at once on one cold file at 20 MiB/s, beside one client.
import { median } from '../lib/proc.mjs';
import { curl, get } from '../lib/http.mjs';

export async function run(ctx) {
  const { SLOW_WAN, CLIENTS, files, UP, setRate, startAirlock, row, target, peakRss } = ctx;
  await setRate(SLOW_WAN);
  const one = files.find((f) => f.project === 'bench-coal1');
  const many = files.find((f) => f.project === 'bench-coal16');
  let a = await startAirlock();
  await a.warmPage(one);
  const single = await curl(a.fileUrl(one));
  await a.stop();
  a = await startAirlock();
  await a.warmPage(many);
  await get(`${UP}/-/reset`);
  a.rss.reset();
  const all = await Promise.all(Array.from({ length: CLIENTS }, () => curl(a.fileUrl(many))));
  peakRss['coalescing'] = a.rss.reset();
  const counts = await (await get(`${UP}/-/counts`)).json();
  const fetches = counts[`/files/${many.name}`] ?? 0;
  const worst = Math.max(...all.map((x) => x.total));
  row('coalescing (20 MiB/s)', '1 client', { totalS: single.total, ttfbMs: single.ttfb * 1000 });
  row('coalescing (20 MiB/s)', `${CLIENTS} clients at once`, {
    upstreamFetches: fetches,
    worstTotalS: worst,
    medianTotalS: median(all.map((x) => x.total)),
    worstTtfbMs: Math.max(...all.map((x) => x.ttfb)) * 1000,
    ratio: worst / single.total,
    peakRssMB: peakRss['coalescing'] / 1e6,
  });
  target(`coalescing: exactly 1 upstream fetch for ${CLIENTS} clients`, fetches === 1, `${fetches}`);
  target(`coalescing: every client within 1.2x single-client time`, worst / single.total <= 1.2, `${(worst / single.total).toFixed(2)}x`);
  await a.stop();
  await setRate(0);
}
