// Child processes and the samplers the bench reads them with (/proc): shared by bench/run.mjs and its sections.
import { spawn } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
process.on('SIGINT', () => process.exit(130));

/** Spawn a child killed when the bench exits. */
export function startChild(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...opts });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Start a node program that prints one JSON line when ready. */
export function startJsonChild(script, args) {
  const child = startChild(process.execPath, [script, ...args]);
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (l) => resolve({ child, info: JSON.parse(l) }));
    child.once('exit', (c) => reject(new Error(`${script} exited with ${c}`)));
  });
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const nginxBinary = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));

/** CPU seconds (user + system) a process has used so far (/proc/<pid>/stat, 100 ticks a second). */
export function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Peak RSS sampler for one pid (VmRSS every 20 ms). */
export class RssSampler {
  constructor(pid) {
    this.pid = pid;
    this.peak = 0;
    this.timer = setInterval(() => this.sample(), 20);
  }
  sample() {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      if (m) this.peak = Math.max(this.peak, Number(m[1]) * 1024);
    } catch {}
  }
  reset() {
    const p = this.peak;
    this.peak = 0;
    this.sample();
    return p;
  }
  stop() {
    clearInterval(this.timer);
    return this.peak;
  }
}
