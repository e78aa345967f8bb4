// node bench/gated-first-pull.mjs [--rounds=N] [--size=MiB] [--only=airlock-gated,distribution] [--before=DIST] [--no-prefault] [--stderr] [--json]
//
// Issue 29's gated row: the first pull of an image through Airlock with the image gate on, as a
// client waits for it, beside the same pull through distribution's pull-through cache (and nginx
// proxy_cache, and Airlock with the repository not gated), side by side in one run. The image:
// one real gzip'd layer (bench/make-layer.sh: this machine's dpkg database and os-release, large
// libraries, text; 1 GiB by default) and its config, served by nginx as a static registry tree
// (the upstream). A client pull is curl: the manifest by tag (with an OCI Accept header), then
// the layer; what is timed is from the manifest request to the layer's last byte. With the gate
// on, the manifest answers only once the layer has been filled, verified and read for its
// inventory (the judging fill), so the client then reads the layer back from Airlock.
// Every row starts with an empty cache (a new server, new storage) each round; rows run in a new
// random order each round; `sync` and a memory prefault (as bench/cold-peers.mjs, which explains
// it) before every row. Ratios are Airlock's to each row inside the same round, then their
// median (this machine's speed drifts over minutes). A program, not a test; --json prints one
// line for bench/run.mjs, which calls gatedFirstPull() below.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');

/**
 * For bench/run.mjs: run this program (its own processes, cleaned up when it exits) and add its
 * rows and target through the caller's `row` and `target`.
 */
