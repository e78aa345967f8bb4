// Section 3b's split (bench/run.mjs): clients of the filling replica against clients of the
// replicas that wait on its fill (issue 29: "waiting replicas' clients get their first byte within
// 1 s of the filling replica's clients and finish within 1.2x of them").
//
// Which replica answered a client comes from nginx (`add_header x-bench-replica $upstream_addr`
// in 3b's nginx.conf); the filling replica is the one that answered `x-airlock-cache: miss`.
import { execFile } from 'node:child_process';

/** curl to /dev/null: seconds to first byte, total seconds, bytes, the replica that answered and its cache outcome. */
export function fleetCurl(url) {
  const w = '%{time_starttransfer} %{time_total} %{size_download} %header{x-bench-replica} %header{x-airlock-cache}';
  return new Promise((resolve, reject) => {
    execFile('curl', ['-s', '-S', '--fail', '-o', '/dev/null', '-w', w, url], (err, out) => {
      if (err) return reject(new Error(`curl ${url}: ${err.message}`));
      const [ttfb, total, bytes, replica, cache] = out.trim().split(' ');
      resolve({ ttfb: Number(ttfb), total: Number(total), bytes: Number(bytes), replica, cache });
    });
  });
}

/**
 * The two figures of the target from one run's clients (fleetCurl results): the waiting replicas'
 * worst first byte minus the filling replica's worst, and their worst total over the filling
 * replica's worst total. Adds the row and the two targets through run.mjs's row() and target().
 */
export function fleetSplit(all, row, target, label) {
  const filler = all.find((x) => x.cache === 'miss')?.replica;
  const mine = all.filter((x) => x.replica === filler);
  const others = all.filter((x) => x.replica !== filler);
  if (!filler || others.length === 0) {
    row('coalescing (20 MiB/s), 3 replicas', `${label}: filling vs waiting replicas`, { note: 'could not tell the replicas apart' });
    return;
  }
  const worst = (xs, k) => Math.max(...xs.map((x) => x[k]));
  const ttfbGapS = worst(others, 'ttfb') - worst(mine, 'ttfb');
  const finishRatio = worst(others, 'total') / worst(mine, 'total');
  row('coalescing (20 MiB/s), 3 replicas', `${label}: filling vs waiting replicas`, {
    fillerClients: mine.length,
    waitingClients: others.length,
    fillerWorstTtfbMs: worst(mine, 'ttfb') * 1000,
    waitingWorstTtfbMs: worst(others, 'ttfb') * 1000,
    fillerWorstTotalS: worst(mine, 'total'),
    waitingWorstTotalS: worst(others, 'total'),
    waitingOutcomes: [...new Set(others.map((x) => x.cache))].join(','),
    ttfbGapS,
    finishRatio,
  });
  target("3 replicas: waiting replicas' clients get their first byte within 1 s of the filling replica's", ttfbGapS <= 1, `${ttfbGapS.toFixed(2)} s`);
  target("3 replicas: waiting replicas' clients finish within 1.2x of the filling replica's", finishRatio <= 1.2, `${finishRatio.toFixed(2)}x`);
}
