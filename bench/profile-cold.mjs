// node bench/profile-cold.mjs: where a cold GiB goes (issue 17). One 1 GiB file from the bench's
// loopback upstream, pulled cold through `airlock serve` by curl, three times (fresh data dir
// each); CPU seconds of every thread of Airlock (by thread name), of the upstream and of curl,
// read from /proc before and after each pull. Prints seconds per GiB; a program, not a test.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { selfSignedCert } from './lib/tls.mjs';
import { airlockNodeFlags } from './lib/node-flags.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// DIST=<dir>: profile another build's dist/ (a change against the code before it).
const DIST = process.env.DIST ?? join(ROOT, 'dist');
const { MALLOC_TUNABLES } = await import(join(DIST, 'obs', 'malloc.js'));
const GiB = 1 << 30;
const TICK = 100; // USER_HZ
const file = { name: 'prof_big-1.0-py3-none-any.whl', project: 'prof-big', size: GiB, seed: 7 };

function threads(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
      const cpu = (Number(f[11]) + Number(f[12])) / TICK;
      out[`${comm}#${tid}`] = cpu;
    } catch {}
  }
  return out;
}
const total = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICK;
};

// HTTPS=1: the upstream speaks TLS (a certificate made here for 127.0.0.1, trusted by Airlock through
// NODE_EXTRA_CA_CERTS), as every real upstream does: Node then delivers the body one 16 KiB TLS record at a time.
const TLS = process.env.HTTPS === '1';
let tls;
if (TLS) {
  const d = mkdtempSync(join(tmpdir(), 'airlock-prof-tls-'));
  process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  tls = selfSignedCert(d);
}
const up = spawn(process.execPath, [join(ROOT, 'bench', 'upstream.mjs'), JSON.stringify({ files: [file], bigPageFiles: 10, tls })], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const info = await new Promise((r) => createInterface({ input: up.stdout }).once('line', (l) => r(JSON.parse(l))));
const UP = `${TLS ? 'https' : 'http'}://127.0.0.1:${info.port}`;
const rows = [];
for (let round = 0; round < 3; round++) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-prof-'));
  writeFileSync(
    join(dir, 'a.yaml'),
    `listen: 127.0.0.1:0\ndata_dir: ${join(dir, 'data')}\nlog_level: info\npypi:\n  upstream: ${UP}/simple/\n  file_hosts: ["127.0.0.1:${info.port}"]\npolicy:\n  pypi:\n    allow: [{ name: prof-big }]\n`,
  );
  // As deployed (Dockerfile, npm start): glibc keeps freed heap for reuse (src/obs/malloc.ts).
  const air = spawn(process.execPath, [...(await airlockNodeFlags(DIST)), join(DIST, 'cli', 'main.js'), 'serve', '--config', join(dir, 'a.yaml')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES, ...(TLS ? { NODE_EXTRA_CA_CERTS: tls.cert } : {}) },
  });
  const port = await new Promise((r) => {
    let buf = '';
    air.stdout.on('data', (d) => {
      buf += d;
      const m = /"listen":"127\.0\.0\.1:(\d+)"/.exec(buf);
      if (m) r(Number(m[1]));
    });
  });
  await fetch(`http://127.0.0.1:${port}/pypi/simple/prof-big/`).then((r) => r.text());
  // The event loop's longest stall during the pull: prom-client's delay histogram restarts at every scrape.
  const stallMs = async () => {
    const m = /^airlock_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(await fetch(`http://127.0.0.1:${port}/-/metrics`).then((r) => r.text()));
    return m ? Number(m[1]) * 1000 : NaN;
  };
  await stallMs();
  const before = { air: threads(air.pid), up: total(up.pid) };
  // PERF=file: `perf record -g` of Airlock's process for the pull (run node with --perf-basic-prof for JS names).
  const perf = process.env.PERF ? spawn('perf', ['record', '-g', '-p', String(air.pid), '-o', `${process.env.PERF}.${round}`], { stdio: 'ignore' }) : null;
  if (perf) await new Promise((r) => setTimeout(r, 500));
  const t0 = performance.now();
  const curlCpu = await new Promise((resolve, reject) => {
    const c = execFile(
      'bash',
      ['-c', `/usr/bin/time -f '%U %S' curl -sS --fail -o /dev/null http://127.0.0.1:${port}/pypi/files/prof-big/${file.name} 2>&1 >/dev/null`],
      (err, out) =>
        err
          ? reject(err)
          : resolve(
              out
                .trim()
                .split(' ')
                .map(Number)
                .reduce((a, b) => a + b, 0),
            ),
    );
  });
  const secs = (performance.now() - t0) / 1000;
  if (perf) {
    perf.kill('SIGINT');
    await new Promise((r) => perf.once('exit', r));
  }
  const stall = await stallMs();
  await new Promise((r) => setTimeout(r, 3000)); // the commit (fsync, rename) after the transfer
  const after = { air: threads(air.pid), up: total(up.pid) };
  const byName = {};
  // Node names no thread: the main thread is the one whose id is the process id; the others are
  // the hash worker, libuv's pool (file writes, fsync) and V8's helpers (GC, compiler).
  for (const [k, v] of Object.entries(after.air)) {
    const name = k.split('#')[1] === String(air.pid) ? 'main thread' : 'other threads';
    byName[name] = (byName[name] ?? 0) + (v - (before.air[k] ?? 0));
  }
  if (process.env.PROF_TIDS) {
    const per = Object.entries(after.air)
      .map(([k, v]) => [k, v - (before.air[k] ?? 0)])
      .filter(([, v]) => v > 0.05)
      .sort((a, b) => b[1] - a[1]);
    // utime vs stime per thread
    console.log(
      per
        .map(([k, v]) => {
          const tid = k.split('#')[1];
          const f = readFileSync(`/proc/${air.pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
          return `${tid}${tid === String(air.pid) ? '(main)' : ''} ${v.toFixed(2)} [u ${(Number(f[11]) / TICK).toFixed(2)} s ${(Number(f[12]) / TICK).toFixed(2)}]`;
        })
        .join('; '),
    );
  }
  rows.push({ secs, mibps: 1024 / secs, byName, upstream: after.up - before.up, curl: curlCpu, stall });
  air.kill('SIGTERM');
  await new Promise((r) => air.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
up.kill('SIGTERM');
for (const r of rows) {
  const parts = Object.entries(r.byName)
    .filter(([, v]) => v >= 0.01)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`);
  console.log(
    `cold 1 GiB in ${r.secs.toFixed(2)} s (${r.mibps.toFixed(0)} MiB/s). Airlock CPU s by thread: ${parts.join(', ')}; total ${Object.values(r.byName)
      .reduce((a, b) => a + b, 0)
      .toFixed(2)}. Upstream ${r.upstream.toFixed(2)}, curl ${r.curl.toFixed(2)}. Longest event-loop stall ${r.stall.toFixed(0)} ms`,
  );
}
