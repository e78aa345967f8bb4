// node bench/cold-peers.mjs [--rounds=N] [--pin] [--no-prefault] [--size=MiB] [--only=airlock,nginx] [--json]
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
// runs on cold memory. --pin runs curl on CPU 1 and every server on CPU 0 (`taskset`).
// Prints a table (median MiB/s, ratios, CPU seconds per GiB of each server process) and, with
// --json, one JSON line for bench/run.mjs. A program, not a test.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, def) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const ROUNDS = Number(arg('rounds', 3));
const SIZE = Number(arg('size', 1024)) << 20;
const PIN = process.argv.includes('--pin');
const PREFAULT = !process.argv.includes('--no-prefault');
const JSON_OUT = process.argv.includes('--json');
const log = (s) => process.stderr.write(`[cold-peers] ${s}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const REGISTRY = ['/usr/bin/docker-registry'].find((p) => existsSync(p));
// The malloc settings deploy/airlock.service sets (docs/performance.md, "Memory churn").
const { MALLOC_TUNABLES } = await import(join(ROOT, 'dist', 'obs', 'malloc.js'));
const AIRLOCK_ENV = { GLIBC_TUNABLES: MALLOC_TUNABLES };

const work = mkdtempSync(join(tmpdir(), 'airlock-cold-peers-'));
const children = new Set();
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function start(cmd, args, opts = {}) {
  const full = PIN ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args];
  const child = spawn(full[0], full[1], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let err = '';
  child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
  child.lastError = () => err;
  return child;
}
async function stop(child) {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
  child.kill('SIGKILL');
}
const freePort = () => 20000 + Math.floor(Math.random() * 30000);
async function waitFor(url, what, child) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status < 500) return;
    } catch {}
    if (child?.exitCode != null) throw new Error(`${what} exited: ${child.lastError()}`);
    await sleep(50);
  }
  throw new Error(`${what} did not come up at ${url}`);
}
/** Minor page faults of a process (all threads): fresh memory touched. */
function faults(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);
  } catch {
    return 0;
  }
}
/** CPU seconds (user + system, all threads) of a process. */
function cpu(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
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
    '-w',
    '%{time_starttransfer} %{time_total} %{size_download}',
    url,
  ]).toString();
  const [ttfb, total, bytes] = out.trim().split(' ').map(Number);
  if (bytes !== SIZE) throw new Error(`${url}: ${bytes} bytes, expected ${SIZE}`);
  return { ttfb, total, mibps: bytes / (1 << 20) / total };
}
function settle() {
  execFileSync('sync');
  if (!PREFAULT) return;
  const f = join(work, 'prefault');
  execFileSync('dd', ['if=/dev/zero', `of=${f}`, 'bs=1M', 'count=2048', 'status=none']);
  rmSync(f);
}

// --- the registry tree the upstream serves (one image: a config and one layer) ---
const www = join(work, 'www');
const repo = join(www, 'v2', 'bench', 'layer');
mkdirSync(join(repo, 'blobs'), { recursive: true });
mkdirSync(join(repo, 'manifests'), { recursive: true });
const digestOf = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
let layerDigest;
{
  log(`writing a ${SIZE >> 20} MiB layer`);
  const h = createHash('sha256');
  const tmp = join(work, 'layer.tmp');
  const fd = openSync(tmp, 'w');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let off = 0; off < SIZE; off += buf.length) {
    randomFillSync(buf);
    h.update(buf);
    writeSync(fd, buf);
  }
  closeSync(fd);
  layerDigest = `sha256:${h.digest('hex')}`;
  execFileSync('mv', [tmp, join(repo, 'blobs', layerDigest)]);
}
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layerDigest] } }));
const configDigest = digestOf(config);
writeFileSync(join(repo, 'blobs', configDigest), config);
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: SIZE }],
  }),
);
const manifestDigest = digestOf(manifest);
writeFileSync(join(repo, 'manifests', manifestDigest), manifest);
writeFileSync(join(repo, 'manifests', 'v1'), manifest);

const user = process.getuid?.() === 0 ? 'user root; ' : '';
const temps = (d) => `client_body_temp_path ${d}/cbt; proxy_temp_path ${d}/pt; fastcgi_temp_path ${d}/f; uwsgi_temp_path ${d}/u; scgi_temp_path ${d}/s;`;
function nginxConf(d, server) {
  mkdirSync(d, { recursive: true });
  writeFileSync(
    join(d, 'nginx.conf'),
    `${user}worker_processes 1; pid ${d}/nginx.pid; error_log ${d}/error.log; daemon off;\nevents { worker_connections 1024; }\nhttp { access_log off; sendfile on; tcp_nopush on; ${temps(d)}\n${server}\n}\n`,
  );
  return join(d, 'nginx.conf');
}

// --- the upstream: nginx serving the tree as a registry (GET and HEAD, digests in headers) ---
const upPort = freePort();
const UP = `http://127.0.0.1:${upPort}`;
const upConf = nginxConf(
  join(work, 'up'),
  `server { listen 127.0.0.1:${upPort}; root ${www};
  location = /v2/ { default_type application/json; return 200 '{}'; }
  location ~ "^/v2/.+/blobs/(sha256:[0-9a-f]{64})$" { default_type application/octet-stream; add_header Docker-Content-Digest $1; }
  location ~ ^/v2/.+/manifests/ { default_type application/vnd.oci.image.manifest.v1+json; add_header Docker-Content-Digest ${manifestDigest}; }
}`,
);
const upstream = start(NGINX, ['-c', upConf, '-p', join(work, 'up')]);
await waitFor(`${UP}/v2/`, 'upstream nginx', upstream);
const upPids = () => [upstream.pid];
const blobPath = `/v2/bench/layer/blobs/${layerDigest}`;

/** Each contender: start (empty cache), the URL of the blob, the process ids to charge, stop. */
const contenders = {
  async direct() {
    return { url: `${UP}${blobPath}`, pids: [], stop: async () => {} };
  },
  async nginx() {
    const port = freePort();
    const d = join(work, `ngx-${port}`);
    const conf = nginxConf(
      d,
      `proxy_cache_path ${d}/cache levels=1:2 keys_zone=c:10m max_size=20g inactive=1d use_temp_path=off;
  server { listen 127.0.0.1:${port};
    location / { proxy_pass ${UP}; proxy_cache c; proxy_cache_valid 200 1d; proxy_buffering on; proxy_buffer_size 64k; proxy_buffers 32 64k; proxy_busy_buffers_size 256k; proxy_temp_file_write_size 1m; } }`,
    );
    const child = start(NGINX, ['-c', conf, '-p', d]);
    await waitFor(`http://127.0.0.1:${port}/v2/`, 'nginx proxy_cache', child);
    const workers = () =>
      execFileSync('pgrep', ['-P', String(child.pid)])
        .toString()
        .trim()
        .split('\n')
        .map(Number);
    return { url: `http://127.0.0.1:${port}${blobPath}`, pids: [child.pid, ...workers()], stop: () => stop(child) };
  },
  async distribution() {
    if (!REGISTRY) return null;
    const port = freePort();
    const d = join(work, `reg-${port}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, 'config.yml'),
      `version: 0.1\nlog: { level: error }\nstorage: { filesystem: { rootdirectory: ${d}/data }, delete: { enabled: true } }\nhttp: { addr: 127.0.0.1:${port} }\nproxy: { remoteurl: ${UP} }\n`,
    );
    const child = start(REGISTRY, ['serve', join(d, 'config.yml')]);
    await waitFor(`http://127.0.0.1:${port}/v2/`, 'distribution', child);
    await (
      await fetch(`http://127.0.0.1:${port}/v2/bench/layer/manifests/${manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    ).arrayBuffer();
    return { url: `http://127.0.0.1:${port}${blobPath}`, pids: [child.pid], stop: () => stop(child) };
  },
  async 'node pipe'() {
    const child = start(
      process.execPath,
      [
        '-e',
        `
      const http = require('node:http');
      const agent = new http.Agent({ keepAlive: true });
      http.createServer((req, res) => {
        http.get('${UP}' + req.url, { agent }, (up) => {
          res.writeHead(up.statusCode, { 'content-length': up.headers['content-length'] });
          up.pipe(res);
        });
      }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`,
      ],
      { env: { ...process.env, ...AIRLOCK_ENV } },
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
  const child = start(process.execPath, [join(ROOT, 'bench', 'floor.cjs'), mode, UP.replace('http://', '')], { env: { ...process.env, ...AIRLOCK_ENV } });
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
    const port = freePort();
    const d = join(work, `air-${port}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, 'airlock.yaml'),
      `listen: 127.0.0.1:${port}\ndata_dir: ${d}/data\nlog_level: warn\noci:\n  default_registry: bench.local\n  inventory: on-demand\n  registries:\n    bench.local: { url: "${UP}" }\npolicy:\n  oci:\n    allow:\n      - { repository: bench.local/bench/layer, tags: { v1: "${manifestDigest}" } }\n`,
    );
    const child = start(process.execPath, [join(dist, 'cli', 'main.js'), 'serve', '--config', join(d, 'airlock.yaml')], {
      env: { ...process.env, ...env, ...(process.env.PERF ? { NODE_OPTIONS: '--perf-basic-prof' } : {}) },
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
    settle();
    const pids = [...c.pids, ...upPids()];
    const before = pids.map(cpu);
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
    const after = pids.map(cpu);
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
await stop(upstream);

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
