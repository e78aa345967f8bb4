// `airlock pin pypi -r` on a lock file of N releases (issue 27): the built CLI, wall clock (process
// start included, as an operator runs it), against a local PEP 691 index serving N projects of one
// file each. Rows: the first pin (N entries added, one policy write), the same file again (N
// already allowed, nothing written) and a single `pin pypi NAME==VERSION` beside them (what one
// pin costs, mostly process start). Run by bench/run.mjs section 9.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A PEP 691 JSON index of `n` projects bench-pin-<i>, each with one wheel (only pages are asked; a pin reads no file). */
async function startIndex(n) {
  const projects = new Map();
  for (let i = 0; i < n; i++) {
    const name = `bench-pin-${i}`;
    const filename = `bench_pin_${i}-1.0-py3-none-any.whl`;
    projects.set(name, { filename, sha256: createHash('sha256').update(filename).digest('hex') });
  }
  const server = createServer((req, res) => {
    const m = /^\/simple\/([^/]+)\/$/.exec(req.url ?? '');
    const p = m && projects.get(m[1]);
    if (!p) return res.writeHead(404).end();
    const body = JSON.stringify({
      meta: { 'api-version': '1.1' },
      name: m[1],
      files: [{ filename: p.filename, url: `/files/${p.filename}`, hashes: { sha256: p.sha256 } }],
    });
    res.writeHead(200, { 'content-type': 'application/vnd.pypi.simple.v1+json' }).end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { projects, port: server.address().port, stop: () => new Promise((r) => server.close(r)) };
}

// CPU seconds as well as wall clock where GNU time is installed: on a shared machine the wall clock is mostly waiting.
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

function cli(root, args, dir) {
  const t0 = performance.now();
  const cpuFile = join(dir, 'cpu.txt');
  const argv = [join(root, 'dist', 'cli', 'main.js'), ...args];
  const [cmd, cmdArgs] = GNU_TIME ? [GNU_TIME, ['-f', '%U %S', '-o', cpuFile, 'node', ...argv]] : ['node', argv];
  return new Promise((resolve, reject) =>
    execFile(cmd, cmdArgs, { timeout: 300_000 }, (err, stdout, stderr) => {
      if (err && err.code !== 1) return reject(new Error(`airlock ${args.join(' ')}: ${stderr.trim() || err.message}`));
      const cpu = GNU_TIME ? readFileSync(cpuFile, 'utf8').trim().split('\n').pop().split(' ').map(Number) : null;
      resolve({ seconds: (performance.now() - t0) / 1000, cpuSeconds: cpu ? cpu[0] + cpu[1] : null, stdout });
    }),
  );
}

/** Median seconds for the first pin of an N-release lock file, the same again, and one single pin, over `reps` fresh policies. */
export async function pinBulkTimes(root, work, n, reps) {
  const index = await startIndex(n);
  try {
    const dir = mkdtempSync(join(work, 'pin-bulk-'));
    const req = join(dir, 'requirements.txt');
    writeFileSync(req, [...index.projects].map(([name, p]) => `${name}==1.0 \\\n    --hash=sha256:${p.sha256}\n`).join(''));
    const runs = { first: [], again: [], single: [] };
    for (let r = 0; r < reps; r++) {
      const cfg = join(dir, `airlock-${r}.yaml`);
      writeFileSync(
        cfg,
        `data_dir: ${join(dir, `data-${r}`)}\npypi:\n  upstream: http://127.0.0.1:${index.port}/simple/\n  file_hosts: ["127.0.0.1:${index.port}"]\npolicy:\n  pypi:\n    allow: []\n`,
      );
      const a = await cli(root, ['pin', 'pypi', '-r', req, '--config', cfg], dir);
      if (!a.stdout.includes(`pinned: ${n} added`)) throw new Error(`pin -r did not add ${n}: ${a.stdout.trim().split('\n').pop()}`);
      runs.first.push(a);
      const b = await cli(root, ['pin', 'pypi', '-r', req, '--config', cfg], dir);
      if (!b.stdout.includes(`${n} already allowed`)) throw new Error(`pin -r again: ${b.stdout.trim().split('\n').pop()}`);
      runs.again.push(b);
      runs.single.push(await cli(root, ['pin', 'pypi', `bench-pin-0==1.0`, '--config', cfg], dir));
    }
    const fig = (xs) => ({ seconds: median(xs.map((x) => x.seconds)), cpuSeconds: GNU_TIME ? median(xs.map((x) => x.cpuSeconds)) : null });
    return { first: fig(runs.first), again: fig(runs.again), single: fig(runs.single) };
  } finally {
    await index.stop();
  }
}
