// node bench/walk.mjs [--size=MiB] [--rounds=N] [--before=<another build's dist>]
//
// Issue 29: the dataset-tar walk measured alone, in-process. Writes the bench's WebDataset shard
// (bench/make-shard.py: Python's tarfile, 96 KiB binary samples with a caption and a JSON record
// each), holds it in memory, and scans it with this build's scanner (dist/, `npm run build`
// first) the way the fill's inspector does: reads of fresh buffers (the spool read into a new
// buffer each time). With --before, a second build (e.g. the previous commit's dist/) scans the
// same bytes in the same process, the two alternating round by round. Prints CPU-s per GiB and
// MiB/s per round. Run with the glibc settings Airlock is deployed with (set below if unset:
// a fresh buffer per read otherwise costs page faults this machine's memory balloon makes dear).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TUNABLES = 'glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432:glibc.malloc.arena_max=1';
if (process.env.GLIBC_TUNABLES === undefined) {
  const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env: { ...process.env, GLIBC_TUNABLES: TUNABLES } });
  process.exit(r.status ?? 1);
}
const arg = (name, def) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const size = Number(arg('size', 1024)) << 20;
const rounds = Number(arg('rounds', 5));
const before = arg('before', undefined);

const dir = mkdtempSync(join(tmpdir(), 'airlock-walk-'));
let bytes;
try {
  execFileSync('python3', [join(ROOT, 'bench', 'make-shard.py'), join(dir, 'shard.tar'), String(size)]);
  bytes = readFileSync(join(dir, 'shard.tar'));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const load = async (dist) => (await import(pathToFileURL(join(resolve(dist), 'scan', 'index.js')).href)).scan;
const builds = { now: await load(join(ROOT, 'dist')) };
if (before) builds.before = await load(before);
const src = {
  size: bytes.length,
  read: async (pos, len) => {
    const b = Buffer.allocUnsafe(Math.max(0, Math.min(len, bytes.length - pos)));
    bytes.copy(b, 0, pos, pos + b.length);
    return b;
  },
};
const out = Object.fromEntries(Object.keys(builds).map((k) => [k, []]));
const order = Object.keys(builds);
for (let r = 0; r < rounds; r++) {
  for (const k of r % 2 ? [...order].reverse() : order) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const report = await builds[k](src, 'shard.tar', { cleared: () => {} });
    const c = process.cpuUsage(c0);
    if (report.findings.some((f) => f.severity === 'refuse')) throw new Error(`${k}: the benign shard was refused: ${report.findings[0].message}`);
    out[k].push({ cpuPerGiB: (c.user + c.system) / 1e6 / (bytes.length / 2 ** 30), mibps: bytes.length / 2 ** 20 / ((performance.now() - t0) / 1000) });
  }
}
console.log(
  `walk of a ${(bytes.length / 2 ** 20).toFixed(0)} MiB WebDataset shard, ${rounds} rounds (load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`,
);
for (const k of order) {
  console.log(`${k.padEnd(7)} ${out[k].map((x) => `${x.cpuPerGiB.toFixed(2)} CPU-s/GiB ${x.mibps.toFixed(0)} MiB/s`).join(' | ')}`);
}
