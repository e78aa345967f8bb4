// node bench/many-cold.mjs [--runs=N] [--dists=label=path,...]: issue 14's memory row on its own:
// 50 concurrent cold pulls of different 32 MiB PyPI files from one client (transfers.per_client
// starts 16, the rest wait), peak RSS (VmHWM) of `airlock serve` with the recommended glibc
// settings (src/obs/malloc.ts). Each run starts a fresh server per build, builds interleaved, so
// two builds (this one and another's dist/, e.g. the code before a change) are compared side by
// side. bench/run.mjs section 4 runs the same case in the full benchmark. A program, not a test.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { airlockNodeFlags } from './lib/node-flags.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1 << 20;

/** Peak RSS (MB) and aggregate MiB/s of `count` concurrent cold pulls of `size` bytes, per build, `runs` times. */
export async function manyCold({ runs = 3, count = 50, size = 32 * MiB, dists = { airlock: join(ROOT, 'dist') } } = {}) {
  const { MALLOC_TUNABLES } = await import(join(ROOT, 'dist', 'obs', 'malloc.js'));
  const files = Array.from({ length: count }, (_, i) => ({ name: `many_m${i}-1.0-py3-none-any.whl`, project: `many-m${i}`, size, seed: 600 + i }));
  const up = spawn(process.execPath, [join(ROOT, 'bench', 'upstream.mjs'), JSON.stringify({ files, bigPageFiles: 10 })], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const info = await new Promise((r) => createInterface({ input: up.stdout }).once('line', (l) => r(JSON.parse(l))));
  const UP = `http://127.0.0.1:${info.port}`;
  const out = Object.fromEntries(Object.keys(dists).map((k) => [k, []]));
  try {
    for (let run = 0; run < runs; run++) {
      for (const [label, dist] of Object.entries(dists).sort(() => Math.random() - 0.5)) {
        const dir = mkdtempSync(join(tmpdir(), 'airlock-many-'));
        writeFileSync(
          join(dir, 'a.yaml'),
          `listen: 127.0.0.1:0\ndata_dir: ${join(dir, 'data')}\nlog_level: info\npypi:\n  upstream: ${UP}/simple/\n  file_hosts: ["127.0.0.1:${info.port}"]\npolicy:\n  pypi:\n    allow: [${files.map((f) => `{ name: ${f.project} }`).join(', ')}]\n`,
        );
        const air = spawn(process.execPath, [...(await airlockNodeFlags(dist)), join(dist, 'cli', 'main.js'), 'serve', '--config', join(dir, 'a.yaml')], {
          stdio: ['ignore', 'pipe', 'inherit'],
          env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
        });
        const port = await new Promise((r, rej) => {
          air.once('exit', (code) => rej(new Error(`airlock (${label}) exited with ${code} before listening`)));
          let buf = '';
          air.stdout.on('data', (d) => {
            buf += d;
            const m = /"listen":"127\.0\.0\.1:(\d+)"/.exec(buf);
            if (m) r(Number(m[1]));
          });
        });
        const base = `http://127.0.0.1:${port}/pypi`;
        for (const f of files) await fetch(`${base}/simple/${f.project}/`).then((r) => r.text());
        const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${air.pid}/status`, 'utf8'))[1]) * 1024;
        const startRss = hwm();
        const t0 = performance.now();
        await Promise.all(
          files.map(
            (f) => new Promise((res, rej) => execFile('curl', ['-sf', '-o', '/dev/null', `${base}/files/${f.project}/${f.name}`], (e) => (e ? rej(e) : res()))),
          ),
        );
        const secs = (performance.now() - t0) / 1000;
        const peak = hwm();
        out[label].push({ peakMB: peak / 1e6, startMB: startRss / 1e6, mibps: (count * size) / MiB / secs });
        process.stderr.write(
          `[many-cold] run ${run + 1} ${label}: peak RSS ${(peak / 1e6).toFixed(0)} MB, ${((count * size) / MiB / secs).toFixed(0)} MiB/s\n`,
        );
        air.kill('SIGTERM');
        await new Promise((r) => air.once('exit', r));
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    up.kill('SIGTERM');
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (n, d) =>
    process.argv
      .find((a) => a.startsWith(`--${n}=`))
      ?.split('=')
      .slice(1)
      .join('=') ?? d;
  const dists = arg('dists')
    ? Object.fromEntries(
        arg('dists')
          .split(',')
          .map((kv) => kv.split('=')),
      )
    : undefined;
  const out = await manyCold({ runs: Number(arg('runs', 3)), dists });
  for (const [label, rows] of Object.entries(out))
    console.log(`${label}: peak RSS ${rows.map((r) => r.peakMB.toFixed(0)).join(', ')} MB; ${rows.map((r) => r.mibps.toFixed(0)).join(', ')} MiB/s`);
}
