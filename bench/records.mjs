// Record throughput (issue 15): pull rows per second through the Recorder's group commit into
// SQLite and into a real PostgreSQL 15 (started here in a temporary directory), and with three
// stores (replicas) appending to one PostgreSQL chain at once. Run by bench/run.mjs section 6.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';

const BIN = '/usr/lib/postgresql/15/bin';

function pgTool(tool, args) {
  const cmd = join(BIN, tool);
  if (process.getuid?.() === 0) return execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe' });
  return execFileSync(cmd, args, { stdio: 'pipe' });
}

async function freePort() {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}

/** PostgreSQL 15 with its defaults (fsync on: the rate a real deployment pays), or null when not installed. */
export async function startPostgres() {
  try {
    execFileSync(join(BIN, 'initdb'), ['--version'], { stdio: 'pipe' });
  } catch {
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-pg-'));
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  pgTool('initdb', ['-D', data, '-U', 'airlock', '-A', 'trust', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  pgTool('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, 'start']);
  return {
    url: `postgres://airlock@127.0.0.1:${port}/postgres`,
    stop() {
      try {
        pgTool('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const row = (i, who) => ({
  ts: Date.now(),
  client: who,
  ecosystem: 'pypi',
  name: `pkg-${i % 500}`,
  version: '1.0',
  filename: `pkg-${i % 500}-1.0-py3-none-any.whl`,
  sha256: 'a'.repeat(64),
  size: 12345,
  cache: 'hit',
  decision: 'allow',
  rule: 'pypi.allow[0]',
  requestId: `r-${i}`,
});

/** Rows per second: `writers` recorders (one per store), each awaiting `n` rows recorded the way the server does (served rows, many in flight). */
export async function recordRate(ROOT, stores, n) {
  const { Recorder } = await import(join(ROOT, 'dist', 'core', 'records.js'));
  const { Metrics } = await import(join(ROOT, 'dist', 'obs', 'metrics.js'));
  const log = pino({ level: 'silent' });
  const t0 = performance.now();
  await Promise.all(
    stores.map(async (s, w) => {
      const rec = new Recorder(s, new Metrics(false), log);
      // 64 requests in flight per replica, each waiting for its row's commit before the next.
      let next = 0;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (next < n) await rec.recordServed(row(next++, `replica-${w}`));
        }),
      );
      await rec.flush();
    }),
  );
  return (stores.length * n) / ((performance.now() - t0) / 1000);
}
