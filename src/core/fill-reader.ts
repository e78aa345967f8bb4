import { Readable } from 'node:stream';
import type { FileBytes } from './bytes.js';
import type { FillSpec, SpoolFollow } from './fill-spec.js';
import { AirlockError } from './errors.js';
import type { ByteRange } from '../storage/blob-store.js';

const READ_CHUNK = 256 << 10;

/** Readers of a fill's spool file: a client's stream, and the inspector's file that grows. */

/** What a reader needs of the fill it tails (Fill implements it). */
export interface SpoolSource {
  /** 'verified' once every byte is in and checked. */
  readonly state: string;
  readonly written: number;
  /** The failure, once state is 'failed'. */
  readonly error: Error | undefined;
  /** Why readers must stop now (the fill failed, or its inspector refused), or undefined. */
  cut(): Error | undefined;
  /** Bytes readers may have now (the held-back tail and inspection decide). */
  available(): number;
  /** Bytes [pos, limit) from memory, or null (then read from the spool file). */
  inMemory(pos: number, limit: number): Buffer | null;
  readAt(buf: Buffer, pos: number): Promise<{ bytesRead: number }>;
  /** Count a reader in; the function returned counts it out (once). */
  attachReader(): () => void;
  /** Emitted on every write and state change. */
  once(event: 'progress', cb: () => void): unknown;
}

/**
 * A reader over a fill's spool file, from range.start to range.end (or to the end of the file),
 * as bytes become available to readers: positional reads on the fill's own descriptor (so a rename
 * on commit does not disturb it), or slices of its in-memory window.
 */
export function spoolReader(fill: SpoolSource, range?: ByteRange): Readable {
  const release = fill.attachReader();
  let pos = range?.start ?? 0;
  const stop = range ? range.end + 1 : Infinity;
  const stream = new Readable({
    highWaterMark: READ_CHUNK,
    read() {
      const step = () => {
        if (stream.destroyed) return;
        const cut = fill.cut();
        if (cut) {
          stream.destroy(cut);
          return;
        }
        // A range waits for the digest (then it is read from the verified spool file): a part of
        // a file cannot be checked alone, and a range early in the file would otherwise go out
        // complete before the file's digest fails (a whole read still ends only after it).
        const limit = Math.min(range ? (fill.state === 'verified' ? fill.written : 0) : fill.available(), stop);
        if (pos < limit) {
          const mem = fill.inMemory(pos, limit);
          if (mem) {
            pos += mem.length;
            stream.push(mem);
            return;
          }
          const len = Math.min(READ_CHUNK, limit - pos);
          const buf = Buffer.allocUnsafe(len);
          fill.readAt(buf, pos).then(
            ({ bytesRead }) => {
              if (bytesRead === 0) {
                stream.destroy(new AirlockError('INTERNAL', 'spool file shorter than written'));
                return;
              }
              pos += bytesRead;
              stream.push(bytesRead === len ? buf : buf.subarray(0, bytesRead));
            },
            (e) => stream.destroy(e),
          );
          return;
        }
        // A range ends once delivered (only after the digest); the whole file ends once verified.
        if (pos >= stop || (fill.state === 'verified' && pos >= fill.written)) {
          stream.push(null);
          return;
        }
        fill.once('progress', step);
      };
      step();
    },
    destroy(err, cb) {
      release();
      cb(err);
    },
  });
  stream.once('end', release);
  return stream;
}

/**
 * The spool file as FileBytes whose reads wait until the bytes asked for have been written (the
 * inspector follows the download instead of re-reading it afterwards).
 */
export function growingBytes(fill: SpoolSource, size: number): FileBytes {
  return {
    size,
    read: async (pos, len) => {
      const end = Math.min(size, pos + len);
      while (fill.written < end) {
        if (fill.state === 'failed') throw fill.error;
        if (fill.state === 'verified') break;
        await new Promise<void>((res) => fill.once('progress', () => res()));
      }
      if (fill.state === 'failed') throw fill.error;
      const b = Buffer.allocUnsafe(Math.max(0, end - pos));
      const { bytesRead } = b.length > 0 ? await fill.readAt(b, pos) : { bytesRead: 0 };
      return bytesRead === b.length ? b : b.subarray(0, bytesRead);
    },
  };
}

/** The spool file as a follower sees it (FillSpec.observe): its path, size, and progress. */
export function spoolFollow(
  fill: SpoolSource & { on(e: 'progress', cb: () => void): unknown; off(e: 'progress', cb: () => void): unknown },
  path: string,
  size: number,
): SpoolFollow {
  return {
    path,
    size,
    written: () => fill.written,
    onProgress: (cb) => {
      fill.on('progress', cb);
      return () => fill.off('progress', cb);
    },
  };
}

/** Start a fill's observer (FillSpec.observe) on its spool file, if it has one: it never fails the fill. `settled`: the fill's digest checked. */
export function observeSpool(spec: FillSpec, spool: SpoolFollow, settled: Promise<void>): Promise<void> | undefined {
  if (!spec.observe) return undefined;
  try {
    const verified = settled.then(
      () => true,
      () => false,
    );
    return Promise.resolve(spec.observe(spool, verified)).catch(() => {});
  } catch {
    return undefined;
  }
}
