import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';

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

  async stream(chunk = 1 << 20): Promise<Readable> {
    const fh = await open(this.path, 'r');
    let pos = 0;
    const next = async (): Promise<Buffer | null> => {
      for (;;) {
        if (this.failed) throw this.failed;
        if (pos >= this.size) return null;
        if (this.upTo > pos) break;
        await new Promise<void>((r) => (this.wake = r));
      }
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
