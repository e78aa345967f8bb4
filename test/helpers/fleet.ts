import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './oci-tools.js';

/** `airlock serve` as its own process, from its start: everything it printed so far, and its exit code once it exits. */
export function spawnServe(config: string, env: Record<string, string> = {}): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [join(process.cwd(), 'dist', 'cli', 'main.js'), 'serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

/** `airlock serve` as its own process; resolves once it listens, with its port. */
export function serveProcess(config: string, env: Record<string, string> = {}): Promise<{ proc: ChildProcess; port: number; log: () => string }> {
  const { proc, out } = spawnServe(config, env);
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', () => {
      const m = /"listen":"127\.0\.0\.1:(\d+)"/.exec(out());
      if (m) resolve({ proc, port: Number(m[1]), log: out });
    });
    proc.once('exit', (code) => reject(new Error(`airlock exited (${code}): ${out()}`)));
  });
}

/**
 * Debian's nginx in front of replicas, round robin, streaming (no buffering), retrying another
 * replica when one refuses the connection (as a load balancer in front of a fleet does).
 */
export async function startNginx(dir: string, backends: number[], extra = ''): Promise<{ url: string; stop(): Promise<void> }> {
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'tmp')};
  proxy_temp_path ${join(dir, 'tmp')};
  fastcgi_temp_path ${join(dir, 'tmp')};
  uwsgi_temp_path ${join(dir, 'tmp')};
  scgi_temp_path ${join(dir, 'tmp')};
  upstream airlock { ${backends.map((p) => `server 127.0.0.1:${p} max_fails=0;`).join(' ')} }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://airlock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 120s;
      proxy_next_upstream error timeout;
    }
${extra}
  }
}
`,
  );
  const proc = spawn('/usr/sbin/nginx', ['-c', conf, '-p', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/-/healthz`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      proc.kill('SIGQUIT');
      await once(proc, 'exit');
    },
  };
}
