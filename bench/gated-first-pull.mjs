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
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, sleep } from './lib/proc.mjs';
import { REGISTRY, cpu, createRig, freePort, tree } from './lib/registry-rig.mjs';
import { airlockNodeFlags } from './lib/node-flags.mjs';

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
  const { MALLOC_TUNABLES } = await import(join(ROOT, 'dist', 'obs', 'malloc.js'));

  const { work, start, stop, waitFor, settle, startUpstream, startNginxCache, startDistribution } = createRig({ prefix: 'airlock-gated-pull-' });
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
  // --- the image: a real gzip'd layer and its config, in a registry tree nginx serves ---
  const upstream = await startUpstream((path) => {
    log(`writing a ${SIZE_MIB} MiB gzip'd layer (bench/make-layer.sh)`);
    execFileSync('sh', [join(HERE, 'make-layer.sh'), path, String(SIZE_MIB << 20)]);
    const digest = `sha256:${execFileSync('sha256sum', [path]).toString().split(' ')[0]}`;
    return { digest, size: Number(execFileSync('stat', ['-c', '%s', path]).toString().trim()) };
  }, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const { url: UP, manifest, manifestDigest, blobPath } = upstream;
  const layerSize = upstream.layer.size;
  const manifestPath = '/v2/bench/layer/manifests/v1';
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
    const child = start(process.execPath, [...(await airlockNodeFlags(dist)), join(dist, 'cli', 'main.js'), 'serve', '--config', join(d, 'airlock.yaml')], {
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
      const c = await startDistribution(UP);
      if (!c) return null;
      return {
        url: c.url,
        pids: () => [c.child.pid],
        async stop() {
          await stop(c.child);
          rmSync(c.dir, { recursive: true, force: true });
        },
      };
    },
    async nginx() {
      const c = await startNginxCache(UP);
      return {
        url: c.url,
        pids: () => tree(c.child.pid),
        async stop() {
          await stop(c.child);
          rmSync(c.dir, { recursive: true, force: true });
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
      settle(PREFAULT);
      const c = await contenders[name]();
      const pids = c.pids();
      const before = pids.map((p) => cpu(p, { waited: true }));
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
      const own = allPids.reduce((s, p) => s + cpu(p, { waited: true }) - (before[pids.indexOf(p)] ?? 0), 0);
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
  await stop(upstream.child);

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
