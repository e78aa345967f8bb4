// node bench/cold-peers.mjs [--rounds=N] [--pin] [--no-prefault] [--tls] [--size=MiB] [--only=airlock,nginx] [--json]
//
// Issue 17's comparison: one OCI layer (1 GiB of random bytes) pulled cold, by curl, through
// Airlock and through the unverified caches it is measured against, side by side in one run:
//   direct        the upstream itself (nginx serving the registry tree as static files, sendfile)
//   nginx         nginx proxy_cache in front of it (buffers raised to 32 x 64 KiB; a fresh cache each time)
//   distribution  Debian's docker-registry as a pull-through cache (proxy.remoteurl; fresh storage)
//   node pipe     a plain Node proxy (node:http client piped to the response): no cache, no check
//   node pipe, 1 MiB reads / floor: spool + hash   reference proxies (bench/floor.cjs): Node's share
//   airlock       `airlock serve`, fresh data directory, the layer pinned through its manifest
// Each round runs the rows in a new random order. Before every row: `sync` (a 1 GiB fill leaves
// dirty pages whose writeback slows whatever runs next) and, unless --no-prefault, 2 GiB written
// and deleted: this machine's memory balloon hands pages freed for a few seconds back to the
// host, and touching them again costs ~2 CPU-s per GiB (dd into the page cache: 1.6-2.2 s of
// system time cold, 0.2-0.5 s right after such a prefault), which would fall on whichever row
// runs on cold memory. --pin runs curl on CPU 1 and every server on CPU 0 (`taskset`). --tls: the
// upstream speaks HTTPS (bench/lib/registry-rig.mjs), as real registries do; every row verifies it.
// Prints a table (median MiB/s, ratios, CPU seconds per GiB of each server process) and, with
// --json, one JSON line for bench/run.mjs. A program, not a test.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, sleep } from './lib/proc.mjs';
import { airlockNodeFlags } from './lib/node-flags.mjs';
import { REGISTRY, cpu, createRig, freePort, tree } from './lib/registry-rig.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, def) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const ROUNDS = Number(arg('rounds', 3));
const SIZE = Number(arg('size', 1024)) << 20;
const PIN = process.argv.includes('--pin');
const PREFAULT = !process.argv.includes('--no-prefault');
const JSON_OUT = process.argv.includes('--json');
const TLS = process.argv.includes('--tls');
const log = (s) => process.stderr.write(`[cold-peers] ${s}\n`);
// The malloc settings deploy/airlock.service sets (docs/performance.md, "Memory churn").
const { MALLOC_TUNABLES } = await import(join(ROOT, 'dist', 'obs', 'malloc.js'));
const AIRLOCK_ENV = { GLIBC_TUNABLES: MALLOC_TUNABLES };

const { work, ca, start, stop, waitFor, settle, startUpstream, startNginxCache, startDistribution } = createRig({
  prefix: 'airlock-cold-peers-',
  pin: PIN,
  tls: TLS,
});
// What a Node process needs to trust the upstream's certificate.
const TRUST = ca ? { NODE_EXTRA_CA_CERTS: ca } : {};
/** Minor page faults of a process (all threads): fresh memory touched. */
function faults(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);
  } catch {
    return 0;
  }
}
function curl(url) {
  const cmd = PIN ? ['taskset', '-c', '1', 'curl'] : ['curl'];
  const out = execFileSync(cmd[0], [
    ...cmd.slice(1),
    '-s',
    '-S',
    '--fail',
    '-o',
    '/dev/null',
    ...(ca ? ['--cacert', ca] : []),
    '-w',
    '%{time_starttransfer} %{time_total} %{size_download}',
    url,
  ]).toString();
  const [ttfb, total, bytes] = out.trim().split(' ').map(Number);
  if (bytes !== SIZE) throw new Error(`${url}: ${bytes} bytes, expected ${SIZE}`);
  return { ttfb, total, mibps: bytes / (1 << 20) / total };
}
// --- the upstream: nginx serving a registry tree of one image (its layer: SIZE random bytes) ---
const upstream = await startUpstream((path) => {
  log(`writing a ${SIZE >> 20} MiB layer`);
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let off = 0; off < SIZE; off += buf.length) {
    randomFillSync(buf);
    h.update(buf);
    writeSync(fd, buf);
  }
  closeSync(fd);
  return { digest: `sha256:${h.digest('hex')}`, size: SIZE };
}, 'application/vnd.oci.image.layer.v1.tar');
const { url: UP, manifestDigest, blobPath } = upstream;
const upPids = () => [upstream.child.pid];

