import type { FileBytes } from '../core/bytes.js';

/** What the scanner reads: random access to the bytes being judged (see core/bytes.ts). */
export type ByteSource = FileBytes;
export { bufferBytes as bufferSource } from '../core/bytes.js';

/**
 * A judgement that stops the file: parse errors, limits, inconsistencies. It carries a message,
 * not a stack: the trial pickle decode of every opaque archive member ends in one, and capturing
 * the stack cost a tenth of a dataset walk.
 */
export class ScanError extends Error {
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

/** Bytes ran out: the read needed bytes up to `upTo` (a trial decode of a window tells a cut opcode from a broken one by it). */
export class Truncated extends ScanError {
  constructor(
    message: string,
    readonly upTo: number,
  ) {
    super(message);
  }
}

const CHUNK = 1 << 20;

/** A forward cursor over a ByteSource with a 1 MiB read-ahead buffer. */
export class Cursor {
  private buf: Buffer = Buffer.alloc(0);
  private bufPos = 0;
  pos: number;

  constructor(
    readonly src: ByteSource,
    start = 0,
    readonly end = src.size,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  /** Make n bytes from pos available; throws on truncation. */
  async need(n: number): Promise<void> {
    if (n > this.remaining) throw new Truncated(`truncated at byte ${this.pos}: ${n} more bytes expected, ${this.remaining} left`, this.pos + n);
    const have = this.bufPos + this.buf.length - this.pos;
    if (this.pos >= this.bufPos && have >= n) return;
    const len = Math.min(Math.max(n, CHUNK), this.end - this.pos);
    this.buf = await this.src.read(this.pos, len);
    this.bufPos = this.pos;
    if (this.buf.length < n) throw new ScanError(`short read at byte ${this.pos}`);
  }

  async take(n: number): Promise<Buffer> {
    await this.need(n);
    const off = this.pos - this.bufPos;
    this.pos += n;
    return this.buf.subarray(off, off + n);
  }

  async u8(): Promise<number> {
    return (await this.take(1))[0];
  }

  /** The next byte if it is already in the buffer (and before the end), else -1 and nothing moves: u8 without an await on the hot path. */
  u8Buffered(): number {
    const off = this.pos - this.bufPos;
    if (this.pos >= this.end || off < 0 || off >= this.buf.length) return -1;
    this.pos += 1;
    return this.buf[off];
  }

  /** A line up to "\n" (not included), at most max bytes. */
  async line(max = 65536): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for (;;) {
      await this.need(1);
      const off = this.pos - this.bufPos;
      const avail = this.buf.subarray(off);
      const nl = avail.indexOf(0x0a);
      const piece = nl >= 0 ? avail.subarray(0, nl) : avail;
      n += piece.length;
      if (n > max) throw new ScanError(`line argument longer than ${max} bytes at byte ${this.pos}`);
      parts.push(Buffer.from(piece));
      this.pos += piece.length;
      if (nl >= 0) {
        this.pos += 1;
        return Buffer.concat(parts);
      }
    }
  }
}
