// Section 2. Warm serve: a verified cache hit (whole, Range bytes=0-, 16 MiB, 8 KiB reads) beside the
// same build with chunk checks off, a plain Node pipe and nginx sendfile, in alternating rounds;
// then the nginx offload; then the small requests and the metadata scale on the same instance.
import { existsSync, readFileSync, writeFileSync, mkdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { median, sleep, cpuSeconds, startJsonChild, startChild, nginxBinary } from '../lib/proc.mjs';
import { curl } from '../lib/http.mjs';
import { roundsTarget, sizeLabel } from '../lib/issue29.mjs';
import { smallRequests, metadataScale } from './02-warm-small.mjs';

const MiB = 1 << 20;
const GiB = 1 << 30;

export async function run(ctx) {
  const { ROOT, S, files, startAirlock, startStaticNginx, row, target, peakRss } = ctx;
  const f = files[0];
  const a = await startAirlock();
  await a.warmPage(f);
  await curl(a.fileUrl(f)); // fill the cache
  const blob = a.blobPath(f);
  // The commit (fsync, rename) follows the verified transfer: wait for the blob to be in the store.
  for (let i = 0; i < 600 && !existsSync(blob); i++) await sleep(100);
  const plain = await startJsonChild(join(ROOT, 'bench', 'plain.mjs'), [blob]);
  let nginx = null;
  if (nginxBinary) {
    const n = startStaticNginx('nginx', { '/blob': [blob, 'application/octet-stream'] });
    await n.ready;
    nginx = { child: n.child, url: `${n.url}/blob` };
  }
  // The same build and configuration with chunk checks off (AIRLOCK_BENCH_NO_CHUNK_CHECKS: hits read
  // as before chunk lists, a range unverified, a whole hit hashed by its server), its own copy of the
  // same file, measured in the same rounds: what chunk verification costs.
  const u = await startAirlock({ env: { AIRLOCK_BENCH_NO_CHUNK_CHECKS: '1' } });
  await u.warmPage(f);
  await curl(u.fileUrl(f));
  for (let i = 0; i < 600 && !existsSync(u.blobPath(f)); i++) await sleep(100);
  /** One round of the warm reads of `srv`: whole, bytes=0-, 16 MiB from the middle (what hf_transfer asks), 20 x 8 KiB near the end (pip's lazy wheel reads). */
  const warmRound = async (srv, into) => {
    // With the server's CPU seconds (user + system, /proc) per transfer: steadier than the rate on a shared machine.
    const timed = async (range) => {
      const c0 = cpuSeconds(srv.rss.pid);
      const t = await curl(srv.fileUrl(f), range);
      return { ...t, cpuS: cpuSeconds(srv.rss.pid) - c0 };
    };
    into.whole.push(await timed());
    into.r0.push(await timed('0-'));
    const mid = Math.floor(f.size / 2) + 12345;
    into.r16.push(await timed(`${mid}-${mid + 16 * MiB - 1}`));
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await curl(srv.fileUrl(f), `${f.size - 8192 * (i + 1)}-${f.size - 8192 * i - 1}`);
    into.small.push((performance.now() - t0) / 20);
  };
  const checked = { whole: [], r0: [], r16: [], small: [] };
  const unchecked = { whole: [], r0: [], r16: [], small: [] };
  const A = checked.whole,
    P = [],
    N = [];
  a.rss.reset();
  for (let r = 0; r < S.reps; r++) {
    // Alternating which goes first, so neither always reads a colder page cache.
    for (const [srv, into] of r % 2
      ? [
          [u, unchecked],
          [a, checked],
        ]
      : [
          [a, checked],
          [u, unchecked],
        ])
      await warmRound(srv, into);
    P.push(await curl(`http://127.0.0.1:${plain.info.port}/`));
    if (nginx) N.push(await curl(nginx.url));
  }
  peakRss['warm serve'] = a.rss.reset();
  await u.stop();
  const mib = (xs) => median(xs.map((x) => x.mibps));
  for (const [label, key] of [
    ['Range bytes=0-', 'r0'],
    ['16 MiB Range', 'r16'],
    ['whole GET', 'whole'],
  ]) {
    const on = mib(checked[key]);
    const off = mib(unchecked[key]);
    /** Server CPU seconds per GiB sent, over all rounds. */
    const perGiB = (xs) => (xs.reduce((n, x) => n + x.cpuS, 0) / xs.reduce((n, x) => n + x.bytes, 0)) * GiB;
    if (key !== 'whole') row('warm serve', `Airlock (cache hit, ${label})`, { mibps: on });
    row('warm serve', `chunk checks: ${label}, checked vs off`, {
      mibps: on,
      offMibps: off,
      ratio: on / off,
      cpuSPerGiB: perGiB(checked[key]),
      offCpuSPerGiB: perGiB(unchecked[key]),
      perRound: checked[key].map((x, i) => `${x.mibps.toFixed(0)}/${unchecked[key][i].mibps.toFixed(0)}`).join(' '),
    });
    target(`warm ${label} with chunk checks >= 0.9x without`, on / off >= 0.9, `${(on / off).toFixed(2)}x (${on.toFixed(0)} vs ${off.toFixed(0)} MiB/s)`);
  }
  const smallOn = median(checked.small);
  const smallOff = median(unchecked.small);
  row('warm serve', 'Airlock (cache hit, 8 KiB Range, ms each)', { ms: smallOn });
  row('warm serve', 'chunk checks: 8 KiB Range, checked vs off (ms each, one curl)', { ms: smallOn, offMs: smallOff, ratio: smallOff / smallOn });
  target('warm 8 KiB Range with chunk checks >= 0.9x the rate without', smallOff / smallOn >= 0.9, `${smallOn.toFixed(1)} vs ${smallOff.toFixed(1)} ms each`);
  const am = median(A.map((x) => x.mibps));
  const pm = median(P.map((x) => x.mibps));
  row('warm serve', 'plain Node http pipe', { mibps: pm });
  if (nginx) row('warm serve', 'nginx sendfile', { mibps: median(N.map((x) => x.mibps)) });
  else row('warm serve', 'nginx sendfile', { note: 'nginx not installed: row skipped' });
  // Issue 29: the verified whole hit against nginx inside each round (the machine drifts between rounds), then the median.
  const vsNginxPerRound = nginx ? median(A.map((x, i) => x.mibps / N[i].mibps)) : null;
  row('warm serve', 'Airlock (cache hit)', {
    mibps: am,
    ratioVsNode: am / pm,
    ratioVsNginx: nginx ? am / median(N.map((x) => x.mibps)) : null,
    ratioVsNginxPerRound: vsNginxPerRound,
    perRoundVsNginx: nginx ? A.map((x, i) => `${x.mibps.toFixed(0)}/${N[i].mibps.toFixed(0)}`).join(' ') : null,
    cpuSPerGiB: (A.reduce((n, x) => n + x.cpuS, 0) / A.reduce((n, x) => n + x.bytes, 0)) * GiB,
    peakRssMB: peakRss['warm serve'] / 1e6,
  });
  if (nginx)
    roundsTarget(
      target,
      `issue 29: verified warm ${sizeLabel(f.size)} hit >= 0.6x nginx serving the same file, same run`,
      A.map((x, i) => x.mibps / N[i].mibps),
      0.6,
    );
  target('warm serve >= 0.95x plain Node pipe', am / pm >= 0.95, `${(am / pm).toFixed(2)}x`);
  if (nginx) {
    const r = am / median(N.map((x) => x.mibps));
    target('warm serve >= 0.7x nginx sendfile', r >= 0.7, `${r.toFixed(2)}x`);
    await offload(ctx, f, nginx, am);
  } else target('warm serve >= 0.7x nginx sendfile', null, 'nginx not installed');
  plain.child.kill('SIGTERM');

  // 5. Small requests and 6. scale of metadata, on the same warm instance (02-warm-small.mjs).
  await smallRequests(ctx, a, f, blob);
  await metadataScale(ctx, a, blob);
  await a.stop();
}

// Warm offload (issue 15): Airlock decides and records, then nginx sends the file
// (X-Accel-Redirect, deploy/nginx-offload.conf), beside nginx serving the same file itself.
async function offload(ctx, f, nginx, am) {
  const { ROOT, S, work, startAirlock, row, target } = ctx;
  const mib = (xs) => median(xs.map((x) => x.mibps));
  const o = await startAirlock({ offload: 'nginx' });
  await o.warmPage(f);
  await curl(o.fileUrl(f));
  for (let i = 0; i < 600 && !existsSync(o.blobPath(f)); i++) await sleep(100);
  const od = join(work, 'nginx-offload');
  mkdirSync(od, { recursive: true });
  const oport = 40000 + Math.floor(Math.random() * 10000);
  const oconf = readFileSync(join(ROOT, 'deploy', 'nginx-offload.conf'), 'utf8')
    .replace('server 127.0.0.1:8080;', `server ${new URL(o.url).host};`)
    .replace('listen 80;', `listen 127.0.0.1:${oport};`)
    .replace('/var/lib/airlock/', `${join(o.dir, 'data')}/`);
  writeFileSync(
    join(od, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root; ' : ''}worker_processes 1; pid ${od}/nginx.pid; error_log ${od}/error.log; daemon off;\nevents { worker_connections 1024; }\nhttp { access_log off; sendfile on; tcp_nopush on; client_body_temp_path ${od}; proxy_temp_path ${od}; fastcgi_temp_path ${od}; uwsgi_temp_path ${od}; scgi_temp_path ${od};\n${oconf}\n}\n`,
  );
  const ochild = startChild(nginxBinary, ['-c', join(od, 'nginx.conf'), '-p', od]);
  const ourl = `http://127.0.0.1:${oport}/pypi/files/${f.project}/${f.name}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(ourl, { method: 'HEAD' })).status < 500) break;
    } catch {}
    await sleep(50);
  }
  const OF = [],
    OH = [],
    OR = [],
    ND = [];
  await curl(ourl); // the first handover hashes the file (core/handover.ts)
  for (let rep = 0; rep < S.reps; rep++) {
    OF.push(await curl(ourl));
    // The file's change time moved (as a write would): hashed again before the handover.
    const now = new Date();
    utimesSync(o.blobPath(f), now, now);
    OH.push(await curl(ourl));
    // A Range is not handed to nginx: Airlock serves it from verified chunks, through nginx's proxy.
    OR.push(await curl(ourl, '0-'));
    ND.push(await curl(nginx.url));
  }
  const ofm = median(OF.map((x) => x.mibps));
  const ndm = median(ND.map((x) => x.mibps));
  row('warm serve', 'Airlock decides, nginx sends (offload)', { mibps: ofm, ratioVsNginx: ofm / ndm, ratioVsAirlockNode: ofm / am });
  row('warm serve', 'offload, the file hashed before the handover (first or changed, or past recheck_after)', {
    mibps: mib(OH),
    ttfbMs: median(OH.map((x) => x.ttfb)) * 1000,
    ratioVsOffload: mib(OH) / ofm,
  });
  row('warm serve', 'offload, Range bytes=0- (served by Airlock from verified chunks, through nginx)', { mibps: mib(OR), ratioVsOffload: mib(OR) / ofm });
  target('warm offload >= 0.95x nginx serving the file itself', ofm / ndm >= 0.95, `${(ofm / ndm).toFixed(2)}x`);
  ochild.kill('SIGTERM');
  await o.stop();
  nginx.child.kill('SIGTERM');
}
