// Section 3b. Coalescing across three replicas (issue 15): three Airlock processes on one PostgreSQL and
// one S3-compatible store (s3rver), behind nginx round robin, 16 clients on one cold file at
// 20 MiB/s, beside section 3's one process. The filling replica's clients stream as bytes arrive;
// the other replicas stream the filling replica's fill (storage.peers; bench/fleet-stream.mjs splits the two).
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { median, sleep, startChild, nginxBinary } from '../lib/proc.mjs';
import { get } from '../lib/http.mjs';
import { fleetCurl, fleetSplit } from '../fleet-stream.mjs';

export async function run(ctx) {
  const { ROOT, SLOW_WAN, CLIENTS, work, files, UP, setRate, startAirlock, row, target } = ctx;
  if (!nginxBinary) return;
  const { startPostgres } = await import(join(ROOT, 'bench', 'records.mjs'));
  const pgsrv = await startPostgres();
  const { default: S3rver } = await import('s3rver');
  const s3dir = join(work, 's3');
  mkdirSync(s3dir, { recursive: true });
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', directory: s3dir, silent: true, configureBuckets: [{ name: 'airlock', configs: [] }] });
  const s3addr = await s3.run();
  if (pgsrv) {
    const fleet = { pg: pgsrv.url, s3: `http://127.0.0.1:${s3addr.port}` };
    const reps = [];
    for (let i = 0; i < 3; i++) reps.push(await startAirlock({ fleet }));
    const f = files.find((x) => x.project === 'bench-coal3r');
    for (const r of reps) await r.warmPage(f);
    const nd = join(work, 'nginx-fleet');
    mkdirSync(nd, { recursive: true });
    const lport = 40000 + Math.floor(Math.random() * 10000);
    writeFileSync(
      join(nd, 'nginx.conf'),
      `${process.getuid?.() === 0 ? 'user root; ' : ''}worker_processes 1; pid ${nd}/nginx.pid; error_log ${nd}/error.log; daemon off;\nevents { worker_connections 1024; }\nhttp { access_log off; client_body_temp_path ${nd}; proxy_temp_path ${nd}; fastcgi_temp_path ${nd}; uwsgi_temp_path ${nd}; scgi_temp_path ${nd};\n` +
        `upstream airlock { ${reps.map((r) => `server ${new URL(r.url).host};`).join(' ')} keepalive 32; }\n` +
        `server { listen 127.0.0.1:${lport}; location / { proxy_pass http://airlock; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $http_host; proxy_buffering off; proxy_read_timeout 300s; add_header x-bench-replica $upstream_addr always; } } }\n`,
    );
    const lb = startChild(nginxBinary, ['-c', join(nd, 'nginx.conf'), '-p', nd]);
    await sleep(300);
    await setRate(SLOW_WAN);
    await get(`${UP}/-/reset`);
    const url = `http://127.0.0.1:${lport}/pypi/files/${f.project}/${f.name}`;
    const all = await Promise.all(Array.from({ length: CLIENTS }, () => fleetCurl(url)));
    const counts = await (await get(`${UP}/-/counts`)).json();
    const fetches = counts[`/files/${f.name}`] ?? 0;
    const sorted = all.map((x) => x.total).sort((a, b) => a - b);
    row('coalescing (20 MiB/s), 3 replicas', `${CLIENTS} clients via nginx`, {
      upstreamFetches: fetches,
      fastestTotalS: sorted[0],
      worstTotalS: sorted[sorted.length - 1],
      medianTotalS: median(sorted),
      worstTtfbMs: Math.max(...all.map((x) => x.ttfb)) * 1000,
    });
    target(`coalescing across 3 replicas: exactly 1 upstream fetch for ${CLIENTS} clients`, fetches === 1, `${fetches}`);
    // Issue 29: the waiting replicas' clients beside the filling replica's.
    const named = (name, ok, detail, extra) => target(`issue 29: ${name}`, ok, detail, extra);
    fleetSplit(all, row, named, `${CLIENTS} clients via nginx`);
    await setRate(0);
    lb.kill('SIGTERM');
    for (const r of reps) await r.stop();
    pgsrv.stop();
  } else row('coalescing (20 MiB/s), 3 replicas', `${CLIENTS} clients via nginx`, { note: 'postgresql-15 not installed: row skipped' });
  await s3.close();
}
