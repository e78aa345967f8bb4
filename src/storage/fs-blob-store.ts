import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { AirlockError } from '../core/errors.js';
import {
  DEFAULT_QUARANTINE,
  quarantinedAt,
  quarantineExcess,
  SHA256_HEX,
  type BlobStore,
  type ByteRange,
  type QuarantineLimits,
  type RandomRead,
} from './blob-store.js';

/**
 * Content-addressed directory: <root>/blobs/sha256/<first two hex>/<hex>.
 * Spool files live in <root>/spool on the same filesystem so that committing is a rename.
 */
export class FsBlobStore implements BlobStore {
  readonly spoolDir: string;
  private readonly blobDir: string;
  private readonly madeDirs = new Set<string>();
  private readonly quarantineDir: string;

  private quarantineLimits: QuarantineLimits = DEFAULT_QUARANTINE;

  private constructor(root: string) {
    this.blobDir = join(root, 'blobs', 'sha256');
    this.quarantineDir = join(root, 'quarantine');
    this.spoolDir = join(root, 'spool');
  }

  /** @param opts.cleanSpool false for tools that open the store beside a running server. */
  static async create(root: string, opts: { cleanSpool?: boolean; quarantine?: QuarantineLimits } = {}): Promise<FsBlobStore> {
    const s = new FsBlobStore(root);
    if (opts.quarantine) s.quarantineLimits = opts.quarantine;
    await mkdir(s.blobDir, { recursive: true });
    // Spool files left by a crash are never valid content: start clean.
    if (opts.cleanSpool !== false) await rm(s.spoolDir, { recursive: true, force: true });
    await mkdir(s.spoolDir, { recursive: true });
    return s;
  }

  pathOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new AirlockError('BAD_REQUEST', `not a sha256 digest: ${JSON.stringify(sha256)}`);
    return join(this.blobDir, sha256.slice(0, 2), sha256);
  }

  async stat(sha256: string): Promise<{ size: number; version: string } | null> {
    try {
      const st = await stat(this.pathOf(sha256), { bigint: true });
      return { size: Number(st.size), version: `${st.ino}:${st.ctimeNs}` };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async open(sha256: string, range?: ByteRange): Promise<Readable> {
    const path = this.pathOf(sha256);
    // Open first so that a missing blob is a clean error before any header is sent.
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new AirlockError('NOT_FOUND', `blob sha256:${sha256} is not in the store`);
      throw e;
    }
    // 1 MiB reads: bench/ warm-serve row measured 2.1-3.3x a plain Node pipe (64 KiB reads) and
    // 0.5-0.77x nginx sendfile on the same file.
    return fh.createReadStream({ start: range?.start, end: range?.end, highWaterMark: 1 << 20, autoClose: true });
  }

  async openRandom(sha256: string): Promise<RandomRead> {
    let fh: FileHandle;
    try {
      fh = await open(this.pathOf(sha256), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new AirlockError('NOT_FOUND', `blob sha256:${sha256} is not in the store`);
      throw e;
    }
    const size = (await fh.stat()).size;
    return {
      size,
      async read(into, position) {
        let got = 0;
        while (got < into.length) {
          const { bytesRead } = await fh.read(into, got, into.length - got, position + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return got;
      },
      close: () => fh.close(),
    };
  }

  async putFile(sha256: string, localPath: string): Promise<void> {
    const dest = this.pathOf(sha256);
    const dir = dirname(dest);
    if (!this.madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    await rename(localPath, dest);
    // Make the rename itself durable.
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  /** <root>/quarantine/<hex>.<ms>: never served, kept within the quarantine limits (oldest removed first). */
  async quarantine(sha256: string): Promise<string | null> {
    const from = this.pathOf(sha256);
    await mkdir(this.quarantineDir, { recursive: true });
    const to = join(this.quarantineDir, `${sha256}.${Date.now()}`);
    try {
      await rename(from, to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const removed = await this.pruneQuarantine();
    return removed.includes(to) ? null : to;
  }

  /** Remove what the quarantine limits no longer allow; returns the paths removed. */
  async pruneQuarantine(now = Date.now()): Promise<string[]> {
    const names = await readdir(this.quarantineDir).catch(() => [] as string[]);
    const entries = [];
    for (const name of names) {
      const path = join(this.quarantineDir, name);
      const st = await stat(path).catch(() => null);
      if (st?.isFile()) entries.push({ path, size: st.size, at: quarantinedAt(name) || st.mtimeMs });
    }
    const out = quarantineExcess(entries, this.quarantineLimits, now);
    for (const e of out) await rm(e.path, { force: true });
    return out.map((e) => e.path);
  }
}
