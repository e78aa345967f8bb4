import { constants, accessSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { LoadedConfig } from './load.js';

/** The host and port of a `listen` setting. */
export function splitListen(listen: string): { hostname: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { hostname: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

/**
 * What `serve` will need from the machine, checked before it starts (and by `airlock check`):
 * a data directory it can create and write, and an address it can listen on. Each problem is
 * one line naming the setting; `inUse` lists an address taken (a running Airlock, in `check`).
 */
export async function preflight(loaded: LoadedConfig, opts: { listen?: boolean } = {}): Promise<{ problems: string[]; inUse?: string }> {
  const problems: string[] = [];
  const dir = loaded.dataDir;
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK);
    const probe = join(dir, `.airlock-write-check-${process.pid}`);
    writeFileSync(probe, 'ok');
    rmSync(probe);
  } catch (e) {
    problems.push(`data_dir ${dir} is not a writable directory: ${systemMessage(e)}`);
  }
  if (opts.listen === false) return { problems };
  const { hostname, port } = splitListen(loaded.config.listen);
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const s = createServer();
    s.once('error', (e) => resolve(e));
    s.listen({ host: hostname, port }, () => s.close(() => resolve(null)));
  });
  if (err?.code === 'EADDRINUSE') return { problems, inUse: `listen ${loaded.config.listen} is in use (another process, or this Airlock already running)` };
  if (err) problems.push(`listen ${loaded.config.listen} cannot be used: ${systemMessage(err)}`);
  return { problems };
}

/** A system error as one line (no stack): "permission denied (EACCES)". */
export function systemMessage(e: unknown): string {
  const x = e as NodeJS.ErrnoException;
  const text: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
    ENOTDIR: 'a path component is not a directory',
    EADDRINUSE: 'address in use',
    EADDRNOTAVAIL: 'address not available on this machine',
    ENOTFOUND: 'host name not found',
  };
  return x.code && text[x.code] ? `${text[x.code]} (${x.code})` : (x.message ?? String(e));
}
