import { open, type FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { decompressor } from '../scan/archive.js';

/** Buffers a gzip'd file is read into, each reused once the decompressor has consumed it. */
const PUMP_BUFFERS = 3;

/**
 * Read a file that is still being written, in order, as far as it has been written: the spool file
 * of a fill, followed by the image-layer reader. `progress(upTo)` is called as the writer goes on;
 * reads wait for it, and the stream ends at `size`. The file is opened at once, so a rename
 * (commit) or an unlink (a failed fill) afterwards does not disturb the reader.
 */
export class FileFollower {
  private upTo = 0;
  private wake: (() => void) | null = null;
  private failed: Error | null = null;

  constructor(
    private readonly path: string,
    private readonly size: number,
  ) {}

  progress(upTo: number): void {
    this.upTo = Math.max(this.upTo, upTo);
    this.wake?.();
  }

  abort(e: Error): void {
    this.failed = e;
    this.wake?.();
  }

  /** Wait until bytes past `pos` are written (or the file is whole); false at the end. */
  private async until(pos: number): Promise<boolean> {
    for (;;) {
      if (this.failed) throw this.failed;
      if (pos >= this.size) return false;
      if (this.upTo > pos) return true;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  async stream(chunk = 1 << 20): Promise<Readable> {
    return this.readable(await open(this.path, 'r'), chunk);
  }

  /**
   * The file decompressed, when it is gzip (`gunzipped`), else as it is. A gzip'd file is read
   * into a few buffers reused once the decompressor has consumed each (its write callback), not a
   * fresh buffer per read: fresh memory cost ~0.5 CPU-s per GiB in page faults here, in a reader
   * the image gate's client waits for (issue 29). The file is open when this resolves.
   */
  async decompressed(chunk = 1 << 20): Promise<{ body: Readable; gunzipped: boolean }> {
    const fh = await open(this.path, 'r');
    let head: Buffer;
    try {
      head = Buffer.alloc(this.size >= 2 && (await this.until(1)) ? 2 : 0);
      if (head.length) await this.readFully(fh, head, 0);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
    if (head.length < 2 || head[0] !== 0x1f || head[1] !== 0x8b) return { body: this.readable(fh, chunk), gunzipped: false };
    const gz = decompressor('gzip');
    void this.pump(fh, gz, chunk);
    return { body: gz, gunzipped: true };
  }

  /** Bytes [pos, pos + buf.length) of the file, which are written already. */
  private async readFully(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
    for (let off = 0; off < buf.length;) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, pos + off);
      if (bytesRead === 0) throw new Error(`${this.path} is shorter than the ${pos + buf.length} bytes written to it`);
      off += bytesRead;
    }
  }

  /** Write the file into `into` as it is written, then end it; a failure destroys `into`. */
  private async pump(fh: FileHandle, into: Writable, chunk: number): Promise<void> {
    const free = Array.from({ length: PUMP_BUFFERS }, () => Buffer.allocUnsafe(chunk));
    let returned: (() => void) | null = null;
    const back = () => {
      returned?.();
      returned = null;
    };
    into.once('close', back);
    let pos = 0;
    try {
      while (await this.until(pos)) {
        while (!free.length && !into.destroyed) await new Promise<void>((r) => (returned = r));
        if (into.destroyed) return;
        const buf = free.pop()!;
        const len = Math.min(chunk, this.upTo - pos);
        const { bytesRead } = await fh.read(buf, 0, len, pos);
        if (bytesRead === 0) throw new Error(`${this.path} is shorter than the ${pos + len} bytes written to it`);
        pos += bytesRead;
        into.write(buf.subarray(0, bytesRead), () => {
          free.push(buf);
          back();
        });
      }
      into.end();
    } catch (e) {
      into.destroy(e as Error);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  private readable(fh: FileHandle, chunk: number): Readable {
    let pos = 0;
    const next = async (): Promise<Buffer | null> => {
      if (!(await this.until(pos))) return null;
      const len = Math.min(chunk, this.upTo - pos);
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      if (bytesRead === 0) throw new Error(`${this.path} is shorter than the ${pos + len} bytes written to it`);
      pos += bytesRead;
      return bytesRead === len ? buf : buf.subarray(0, bytesRead);
    };
    return new Readable({
      highWaterMark: chunk,
      read() {
        next().then(
          (b) => this.push(b),
          (e: Error) => this.destroy(e),
        );
      },
      destroy(err, cb) {
        fh.close().then(
          () => cb(err),
          () => cb(err),
        );
      },
    });
  }
}
