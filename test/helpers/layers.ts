import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

/**
 * Image layers for the inventory tests, made the way image builders make them: a root
 * filesystem written to disk, archived by the system tar, compressed by zlib (gzip) or the zstd
 * command. Package databases in them come from the real tools (this machine's dpkg database, the
 * fixtures test/images/make-fixtures.sh wrote with rpm and pip).
 */
export const FIXTURES = new URL('../images/', import.meta.url).pathname;

export type Compression = 'gzip' | 'zstd' | 'none';

function tarOf(root: string): Buffer {
  return execFileSync('tar', ['-C', root, '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-cf', '-', '.'], { maxBuffer: 1 << 30 });
}

function compress(t: Buffer, compression: Compression): Buffer {
  if (compression === 'gzip') return gzipSync(t);
  if (compression === 'zstd') return execFileSync('zstd', ['-q', '-c', '-3'], { input: t, maxBuffer: 1 << 30 });
  return t;
}

export function layerOf(root: string, compression: Compression = 'gzip'): Buffer {
  return compress(tarOf(root), compression);
}

/** A layer as an image carries it: bytes, diff id and media type. */
export function layerBlob(root: string, compression: Compression = 'gzip'): { bytes: Buffer; diffId: string; mediaType: string } {
  const t = tarOf(root);
  const mediaType = `application/vnd.oci.image.layer.v1.tar${compression === 'none' ? '' : `+${compression}`}`;
  return { bytes: compress(t, compression), diffId: `sha256:${createHash('sha256').update(t).digest('hex')}`, mediaType };
}

/** A fresh root directory; `files` maps paths to contents (strings or Buffers), or to {symlink}. */
export function rootfs(files: Record<string, string | Buffer | { symlink: string } | { copyDir: string }>): string {
  const root = mkdtempSync(join(tmpdir(), 'airlock-rootfs-'));
  for (const [p, v] of Object.entries(files)) {
    const full = join(root, p);
    mkdirSync(dirname(full), { recursive: true });
    if (typeof v === 'string' || Buffer.isBuffer(v)) writeFileSync(full, v);
    else if ('symlink' in v) symlinkSync(v.symlink, full);
    else cpSync(v.copyDir, full, { recursive: true });
  }
  return root;
}

/** This machine's dpkg database and os-release (Debian), as a Debian base image carries them. */
export function debianBase(extra: Record<string, string | Buffer | { symlink: string } | { copyDir: string }> = {}): string {
  return rootfs({
    'usr/lib/os-release': readFileSync('/usr/lib/os-release'),
    'etc/os-release': { symlink: '../usr/lib/os-release' },
    'var/lib/dpkg/status': readFileSync('/var/lib/dpkg/status'),
    ...extra,
  });
}

/** What dpkg-query says is on disk here: package -> {version, source, sourceVersion}. */
export function dpkgQuery(): Map<string, { version: string; source: string; sourceVersion: string; arch: string }> {
  const out = execFileSync('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}|${Package}|${Version}|${source:Package}|${source:Version}|${Architecture}\n'], {
    encoding: 'utf8',
  });
  const m = new Map<string, { version: string; source: string; sourceVersion: string; arch: string }>();
  for (const line of out.trim().split('\n')) {
    const [st, pkg, version, source, sourceVersion, arch] = line.split('|');
    // Second letter: the package state (i installed, U unpacked, F half-configured, H half-installed, W/t triggers); n and c have no files.
    if (!st || 'nc'.includes(st[1])) continue;
    m.set(pkg, { version, source, sourceVersion, arch });
  }
  return m;
}
