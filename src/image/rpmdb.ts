import Database from 'better-sqlite3';
import type { Pkg } from './facts.js';

/**
 * The rpm database of rpm >= 4.16 (var/lib/rpm/rpmdb.sqlite, or usr/lib/sysimage/rpm/ on newer
 * Fedora and openSUSE): table Packages, one rpm header per row. SQLite itself is read with
 * better-sqlite3 (already Airlock's metadata store); the header is rpm's documented binary
 * layout (rpm's doc/manual/format.md, "Header"): a big-endian index count and data length, then
 * 16-byte index entries (tag, type, offset, count) into the data store. Only the tags below are
 * read. Checked against `rpm -qa` on a database the real rpm wrote (test/unit/image.test.ts).
 */
const TAG = { name: 1000, version: 1001, release: 1002, epoch: 1003, arch: 1022, sourcerpm: 1044 } as const;
const TYPE_INT32 = 4;
const TYPE_STRING = 6;

export class RpmHeaderError extends Error {}

/** The tags Airlock reads from one header blob (as stored in rpmdb.sqlite: without the 8-byte magic). */
export function readHeader(blob: Buffer): Pkg {
  if (blob.length < 8) throw new RpmHeaderError('header shorter than its preamble');
  const il = blob.readUInt32BE(0);
  const dl = blob.readUInt32BE(4);
  const dataStart = 8 + il * 16;
  if (il > 0xffff || dataStart + dl > blob.length) throw new RpmHeaderError(`header declares ${il} entries and ${dl} data bytes; the blob has ${blob.length}`);
  const got: Partial<Record<keyof typeof TAG, string>> = {};
  const wanted = new Map<number, keyof typeof TAG>(Object.entries(TAG).map(([k, v]) => [v, k as keyof typeof TAG]));
  for (let i = 0; i < il; i++) {
    const e = 8 + i * 16;
    const tag = blob.readUInt32BE(e);
    const key = wanted.get(tag);
    if (!key) continue;
    const type = blob.readUInt32BE(e + 4);
    const off = blob.readInt32BE(e + 8);
    if (off < 0 || off >= dl) throw new RpmHeaderError(`tag ${tag}: offset ${off} outside the data (${dl} bytes)`);
    const at = dataStart + off;
    if (type === TYPE_STRING) {
      const end = blob.indexOf(0, at);
      if (end < 0 || end > dataStart + dl) throw new RpmHeaderError(`tag ${tag}: unterminated string`);
      got[key] = blob.toString('utf8', at, end);
    } else if (type === TYPE_INT32) {
      if (at + 4 > dataStart + dl) throw new RpmHeaderError(`tag ${tag}: integer past the data`);
      got[key] = String(blob.readUInt32BE(at));
    }
  }
  if (!got.name || got.version === undefined) throw new RpmHeaderError('header has no name or version');
  const evr = `${got.epoch && got.epoch !== '0' ? `${got.epoch}:` : ''}${got.version}${got.release ? `-${got.release}` : ''}`;
  const pkg: Pkg = { name: got.name, version: evr };
  if (got.arch) pkg.arch = got.arch;
  // SOURCERPM is "<name>-<version>-<release>.src.rpm"; the name is what advisories list.
  const src = got.sourcerpm ? /^(.+)-[^-]+-[^-]+\.(?:no)?src\.rpm$/.exec(got.sourcerpm) : null;
  pkg.source = src ? src[1] : got.name;
  return pkg;
}

/** Every package in a temporary copy of an rpmdb.sqlite file (its -wal, if any, beside it). */
export function readRpmSqlite(path: string): Pkg[] {
  // Opened read-write: it is Airlock's own temporary copy, and a WAL database needs its -shm.
  const db = new Database(path, { fileMustExist: true });
  try {
    const rows = db.prepare<[], { blob: Buffer }>('SELECT blob FROM Packages').all();
    return rows.map((r) => readHeader(r.blob)).filter((p) => p.name !== 'gpg-pubkey');
  } finally {
    db.close();
  }
}
