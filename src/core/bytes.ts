import type { FileHandle } from 'node:fs/promises';
import type { BlobStore } from '../storage/blob-store.js';

/**
 * Random access to the bytes of one file (a fill's spool file, a cached blob, an archive on
 * disk, a buffer): what content inspection and the zip reader read through.
 */
export interface FileBytes {
  readonly size: number;
  read(pos: number, len: number): Promise<Buffer>;
}

export function bufferBytes(b: Buffer): FileBytes {
  return { size: b.length, read: async (pos, len) => b.subarray(pos, Math.min(b.length, pos + len)) };
}

/** Positional reads on an open file (short at the end of the file, never past it). */
export function fileHandleBytes(fh: FileHandle, size: number): FileBytes {
  return {
    size,
    async read(pos, len) {
      const b = Buffer.alloc(Math.max(0, Math.min(len, size - pos)));
      if (b.length > 0) await fh.read(b, 0, b.length, pos);
      return b;
    },
  };
}

/** Ranged reads of a blob in the store. */
export function storeBytes(store: BlobStore, sha256: string, size: number): FileBytes {
  return {
    size,
    async read(pos, len) {
      const end = Math.min(size, pos + len) - 1;
      if (end < pos) return Buffer.alloc(0);
      const parts: Buffer[] = [];
      for await (const chunk of await store.open(sha256, { start: pos, end })) parts.push(chunk as Buffer);
      return Buffer.concat(parts);
    },
  };
}
