import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './oci-tools.js';

const BIN = '/usr/lib/postgresql/15/bin';

/** Run a PostgreSQL tool: as the postgres user when the tests run as root (it refuses root). */
function pgTool(tool: string, args: string[]): string {
  const cmd = join(BIN, tool);
  if (process.getuid?.() === 0) return execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface TestPostgres {
  /** Connection string of the superuser `airlock` on the `postgres` database. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL 15 (Debian's postgresql-15) in a temporary directory on a loopback port,
 * trust auth for user `airlock`, fsync off (tests), stopped and removed by stop().
 */
export async function startPostgres(): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-pg-'));
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  pgTool('initdb', ['-D', data, '-U', 'airlock', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  pgTool('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
    'start',
  ]);
  return {
    url: `postgres://airlock@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      try {
        pgTool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