export function gatedFirstPull({ quick, sizeMiB, row, target }) {
  const args = [fileURLToPath(import.meta.url), '--json', `--rounds=${quick ? 1 : 3}`, `--size=${sizeMiB}`];
  const out = execFileSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 }).toString();
  const r = JSON.parse(out.trim().split('\n').pop());
  const sc = `first pull of a gated ${r.sizeMiB} MiB image (manifest + layer), median of ${r.rounds}`;
  for (const [name, x] of Object.entries(r.summary)) {
    row(sc, name, {
      mibps: x.mibps,
      totalS: x.totalS,
      manifestS: x.manifestS,
      layerS: x.layerS,
      cpuSecPerGiB: x.cpuPerGiB,
      gatedRatioPaired: r.paired[name] ?? null,
    });
  }
  const vs = r.paired.distribution;
  if (vs !== undefined)
    target(`first pull of a gated ${r.sizeMiB} MiB image >= 0.5x distribution's pull-through cache`, vs >= 0.5, `${vs.toFixed(2)}x per round`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();

async function main() {
  const arg = (name, def) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
  const ROUNDS = Number(arg('rounds', 3));
  const SIZE_MIB = Number(arg('size', 1024));
  const PREFAULT = !process.argv.includes('--no-prefault');
  const JSON_OUT = process.argv.includes('--json');
  const log = (s) => process.stderr.write(`[gated-first-pull] ${s}\n`);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
  const REGISTRY = ['/usr/bin/docker-registry'].find((p) => existsSync(p));
  if (!NGINX) throw new Error('nginx is needed for the upstream');
  const { MALLOC_TUNABLES } = await import(join(ROOT, 'dist', 'obs', 'malloc.js'));

  const work = mkdtempSync(join(tmpdir(), 'airlock-gated-pull-'));
  const children = new Set();
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });
  process.on('SIGINT', () => process.exit(130));
  const start = (cmd, args, opts = {}) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    children.add(child);
    child.on('exit', () => children.delete(child));
    let err = '';
    child.stderr?.on('data', (d) => (err = (err + d).slice(-2000)));
    child.stdout.on('data', () => {});
    child.lastError = () => err;
    return child;
  };
  const stop = async (child) => {
    if (child.exitCode !== null) return;
    child.kill('SIGTERM');
    await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
    child.kill('SIGKILL');
  };
  /** A port the kernel says is free now (another helper's servers share this machine). */
  const freePort = () =>
    new Promise((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address();
        srv.close(() => resolve(port));
      });
    });
  const waitFor = async (url, what, child) => {
    for (let i = 0; i < 400; i++) {
      try {
        const r = await fetch(url);
        await r.arrayBuffer();
        if (r.status < 500) return;
      } catch {}
      if (child?.exitCode != null) throw new Error(`${what} exited: ${child.lastError()}`);
      await sleep(50);
    }
    throw new Error(`${what} did not come up at ${url}`);
  };
  /** CPU seconds (user + system) of a process and its children that have exited and been waited for. */
  const cpu = (pid) => {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
    } catch {
      return 0;
    }
  };
  /** The process and its descendants (Airlock's layer reader is a child process). */
  const tree = (pid) => {
    const out = [pid];
    for (let i = 0; i < out.length; i++) {
      try {
        out.push(
          ...execFileSync('pgrep', ['-P', String(out[i])])
            .toString()
            .trim()
            .split('\n')
            .filter(Boolean)
            .map(Number),
        );
      } catch {}
    }
    return out;
  };
  const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
  const curl = (url, accept) => {
    const out = execFileSync('curl', [
      '-s',
      '-S',
      '--fail',
      ...(accept ? ['-H', `Accept: ${accept}`] : []),
      '-o',
      '/dev/null',
      '-w',
      '%{time_total} %{size_download}',
      url,
    ]).toString();
    const [total, bytes] = out.trim().split(' ').map(Number);
    return { total, bytes };
  };
  const settle = () => {
    execFileSync('sync');
    if (!PREFAULT) return;
    const f = join(work, 'prefault');
    execFileSync('dd', ['if=/dev/zero', `of=${f}`, 'bs=1M', 'count=2048', 'status=none']);
    rmSync(f);
  };

  // --- the image: a real gzip'd layer and its config, in a registry tree nginx serves ---
  const www = join(work, 'www');
  const repo = join(www, 'v2', 'bench', 'layer');
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(join(repo, 'manifests'), { recursive: true });
  const digestOf = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  log(`writing a ${SIZE_MIB} MiB gzip'd layer (bench/make-layer.sh)`);
  const tmpLayer = join(work, 'layer.tar.gz');
  execFileSync('sh', [join(HERE, 'make-layer.sh'), tmpLayer, String(SIZE_MIB << 20)]);
  const layerDigest = execFileSync('sha256sum', [tmpLayer]).toString().split(' ')[0];
  const layerSize = Number(execFileSync('stat', ['-c', '%s', tmpLayer]).toString().trim());
  renameSync(tmpLayer, join(repo, 'blobs', `sha256:${layerDigest}`));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] } }));
  const configDigest = digestOf(config);
  writeFileSync(join(repo, 'blobs', configDigest), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerDigest}`, size: layerSize }],
    }),
  );
  const manifestDigest = digestOf(manifest);
  writeFileSync(join(repo, 'manifests', manifestDigest), manifest);
  writeFileSync(join(repo, 'manifests', 'v1'), manifest);
  const blobPath = `/v2/bench/layer/blobs/sha256:${layerDigest}`;
  const manifestPath = '/v2/bench/layer/manifests/v1';

  const user = process.getuid?.() === 0 ? 'user root; ' : '';
  const temps = (d) => `client_body_temp_path ${d}/cbt; proxy_temp_path ${d}/pt; fastcgi_temp_path ${d}/f; uwsgi_temp_path ${d}/u; scgi_temp_path ${d}/s;`;
  const nginxConf = (d, server) => {
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, 'nginx.conf'),
      `${user}worker_processes 1; pid ${d}/nginx.pid; error_log ${d}/error.log; daemon off;\nevents { worker_connections 1024; }\nhttp { access_log off; sendfile on; tcp_nopush on; ${temps(d)}\n${server}\n}\n`,
    );
    return join(d, 'nginx.conf');
  };
  const upPort = await freePort();
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
  curl(`${UP}${blobPath}`); // the upstream's page cache holds the layer for every row alike

  const airlock = async (gated, dist = join(ROOT, 'dist')) => {
    const port = await freePort();
    const d = join(work, `air-${port}`);
    mkdirSync(d, { recursive: true });
    // The gate on bench/layer; no advisories imported, so its packages are unjudged and let through after review.
    const config = (gateOn) =>
      `listen: 127.0.0.1:${port}\ndata_dir: ${d}/data\nlog_level: info\noci:\n  default_registry: bench.local\n  registries:\n    bench.local: { url: "${UP}" }\n` +
      `policy:\n  oci:\n    allow:\n      - { repository: bench.local/bench/layer, tags: { v1: "${manifestDigest}" } }\n` +
      (gated
        ? `  advisories:\n    refuse: critical\n    images:\n      unjudged: allow\n${gateOn ? '' : '      repositories: [{ repository: bench.local/bench/layer, refuse: none }]\n'}`
        : '');
    writeFileSync(join(d, 'airlock.yaml'), config(false));
    const child = start(process.execPath, [join(dist, 'cli', 'main.js'), 'serve', '--config', join(d, 'airlock.yaml')], {
      env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
      // --stderr: Airlock's own warnings and errors shown.
      ...(process.argv.includes('--stderr') ? { stdio: ['ignore', 'pipe', 'inherit'] } : {}),
    });
    let logged = '';
    child.stdout.on('data', (b) => (logged = (logged + b).slice(-4096)));
    const url = `http://127.0.0.1:${port}`;
    await waitFor(`${url}/-/healthz`, 'airlock', child);
    if (gated) {
      // A server that has been running, with its reader processes up, when the image becomes gated:
      // Airlock judges pinned images of gated repositories in the background as a policy load sees
      // them, so gated from its start it would have judged the image before the client's pull (a
      // head start no first pull has in earnest). The gate is turned on by a reload (SIGHUP) and
      // the pull starts with it: the client's manifest request joins the judgement just begun.
      for (let i = 0; i < 100 && tree(child.pid).length < 2; i++) await sleep(50);
      await sleep(1500);
      writeFileSync(join(d, 'airlock.yaml'), config(true));
      logged = '';
      child.kill('SIGHUP');
      for (let i = 0; i < 400 && !logged.includes('policy reloaded'); i++) await sleep(5);
      if (!logged.includes('policy reloaded')) throw new Error(`airlock did not reload its policy: ${logged.slice(-500)}`);
    }
    return {
      url,
      pids: () => tree(child.pid),
      async stop() {
        await stop(child);
        rmSync(d, { recursive: true, force: true });
      },
    };
  };
  const contenders = {
    'airlock-gated': () => airlock(true),
    'airlock-ungated': () => airlock(false),
    async distribution() {
      if (!REGISTRY) return null;
      const port = await freePort();
      const d = join(work, `reg-${port}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(
        join(d, 'config.yml'),
        `version: 0.1\nlog: { level: error }\nstorage: { filesystem: { rootdirectory: ${d}/data }, delete: { enabled: true } }\nhttp: { addr: 127.0.0.1:${port} }\nproxy: { remoteurl: ${UP} }\n`,
      );
      const child = start(REGISTRY, ['serve', join(d, 'config.yml')]);
      await waitFor(`http://127.0.0.1:${port}/v2/`, 'distribution', child);
      return {
        url: `http://127.0.0.1:${port}`,
        pids: () => [child.pid],
        async stop() {
          await stop(child);
          rmSync(d, { recursive: true, force: true });
        },
      };
    },
    async nginx() {
      const port = await freePort();
      const d = join(work, `ngx-${port}`);
      const conf = nginxConf(
        d,
        `proxy_cache_path ${d}/cache levels=1:2 keys_zone=c:10m max_size=20g inactive=1d use_temp_path=off;
  server { listen 127.0.0.1:${port};
    location / { proxy_pass ${UP}; proxy_cache c; proxy_cache_valid 200 1d; proxy_buffering on; proxy_buffer_size 64k; proxy_buffers 32 64k; proxy_busy_buffers_size 256k; proxy_temp_file_write_size 1m; } }`,
      );
      const child = start(NGINX, ['-c', conf, '-p', d]);
      await waitFor(`http://127.0.0.1:${port}/v2/`, 'nginx proxy_cache', child);
      return {
        url: `http://127.0.0.1:${port}`,
        pids: () => tree(child.pid),
        async stop() {
          await stop(child);
          rmSync(d, { recursive: true, force: true });
        },
      };
    },
  };

  // --before=<dist dir>: the gated pull through another build too (row 'airlock-gated before'), measuring a change in the same run.
  const BEFORE = arg('before');
  if (BEFORE) contenders['airlock-gated before'] = () => airlock(true, BEFORE);
  const ONLY = arg('only')?.split(',');
  const names = Object.keys(contenders).filter((n) => (n !== 'distribution' || REGISTRY) && (!ONLY || ONLY.includes(n) || n.endsWith(' before')));
  if (!REGISTRY) log('docker-registry not installed: the distribution row is skipped');
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  const loads = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = [...names].sort(() => Math.random() - 0.5);
    for (const name of order) {
      // Settled before the server starts, and the pull starts as soon as it answers: Airlock judges
      // pinned images of gated repositories in the background from its start, which the client's
      // manifest request then joins (a head start on a first pull that no client has in earnest).
      settle();
      const c = await contenders[name]();
      const pids = c.pids();
      const before = pids.map(cpu);
      const load = loadavg()[0];
      const t0 = performance.now();
      const m = curl(`${c.url}${manifestPath}`, ACCEPT);
      const t1 = performance.now();
      const l = curl(`${c.url}${blobPath}`);
      const t2 = performance.now();
      if (m.bytes !== manifest.length || l.bytes !== layerSize)
        throw new Error(`${name}: manifest ${m.bytes} bytes, layer ${l.bytes} (expected ${manifest.length}, ${layerSize})`);
      // Processes started during the pull (Airlock's layer reader) count too; their CPU since they started.
      const allPids = [...new Set([...pids, ...c.pids()])];
      const own = allPids.reduce((s, p) => s + cpu(p) - (before[pids.indexOf(p)] ?? 0), 0);
      const totalS = (t2 - t0) / 1000;
      const r = {
        totalS,
        manifestS: (t1 - t0) / 1000,
        layerS: (t2 - t1) / 1000,
        mibps: layerSize / (1 << 20) / totalS,
        cpuPerGiB: (own * (1 << 30)) / layerSize,
        load,
      };
      runs[name].push(r);
      log(
        `round ${round + 1}: ${name} ${r.mibps.toFixed(0)} MiB/s: manifest ${r.manifestS.toFixed(2)} s, layer ${r.layerS.toFixed(2)} s, ${own.toFixed(2)} CPU-s, load ${load.toFixed(1)}`,
      );
      loads.push(load);
      // Airlock's commit (fsync, rename) may follow the transfer: let it finish before the next row.
      await sleep(500);
      await c.stop();
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
      totalS: median(xs.map((x) => x.totalS)),
      manifestS: median(xs.map((x) => x.manifestS)),
      layerS: median(xs.map((x) => x.layerS)),
      cpuPerGiB: median(xs.map((x) => x.cpuPerGiB)),
    };
  }
  // The gated pull against each row inside the same round, then the median of those ratios.
  const paired = {};
  const perRound = {};
  if (runs['airlock-gated'])
    for (const n of names)
      if (n !== 'airlock-gated') {
        perRound[n] = runs['airlock-gated'].map((x, i) => x.mibps / runs[n][i].mibps);
        paired[n] = median(perRound[n]);
      }
  const out = {
    rounds: ROUNDS,
    sizeMiB: Math.round(layerSize / (1 << 20)),
    layerBytes: layerSize,
    prefault: PREFAULT,
    load: loads,
    summary,
    paired,
    perRound,
    runs,
  };
  if (JSON_OUT) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    console.log(
      `first pull of a gated image: one ${(layerSize / (1 << 20)).toFixed(0)} MiB gzip'd layer, ${ROUNDS} rounds, rows shuffled, load ${loads.map((x) => x.toFixed(1)).join(' ')}`,
    );
    console.log('| row | median MiB/s (range) | manifest s | layer s | total s | server CPU-s per GiB | gated vs row, per round (median) |');
    console.log('|---|---|---|---|---|---|---|');
    for (const n of names) {
      const s = summary[n];
      const pr = perRound[n] ? `${perRound[n].map((x) => x.toFixed(2)).join(', ')} (${paired[n].toFixed(2)}x)` : '';
      console.log(
        `| ${n} | ${s.mibps.toFixed(0)} (${s.min.toFixed(0)}-${s.max.toFixed(0)}) | ${s.manifestS.toFixed(2)} | ${s.layerS.toFixed(2)} | ${s.totalS.toFixed(2)} | ${s.cpuPerGiB.toFixed(2)} | ${pr} |`,
      );
    }
  }
}