/** Each contender: start (empty cache), the URL of the blob, the process ids to charge, stop. */
const contenders = {
  async direct() {
    return { url: `${UP}${blobPath}`, pids: [], stop: async () => {} };
  },
  async nginx() {
    const c = await startNginxCache(UP);
    return { url: `${c.url}${blobPath}`, pids: tree(c.child.pid), stop: () => stop(c.child) };
  },
  async distribution() {
    const c = await startDistribution(UP);
    if (!c) return null;
    await (
      await fetch(`${c.url}/v2/bench/layer/manifests/${manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    ).arrayBuffer();
    return { url: `${c.url}${blobPath}`, pids: [c.child.pid], stop: () => stop(c.child) };
  },
  async 'node pipe'() {
    const child = start(
      process.execPath,
      [
        '-e',
        `
      const http = require('node:http');
      const client = require('${UP.startsWith('https:') ? 'node:https' : 'node:http'}');
      const agent = new client.Agent({ keepAlive: true });
      http.createServer((req, res) => {
        client.get('${UP}' + req.url, { agent }, (up) => {
          res.writeHead(up.statusCode, { 'content-length': up.headers['content-length'] });
          up.pipe(res);
        });
      }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`,
      ],
      { env: { ...process.env, ...AIRLOCK_ENV, ...TRUST } },
    );
    const port = await new Promise((r) => child.stdout.once('data', (d) => r(Number(String(d).trim()))));
    return { url: `http://127.0.0.1:${port}${blobPath}`, pids: [child.pid], stop: () => stop(child) };
  },
  airlock: () => airlock(AIRLOCK_ENV),
  // Node's share and Airlock's (bench/floor.cjs): the pipe above with 1 MiB reads, and the least a
  // verifying cache does per byte in Node (spool file, SHA-256 in a worker, no HTTP parsing).
  'node pipe, 1 MiB reads': () => reference('slab-pipe'),
  'floor: spool + hash': () => reference('floor'),
};
async function reference(mode) {
  // The floor runs with Airlock's settings (glibc's and node's), so the rows differ only in the code.
  const child = start(process.execPath, [...(await airlockNodeFlags(join(ROOT, 'dist'))), join(ROOT, 'bench', 'floor.cjs'), mode, UP], {
    env: { ...process.env, ...AIRLOCK_ENV, ...TRUST },
  });
  const port = await new Promise((r) => child.stdout.once('data', (d) => r(Number(String(d).trim()))));
  return { url: `http://127.0.0.1:${port}${blobPath}`, pids: [child.pid], stop: () => stop(child) };
}
// AB_MALLOC="a=<GLIBC_TUNABLES or none>[@<dist dir>];b=..." adds rows 'airlock a', 'airlock b' with those settings
// (measuring the setting itself), optionally from another build's dist/ (measuring a change).
for (const kv of (process.env.AB_MALLOC ?? '').split(';').filter(Boolean)) {
  const [k, v] = kv.split('=', 2);
  const [tun, dist] = kv.slice(k.length + 1).split('@');
  contenders[`airlock ${k}`] = () => airlock(tun === 'none' ? {} : { GLIBC_TUNABLES: tun }, dist);
}
async function airlock(env, dist = join(ROOT, 'dist')) {
  {
    const port = await freePort();
    const d = join(work, `air-${port}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, 'airlock.yaml'),
      `listen: 127.0.0.1:${port}\ndata_dir: ${d}/data\nlog_level: warn\noci:\n  default_registry: bench.local\n  inventory: on-demand\n  registries:\n    bench.local: { url: "${UP}" }\npolicy:\n  oci:\n    allow:\n      - { repository: bench.local/bench/layer, tags: { v1: "${manifestDigest}" } }\n`,
    );
    const child = start(process.execPath, [...(await airlockNodeFlags(dist)), join(dist, 'cli', 'main.js'), 'serve', '--config', join(d, 'airlock.yaml')], {
      env: { ...process.env, ...env, ...TRUST, ...(process.env.PERF ? { NODE_OPTIONS: '--perf-basic-prof' } : {}) },
    });
    const url = `http://127.0.0.1:${port}`;
    await waitFor(`${url}/-/healthz`, 'airlock', child);
    const m = await fetch(`${url}/v2/bench/layer/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    if (!m.ok) throw new Error(`airlock manifest: ${m.status} ${await m.text()}`);
    await m.arrayBuffer();
    return {
      url: `${url}${blobPath}`,
      pids: [child.pid],
      async stop() {
        // The commit (fsync, rename) follows the transfer; let it finish before the next row.
        await sleep(500);
        await stop(child);
      },
    };
  }
}

const ONLY = arg('only')?.split(',');
const names = Object.keys(contenders).filter((n) => (n !== 'distribution' || REGISTRY) && (!ONLY || ONLY.includes(n)));
if (!REGISTRY) log('docker-registry not installed: the distribution row is skipped');
const runs = Object.fromEntries(names.map((n) => [n, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = [...names].sort(() => Math.random() - 0.5);
  for (const name of order) {
    const c = await contenders[name]();
    settle(PREFAULT);
    const pids = [...c.pids, ...upPids()];
    const before = pids.map((p) => cpu(p));
    const faults0 = c.pids.map(faults);
    // PERF=file: a CPU profile of the row's first server process during the pull (perf record).
    const perf =
      process.env.PERF && c.pids[0]
        ? spawn('perf', ['record', '-F', '999', '-g', '-t', String(c.pids[0]), '-o', `${process.env.PERF}.${name.replace(' ', '-')}`], { stdio: 'ignore' })
        : null;
    if (perf) await sleep(300);
    const r = curl(c.url);
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((res) => perf.once('exit', res));
    }
    const after = pids.map((p) => cpu(p));
    const faultsPerGiB = (c.pids.reduce((s, p, i) => s + faults(p) - faults0[i], 0) * (1 << 30)) / SIZE;
    const own = c.pids.reduce((s, _, i) => s + after[i] - before[i], 0);
    const up = after[after.length - 1] - before[before.length - 1];
    const hwm = c.pids[0] ? Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${c.pids[0]}/status`, 'utf8'))?.[1] ?? 0) / 1024 : null;
    await c.stop();
    runs[name].push({ ...r, peakRssMiB: hwm, faultsPerGiB, cpuPerGiB: (own * (1 << 30)) / SIZE, upstreamCpuPerGiB: (up * (1 << 30)) / SIZE });
    log(
      `round ${round + 1}: ${name} ${r.mibps.toFixed(0)} MiB/s, TTFB ${(r.ttfb * 1000).toFixed(1)} ms, ${own.toFixed(2)} CPU-s, ${Math.round(faultsPerGiB)} page faults, peak RSS ${hwm?.toFixed(0)} MiB`,
    );
  }
}
await stop(upstream.child);

const summary = {};
for (const n of names) {
  const xs = runs[n];
  summary[n] = {
    mibps: median(xs.map((x) => x.mibps)),
    min: Math.min(...xs.map((x) => x.mibps)),
    max: Math.max(...xs.map((x) => x.mibps)),
    ttfbMs: median(xs.map((x) => x.ttfb * 1000)),
    cpuPerGiB: n === 'direct' ? null : median(xs.map((x) => x.cpuPerGiB)),
    faultsPerGiB: n === 'direct' ? null : median(xs.map((x) => x.faultsPerGiB)),
  };
}
const a = summary.airlock?.mibps ?? NaN;
// Airlock against each row within the same round, then the median of those ratios: this machine's
// speed drifts by up to 2x over minutes, and a ratio taken inside one round cancels the drift.
const paired = {};
if (runs.airlock) for (const n of names) if (n !== 'airlock') paired[n] = median(runs.airlock.map((x, i) => x.mibps / runs[n][i].mibps));
const out = { rounds: ROUNDS, sizeMiB: SIZE >> 20, pinned: PIN, prefault: PREFAULT, summary, paired, runs };
if (JSON_OUT) process.stdout.write(`${JSON.stringify(out)}\n`);
else {
  console.log(
    `cold ${SIZE >> 20} MiB OCI layer, ${ROUNDS} rounds, rows shuffled${PIN ? ', curl on CPU 1, servers on CPU 0' : ''}${PREFAULT ? '' : ', no prefault'}`,
  );
  console.log('| row | median MiB/s (range) | TTFB ms | server CPU-s per GiB | page faults per GiB | Airlock vs row: medians (median of per-round ratios) |');
  console.log('|---|---|---|---|---|---|');
  for (const n of names) {
    const s = summary[n];
    console.log(
      `| ${n} | ${s.mibps.toFixed(0)} (${s.min.toFixed(0)}-${s.max.toFixed(0)}) | ${s.ttfbMs.toFixed(1)} | ${s.cpuPerGiB === null ? '' : s.cpuPerGiB.toFixed(2)} | ${s.faultsPerGiB === null ? '' : Math.round(s.faultsPerGiB)} | ${n === 'airlock' ? '' : `${(a / s.mibps).toFixed(2)}x (${paired[n]?.toFixed(2)}x)`} |`,
    );
  }
}
