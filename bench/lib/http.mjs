// HTTP clients of the bench: curl for transfers (outside Node), fetch for small answers, and the
// load generators (autocannon, an undici loop for HEAD, wrk when installed) for request rates.
import { execFile, execFileSync } from 'node:child_process';
import autocannon from 'autocannon';

const MiB = 1 << 20;

/** curl a URL (or one range of it, "start-end") to /dev/null: seconds to first byte, total seconds, bytes. */
export function curl(url, range) {
  const r = range ? ['-r', range] : [];
  return new Promise((resolve, reject) => {
    execFile('curl', ['-s', '-S', '--fail', ...r, '-o', '/dev/null', '-w', '%{time_starttransfer} %{time_total} %{size_download}', url], (err, out) => {
      if (err) return reject(new Error(`curl ${url}: ${err.message}`));
      const [ttfb, total, bytes] = out.trim().split(' ').map(Number);
      resolve({ ttfb, total, bytes, mibps: bytes / MiB / total });
    });
  });
}

export async function get(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r;
}

/** The load generators, each run for `loadSec` seconds after a 1 s warm-up. */
export function loaders(loadSec) {
  /**
   * HEAD load: autocannon waits for a body as long as Content-Length says after a HEAD answer and
   * stalls, so HEAD rows use this small undici loop instead (same process, same connections, for
   * Airlock and the baseline alike).
   */
  async function loadHead(url, headers, connections = 32) {
    const { Pool } = await import('undici');
    const u = new URL(url);
    const pool = new Pool(u.origin, { connections, pipelining: 1 });
    const run = async (seconds) => {
      const lat = [];
      const end = performance.now() + seconds * 1000;
      let bad = 0;
      await Promise.all(
        Array.from({ length: connections }, async () => {
          while (performance.now() < end) {
            const t = performance.now();
            const r = await pool.request({ path: u.pathname + u.search, method: 'HEAD', headers });
            await r.body.dump();
            if (r.statusCode !== 200) bad++;
            lat.push(performance.now() - t);
          }
        }),
      );
      if (bad) throw new Error(`${url}: ${bad} non-200 answers to HEAD`);
      lat.sort((a, b) => a - b);
      return { rps: lat.length / seconds, p99: Math.round(lat[Math.floor(lat.length * 0.99)]), p50: Math.round(lat[Math.floor(lat.length / 2)]) };
    };
    await run(1);
    const r = await run(loadSec);
    await pool.close();
    return r;
  }

  /** wrk (one thread, 32 connections) on a URL: requests per second, p99 and p50 latency in ms. */
  function wrkLoad(wrk, url, headers, connections = 32) {
    const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
    execFileSync(wrk, ['-t1', `-c${connections}`, '-d1s', ...h, url], { stdio: 'ignore' }); // warm-up
    const out = execFileSync(wrk, ['-t1', `-c${connections}`, `-d${loadSec}s`, '--latency', ...h, url]).toString();
    if (/Non-2xx|Socket errors/.test(out)) throw new Error(`${url}: wrk saw errors:\n${out}`);
    const ms = (v, unit) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? 1);
    const at = (pct) => {
      const m = new RegExp(`\\s${pct}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
      return m ? ms(m[1], m[2]) : null;
    };
    return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]), p99: at(99), p50: at(50) };
  }

  async function load(url, headers, connections = 32, method = 'GET') {
    if (method === 'HEAD') return loadHead(url, headers, connections);
    // Warm up (JIT, connection pools) before the measured run.
    await autocannon({ url, headers, connections, duration: 1, pipelining: 1, method });
    const r = await autocannon({ url, headers, connections, duration: loadSec, pipelining: 1, method });
    if (r.non2xx || r.errors) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
    return { rps: r.requests.average, p99: r.latency.p99, p50: r.latency.p50 };
  }

  return { load, loadHead, wrkLoad };
}
