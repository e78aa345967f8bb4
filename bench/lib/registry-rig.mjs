// What bench/cold-peers.mjs and bench/gated-first-pull.mjs share: a work directory and the child
// processes started in it (killed and removed on exit), a one-image registry tree served by nginx
// as the upstream, and the two unverified caches Airlock is measured against (nginx proxy_cache and
// distribution's pull-through cache), each started empty.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nginxBinary, sleep } from './proc.mjs';
import { selfSignedCert } from './tls.mjs';

export const REGISTRY = ['/usr/bin/docker-registry'].find((p) => existsSync(p));
const digestOf = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A port the kernel says is free now (other servers share this machine). */
export const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

/**
 * CPU seconds (user + system, all threads) of a process; with `waited`, also those of its children
 * that have exited and been waited for.
 */
export function cpu(pid, { waited = false } = {}) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12]) + (waited ? Number(f[13]) + Number(f[14]) : 0)) / 100;
  } catch {
    return 0;
  }
}

/** The process and its descendants. */
export function tree(pid) {
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
}

/**
 * The rig of one bench program: `prefix` names its work directory; with `pin`, servers run on CPU 0
 * (taskset). Every child started is killed, and the work directory removed, when the process exits.
 * With `tls`, the upstream speaks HTTPS, as every real registry does, with a certificate made here
 * for 127.0.0.1 (`ca`: its file, which each cache is given to trust: Node's NODE_EXTRA_CA_CERTS,
 * Go's SSL_CERT_FILE, nginx's proxy_ssl_trusted_certificate with verification on).
 */
export function createRig({ prefix, pin = false, tls = false }) {
  if (!nginxBinary) throw new Error('nginx is needed for the upstream');
  const work = mkdtempSync(join(tmpdir(), prefix));
  const made = tls ? selfSignedCert(work) : null;
  const ca = made?.cert ?? null;
  const key = made?.key;
  const children = new Set();
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });
  process.on('SIGINT', () => process.exit(130));

  const start = (cmd, args, opts = {}) => {
    const full = pin ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args];
    const child = spawn(full[0], full[1], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
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
  // A GET that trusts the rig's certificate (fetch takes no CA), resolving with the status.
  const probe = (url) =>
    new Promise((resolve, reject) => {
      const get = url.startsWith('https:') ? httpsGet : httpGet;
      get(url, ca ? { ca: readFileSync(ca) } : {}, (r) => {
        r.resume();
        r.on('end', () => resolve(r.statusCode));
      }).on('error', reject);
    });
  const waitFor = async (url, what, child) => {
    for (let i = 0; i < 400; i++) {
      try {
        if ((await probe(url)) < 500) return;
      } catch {}
      if (child?.exitCode != null) throw new Error(`${what} exited: ${child.lastError()}`);
      await sleep(50);
    }
    throw new Error(`${what} did not come up at ${url}`);
  };
  /** Between rows: dirty pages written back and, with `prefault`, 2 GiB of page cache turned over. */
  const settle = (prefault) => {
    execFileSync('sync');
    if (!prefault) return;
    const f = join(work, 'prefault');
    execFileSync('dd', ['if=/dev/zero', `of=${f}`, 'bs=1M', 'count=2048', 'status=none']);
    rmSync(f);
  };
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

  /**
   * The image bench/layer:v1 (a config and the one layer `writeLayer(path)` writes, returning its
   * digest and size) in a registry tree, served by nginx as the upstream (GET and HEAD, digests in
   * headers).
   */
  const startUpstream = async (writeLayer, layerMediaType) => {
    const www = join(work, 'www');
    const repo = join(www, 'v2', 'bench', 'layer');
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(join(repo, 'manifests'), { recursive: true });
    const layer = await writeLayer(join(work, 'layer.tmp'));
    execFileSync('mv', [join(work, 'layer.tmp'), join(repo, 'blobs', layer.digest)]);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } }));
    const configDigest = digestOf(config);
    writeFileSync(join(repo, 'blobs', configDigest), config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: [{ mediaType: layerMediaType, digest: layer.digest, size: layer.size }],
      }),
    );
    const manifestDigest = digestOf(manifest);
    writeFileSync(join(repo, 'manifests', manifestDigest), manifest);
    writeFileSync(join(repo, 'manifests', 'v1'), manifest);
    const port = await freePort();
    const conf = nginxConf(
      join(work, 'up'),
      `server { listen 127.0.0.1:${port}${ca ? ` ssl; ssl_certificate ${ca}; ssl_certificate_key ${key}` : ''}; root ${www};
  location = /v2/ { default_type application/json; return 200 '{}'; }
  location ~ "^/v2/.+/blobs/(sha256:[0-9a-f]{64})$" { default_type application/octet-stream; add_header Docker-Content-Digest $1; }
  location ~ ^/v2/.+/manifests/ { default_type application/vnd.oci.image.manifest.v1+json; add_header Docker-Content-Digest ${manifestDigest}; }
}`,
    );
    const child = start(nginxBinary, ['-c', conf, '-p', join(work, 'up')]);
    const url = `${ca ? 'https' : 'http'}://127.0.0.1:${port}`;
    await waitFor(`${url}/v2/`, 'upstream nginx', child);
    return { url, child, layer, manifest, manifestDigest, blobPath: `/v2/bench/layer/blobs/${layer.digest}` };
  };

  /** nginx proxy_cache in front of `up`, its cache empty. */
  const startNginxCache = async (up) => {
    const port = await freePort();
    const d = join(work, `ngx-${port}`);
    const conf = nginxConf(
      d,
      `proxy_cache_path ${d}/cache levels=1:2 keys_zone=c:10m max_size=20g inactive=1d use_temp_path=off;
  server { listen 127.0.0.1:${port};
    location / { proxy_pass ${up};${ca ? ` proxy_ssl_verify on; proxy_ssl_trusted_certificate ${ca}; proxy_ssl_name 127.0.0.1; proxy_ssl_session_reuse on;` : ''} proxy_cache c; proxy_cache_valid 200 1d; proxy_buffering on; proxy_buffer_size 64k; proxy_buffers 32 64k; proxy_busy_buffers_size 256k; proxy_temp_file_write_size 1m; } }`,
    );
    const child = start(nginxBinary, ['-c', conf, '-p', d]);
    await waitFor(`http://127.0.0.1:${port}/v2/`, 'nginx proxy_cache', child);
    return { url: `http://127.0.0.1:${port}`, child, dir: d };
  };

  /** distribution's pull-through cache of `up` (null when docker-registry is not installed), its storage empty. */
  const startDistribution = async (up) => {
    if (!REGISTRY) return null;
    const port = await freePort();
    const d = join(work, `reg-${port}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, 'config.yml'),
      `version: 0.1\nlog: { level: error }\nstorage: { filesystem: { rootdirectory: ${d}/data }, delete: { enabled: true } }\nhttp: { addr: 127.0.0.1:${port} }\nproxy: { remoteurl: ${up} }\n`,
    );
    const child = start(REGISTRY, ['serve', join(d, 'config.yml')], ca ? { env: { ...process.env, SSL_CERT_FILE: ca } } : {});
    await waitFor(`http://127.0.0.1:${port}/v2/`, 'distribution', child);
    return { url: `http://127.0.0.1:${port}`, child, dir: d };
  };

  return { work, ca, start, stop, waitFor, settle, startUpstream, startNginxCache, startDistribution };
}
