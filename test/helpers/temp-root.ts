import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * vitest's global setup: every test run gets its own temporary root (TMPDIR, which `os.tmpdir()`
 * and every child process honour), removed when the run ends. Tests clean up after themselves;
 * this is the backstop for what a failed or killed test, a real client's home directory or a
 * server's socket directory leaves behind, so that runs never pile up in /tmp (they had filled
 * this machine's disk: ~75 GB of leftovers, until fetches were refused for want of free space).
 */
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'airlock-tests-'));
  // As /tmp itself: other users reach it too (PostgreSQL's initdb runs as postgres when tests run as root).
  chmodSync(root, 0o1777);
  process.env.TMPDIR = root;
  return () => {
    const left = readdirSync(root).length;
    rmSync(root, { recursive: true, force: true });
    if (left > 0) process.stderr.write(`[temp-root] removed ${left} entries tests left in ${root}\n`);
  };
}
