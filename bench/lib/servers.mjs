// The servers every section starts: Airlock from dist/ with a generated configuration
// (startAirlock), and nginx serving fixed files (startStaticNginx).
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { airlockNodeFlags } from './node-flags.mjs';
import { join } from 'node:path';
import { get } from './http.mjs';
import { startChild, sleep, nginxBinary, RssSampler } from './proc.mjs';

// Section 11: the same fixture image with a signing rule (require: attested, the fixture's signer) and without one.
export const SIGNED_SUBJECT = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
const SIGNED_RULES =
  `      - { repository: sig.local/signed/app, digests: ["${SIGNED_SUBJECT}"], require: attested, signers: [cody] }\n` +
  `      - { repository: sig.local/plain/app, digests: ["${SIGNED_SUBJECT}"] }\n`;

/**
 * The run's startAirlock(opts), over its shared setup (the upstream, the policy's allow list, the
 * work directory). The options a section may pass are described where the configuration reads them.
 */
export function airlockStarter({ ROOT, work, up, UP, allow, LAYER, MALLOC_TUNABLES }) {
  let airlockSeq = 0;
  return async function startAirlock(opts = {}) {
    const dir = join(work, `airlock-${airlockSeq++}`);
    mkdirSync(dir, { recursive: true });
    // opts.prepare: fill the data directory before the server starts (section 7's record).
    if (opts.prepare) await opts.prepare(join(dir, 'data'));
    const cfg = join(dir, 'airlock.yaml');
    writeFileSync(
      cfg,
      `listen: 127.0.0.1:0\ndata_dir: ${join(dir, 'data')}\nlog_level: warn\npypi:\n  upstream: ${UP}/simple/\n  file_hosts: ["127.0.0.1:${up.info.port}"]\n  index_ttl: 3600\n` +
        `oci:\n  default_registry: bench.local\n  inventory: ${opts.inventory ?? 'on-fill'}\n  registries:\n    bench.local: { url: "${UP}" }\n` +
        // opts.signed: the cosign fixture registry (section 11); sig.local/signed/app requires the fixture's attestation, sig.local/plain/app has no signing rule.
        (opts.signed ? `    sig.local: { url: "${opts.signed}" }\n` : '') +
        `hf:\n  upstream: "${UP}"\n` +
        (opts.offload ? `offload:\n  mode: ${opts.offload}\n` : '') +
        // opts.fleet: a replica on the shared PostgreSQL and S3-compatible store (section 3b).
        (opts.fleet
          ? `storage:\n  meta: postgres\n  postgres_url_env: AIRLOCK_BENCH_PG\n  blobs: s3\n  s3: { endpoint: "${opts.fleet.s3}", bucket: airlock, path_style: true, access_key_env: AIRLOCK_BENCH_S3, secret_key_env: AIRLOCK_BENCH_S3 }\n  peers: { secret_env: AIRLOCK_BENCH_FLEET }\n`
          : '') +
        // opts.reviewed: a sha256 listed under bench/model's scan.sha256 (section 1c: a reviewed file is not walked).
        // opts.minAge: a minimum age on every PyPI release (section 10).
        `policy:\n${opts.signed ? '  signing:\n    signers:\n      cody: { issuer: https://github.com/login/oauth, subject: cody@soyland.com }\n' : ''}  hf:\n    allow:\n      - { repo: bench/model, refs: { main: "${up.info.hfCommit}" }${opts.reviewed ? `, scan: { sha256: ["${opts.reviewed}"] }` : ''} }\n  oci:\n    allow:\n      - { repository: bench.local/bench/img, tags: { v1: "${up.info.ociDigest}" } }\n      - { repository: bench.local/bench/layered, tags: { v1: "${up.info.layeredDigest}" } }\n${opts.signed ? SIGNED_RULES : ''}  pypi:\n${opts.minAge ? `    min_age: ${opts.minAge}\n` : ''}    allow:\n${allow.join('\n')}\n` +
        // opts.feed: an advisory feed (section 12) and PyPI advisories refusing from high up.
        (opts.feed && !opts.gate ? `  advisories:\n    refuse: high\n` : '') +
        (opts.feed
          ? `advisories:\n  sources:\n    - { url: "${opts.feed}", ecosystem: PyPI }\n  interval: ${opts.feedInterval ?? 5}\n  poll: ${opts.feedPoll ?? 1}\n`
          : '') +
        // opts.hook: a JSON webhook channel (section 12: the feed change to the alert at the receiver), signed with AIRLOCK_BENCH_HOOK.
        (opts.hook ? `notify:\n  webhooks:\n    - { name: bench, url: "${opts.hook}", secret_env: AIRLOCK_BENCH_HOOK }\n` : '') +
        // opts.gate: the image gate on bench/layered (no advisories imported: its packages count as judged-unknown and pass).
        (opts.gate
          ? `  advisories:\n    refuse: critical\n    images:\n      unjudged: allow\n      repositories: [{ repository: bench.local/bench/img, refuse: none }]\n`
          : ''),
    );
    // Below Linux's ephemeral range (32768 up): a port in it can be taken by any client connection
    // (the rows' curls, the upstream's) before the server listens (EADDRINUSE).
    const port = 20000 + Math.floor(Math.random() * 12000);
    const child = startChild(
      process.execPath,
      [...(await airlockNodeFlags(join(ROOT, 'dist'))), join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--config', cfg],
      {
        // As deployed (Dockerfile, npm start): glibc keeps freed heap for reuse and V8's young generation is capped (src/obs/malloc.ts);
        // BENCH_GLIBC_TUNABLES=<other settings> measures others.
        env: {
          ...process.env,
          GLIBC_TUNABLES: process.env.BENCH_GLIBC_TUNABLES ?? MALLOC_TUNABLES,
          AIRLOCK_LISTEN: `127.0.0.1:${port}`,
          // opts.env: switches read only by the bench (AIRLOCK_BENCH_NO_CHUNK_CHECKS, section 2).
          ...(opts.env ?? {}),
          ...(opts.fleet ? { AIRLOCK_BENCH_PG: opts.fleet.pg, AIRLOCK_BENCH_S3: 'S3RVER', AIRLOCK_BENCH_FLEET: 'bench-fleet-secret-0123456789abcdef' } : {}),
          ...(opts.hook ? { AIRLOCK_BENCH_HOOK: 'bench-hook-secret' } : {}),
        },
      },
    );
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch(`${url}/-/healthz`)).ok) break;
      } catch {}
      await sleep(50);
    }
    const rss = new RssSampler(child.pid);
    return {
      url,
      dir,
      rss,
      fileUrl: (f) => `${url}/pypi/files/${f.project}/${f.name}`,
      blobUrl: (f) => `${url}/v2/bench/img/blobs/sha256:${up.info.files[f.name].sha256}`,
      manifestUrl: `${url}/v2/bench/img/manifests/v1`,
      layeredManifestUrl: `${url}/v2/bench/layered/manifests/v1`,
      layerUrl: `${url}/v2/bench/layered/blobs/sha256:${up.info.files[LAYER.name].sha256}`,
      hfUrl: `${url}/hf/bench/model/resolve/main/weights.bin`,
      blobPath: (f) => join(dir, 'data', 'blobs', 'sha256', up.info.files[f.name].sha256.slice(0, 2), up.info.files[f.name].sha256),
      warmPage: (f) => get(`${url}/pypi/simple/${f.project}/`).then((r) => r.text()),
      async stop() {
        rss.stop();
        child.kill('SIGTERM');
        // A server that already exited (a random port another process held) fires no second 'exit'.
        if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

/** nginx serving files at fixed paths ({ '/path': [file, content type] }), one worker, sendfile. */
export function startStaticNginx(work, name, paths) {
  const nd = join(work, name);
  mkdirSync(nd, { recursive: true });
  const port = 20000 + Math.floor(Math.random() * 12000); // below the ephemeral range, as startAirlock
  const locations = Object.entries(paths)
    .map(([p, [file, type]]) => `location = ${p} { alias ${file}; default_type "${type}"; }`)
    .join(' ');
  writeFileSync(
    join(nd, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root; ' : ''}worker_processes 1; pid ${nd}/nginx.pid; error_log ${nd}/error.log; daemon off;\nevents { worker_connections 1024; }\nhttp { access_log off; sendfile on; tcp_nopush on; client_body_temp_path ${nd}; proxy_temp_path ${nd}; fastcgi_temp_path ${nd}; uwsgi_temp_path ${nd}; scgi_temp_path ${nd};\n  server { listen 127.0.0.1:${port}; ${locations} } }\n`,
  );
  const child = startChild(nginxBinary, ['-c', join(nd, 'nginx.conf'), '-p', nd]);
  const url = `http://127.0.0.1:${port}`;
  const ready = (async () => {
    for (let i = 0; i < 100; i++) {
      try {
        if ((await fetch(`${url}${Object.keys(paths)[0]}`, { method: 'HEAD' })).ok) return;
      } catch {}
      await sleep(50);
    }
    throw new Error('nginx (static) did not start');
  })();
  return { child, url, ready };
}
