import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { AirlockError } from '../core/errors.js';
import { SHA256_HEX, type BlobStore, type ByteRange } from './blob-store.js';

/**
 * Content-addressed directory: <root>/blobs/sha256/<first two hex>/<hex>.
 * Spool files live in <root>/spool on the same filesystem so that committing is a rename.
 */
export class FsBlobStore implements BlobStore {
  readonly spoolDir: string;
  private readonly blobDir: string;
  private readonly madeDirs = new Set<string>();
  private readonly quarantineDir: string;

  private constructor(root: string) {
    this.blobDir = join(root, 'blobs', 'sha256');
    this.quarantineDir = join(root, 'quarantine');
    this.spoolDir = join(root, 'spool');
  }

  /** @param opts.cleanSpool false for tools that open the store beside a running server. */
  static async create(root: string, opts: { cleanSpool?: boolean } = {}): Promise<FsBlobStore> {
    const s = new FsBlobStore(root);
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

  async stat(sha256: string): Promise<{ size: number } | null> {
    try {
      const st = await stat(this.pathOf(sha256));
      return { size: st.size };
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

  /** <root>/quarantine/<hex>.<ms>: never served, kept until an operator removes it. */
  async quarantine(sha256: string): Promise<string | null> {
    const from = this.pathOf(sha256);
    await mkdir(this.quarantineDir, { recursive: true });
    const to = join(this.quarantineDir, `${sha256}.${Date.now()}`);
    try {
      await rename(from, to);
      return to;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }
}
