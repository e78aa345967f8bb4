// Section 8. Cold pull against the unverified caches (issue 17): bench/cold-peers.mjs pulls one 1 GiB
// OCI layer through nginx proxy_cache, distribution's pull-through cache, a plain Node pipe and
// Airlock, from one nginx upstream, rows shuffled per round, writeback and memory settled
// between rows; then again with curl and the servers on separate cores (taskset); then with the
// upstream over HTTPS (as every real registry is), the targets judged on that run too.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { nginxBinary } from '../lib/proc.mjs';
import { coldPeerTargets } from '../lib/issue29.mjs';

const MiB = 1 << 20;

export async function run(ctx) {
  const { ROOT, QUICK, S, row, target } = ctx;
  if (!nginxBinary) return void row('cold vs unverified caches', 'nginx', { note: 'nginx not installed: section skipped' });
  for (const { pin, tls } of [{ pin: false }, { pin: true }, { tls: true }]) {
    const rounds = QUICK ? 1 : tls ? 3 : 5;
    const args = [
      join(ROOT, 'bench', 'cold-peers.mjs'),
      '--json',
      `--rounds=${rounds}`,
      `--size=${S.big / MiB}`,
      ...(pin ? ['--pin'] : []),
      ...(tls ? ['--tls'] : []),
    ];
    const out = execFileSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 }).toString();
    const r = JSON.parse(out.trim().split('\n').pop());
    const how = pin ? ' (curl on CPU 1, servers on CPU 0)' : tls ? ' (HTTPS upstream)' : '';
    const sc = `cold ${r.sizeMiB} MiB OCI layer vs unverified caches${how}, median of ${r.rounds}`;
    const a = r.summary.airlock;
    for (const [name, x] of Object.entries(r.summary)) {
      row(sc, name, {
        mibps: x.mibps,
        minMibps: x.min,
        maxMibps: x.max,
        ttfbMs: x.ttfbMs,
        cpuSecPerGiB: x.cpuPerGiB,
        faultsPerGiB: x.faultsPerGiB,
        airlockRatio: name === 'airlock' ? null : a.mibps / x.mibps,
        airlockRatioPaired: r.paired[name] ?? null,
      });
    }
    if (tls) coldPeerTargets(target, r, how);
    else if (!pin) {
      target(
        `cold ${r.sizeMiB} MiB >= nginx proxy_cache cold, same run`,
        a.mibps >= r.summary.nginx.mibps,
        `${(a.mibps / r.summary.nginx.mibps).toFixed(2)}x, per-round ${r.paired.nginx.toFixed(2)}x (a plain Node pipe, no cache: ${(r.summary['node pipe'].mibps / r.summary.nginx.mibps).toFixed(2)}x; the floor of a verifying cache in Node, bench/floor.cjs: ${(r.summary['floor: spool + hash'].mibps / r.summary.nginx.mibps).toFixed(2)}x)`,
      );
      target(
        `cold ${r.sizeMiB} MiB >= 0.6x direct (next target)`,
        a.mibps / r.summary.direct.mibps >= 0.6,
        `${(a.mibps / r.summary.direct.mibps).toFixed(2)}x`,
      );
      coldPeerTargets(target, r);
    }
  }
}
