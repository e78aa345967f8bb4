import { Readable } from 'node:stream';
import { ScanError, type ByteSource } from './source.js';

/**
 * Walking a tar without a stream per member: headers are read from a `Blocks` reader (positional
 * reads of the spool for a plain tar, a decompressor's output otherwise), each regular file is
 * handed to the judge as a `MemberBody`, and whatever the judge leaves unread is passed over (a
 * positional reader skips it without reading). Headers are decoded as tar-stream decodes them
 * (ustar and GNU magic, checksum, octal and base-256 numbers, the ustar prefix, PAX `path`,
 * `linkpath` and `size`, GNU long names), so a tar is judged the same whether it is compressed.
 */

/** What is wrong with the tar itself (the walk names the archive around it). */
export class TarFormatError extends ScanError {}

/** Sequential reads: `take` returns exactly n bytes (fewer only at the end); `skip` passes over n bytes. */
export interface Blocks {
  take(n: number): Promise<Buffer>;
  skip(n: number): Promise<number>;
  /** The next n bytes (fewer only at the end), left to be taken. */
  peek(n: number): Promise<Buffer>;
}

/** One member's bytes as the judge reads them: `take` up to n bytes (fewer only at its end), or the rest as a stream. */
export interface MemberBody {
  take(n: number): Promise<Buffer>;
  stream(): Readable;
}

/**
 * A positional reader over a ByteSource: reads of `window` bytes (1 MiB, what the inspector read
 * per chunk before: memory per inspected fill unchanged), members cut from them in place.
 */
export function sourceBlocks(src: ByteSource, window = 1 << 20): Blocks {
  let buf: Buffer = Buffer.alloc(0);
  let bufPos = 0;
  let pos = 0;
  return {
    async take(n) {
      n = Math.max(0, Math.min(n, src.size - pos));
      if (pos < bufPos || pos + n > bufPos + buf.length) {
        // A fresh read from pos (the bytes of the old window past pos are read again: at most one member per window).
        const len = Math.min(Math.max(n, window), src.size - pos);
        buf = await src.read(pos, len);
        bufPos = pos;
        if (buf.length < n) throw new ScanError(`short read at byte ${pos}`);
      }
      const off = pos - bufPos;
      pos += n;
      return buf.subarray(off, off + n);
    },
    async skip(n) {
      const k = Math.max(0, Math.min(n, src.size - pos));
      pos += k;
      return k;
    },
    async peek(n) {
      const at = pos;
      const out = await this.take(n);
      pos = at;
      return out;
    },
  };
}

/** A reader over a stream's chunks (a decompressor's output, a member of an archive). */
export function streamBlocks(stream: Readable): Blocks {
  const it = stream[Symbol.asyncIterator]();
  let head: Buffer = Buffer.alloc(0);
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    const chunk = r.value as Buffer;
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    return true;
  };
  return {
    async take(n) {
      if (head.length >= n) {
        const out = head.subarray(0, n);
        head = head.subarray(n);
        return out;
      }
      // Gather without copying per chunk: the chunks, then one concat.
      const parts: Buffer[] = head.length > 0 ? [head] : [];
      let have = head.length;
      head = Buffer.alloc(0);
      while (have < n) {
        if (ended) break;
        const r = await it.next();
        if (r.done) {
          ended = true;
          break;
        }
        parts.push(r.value as Buffer);
        have += (r.value as Buffer).length;
      }
      const all = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      head = all.subarray(Math.min(n, all.length));
      return all.subarray(0, Math.min(n, all.length));
    },
    async peek(n) {
      while (head.length < n && (await more()));
      return head.subarray(0, n);
    },
    async skip(n) {
      let k = 0;
      while (k < n) {
        if (head.length === 0 && !(await more())) break;
        const d = Math.min(n - k, head.length);
        head = head.subarray(d);
        k += d;
      }
      return k;
    },
  };
}

/** The next `size` bytes of `b` as one member (size undefined: to the end). */
export function memberBody(b: Blocks, size = Infinity): MemberBody & { left: () => number } {
  let left = size;
  const body = {
    left: () => left,
    async take(n: number) {
      const out = await b.take(Math.min(n, left));
      left -= out.length;
      return out;
    },
    stream(): Readable {
      return Readable.from(
        (async function* () {
          while (left > 0) {
            const chunk = await body.take(1 << 20);
            if (chunk.length === 0) return;
            yield chunk;
          }
        })(),
        { objectMode: false },
      );
    },
  };
  return body;
}

/** A member held in memory (a zip's member, already inflated). */
export function bufferBody(bytes: Buffer): MemberBody {
  let taken = 0;
  return {
    async take(n) {
      const out = bytes.subarray(taken, taken + n);
      taken += out.length;
      return out;
    },
    stream: () => Readable.from([bytes.subarray(taken)], { objectMode: false }),
  };
}

export interface TarHeader {
  name: string;
  size: number;
  type: string | null;
  linkname: string | null;
}

const MAX_LONG_HEADER = 4 << 20;
const TYPES: Record<number, string> = {
  0: 'file',
  1: 'link',
  2: 'symlink',
  3: 'character-device',
  4: 'block-device',
  5: 'directory',
  6: 'fifo',
  7: 'contiguous-file',
  72: 'pax-header',
  55: 'pax-global-header',
  27: 'gnu-long-link-path',
  28: 'gnu-long-path',
  30: 'gnu-long-path',
};

function until0(b: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return b.toString('utf8', off, end);
}

function octal(b: Buffer, off: number, len: number): number {
  const v = b.subarray(off, off + len);
  if (v[0] & 0x80) {
    // base-256 (GNU): 0x80 positive, 0xff two's complement negative.
    if (v[0] !== 0x80 && v[0] !== 0xff) return NaN;
    const positive = v[0] === 0x80;
    let sum = 0;
    for (let i = 1; i < v.length; i++) sum = sum * 256 + (positive ? v[i] : 0xff - v[i]);
    return positive ? sum : -sum;
  }
  let i = 0;
  while (i < v.length && v[i] === 32) i++;
  let end = v.indexOf(32, i);
  if (end < 0) end = v.length;
  while (i < end && v[i] === 0) i++;
  if (end === i) return 0;
  return parseInt(v.toString('latin1', i, end), 8);
}

/** One 512-byte header, or null for a block of zeros (tar-stream's decode). */
export function decodeHeader(b: Buffer): TarHeader | null {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += b[i];
  for (let i = 156; i < 512; i++) sum += b[i];
  if (sum === 8 * 32) return null;
  if (sum !== octal(b, 148, 8)) throw new TarFormatError('invalid tar header (checksum)');
  let flag = b[156] === 0 ? 0 : b[156] - 0x30;
  let name = until0(b, 0, 100);
  const magic = b.toString('latin1', 257, 263);
  if (magic === 'ustar\0') {
    if (b[345]) name = `${until0(b, 345, 155)}/${name}`;
  } else if (!(magic === 'ustar ' && b[263] === 0x20 && b[264] === 0)) {
    throw new TarFormatError('invalid tar header: unknown format');
  }
  // A V7 directory: a regular file ('\0', not '0') named with a trailing slash, as Python's tarfile reads it.
  if (b[156] === 0 && name.endsWith('/')) flag = 5;
  return { name, size: octal(b, 124, 12), type: TYPES[flag] ?? null, linkname: b[157] === 0 ? null : until0(b, 157, 100) };
}

/** PAX records "<len> <key>=<value>\n" (tar-stream's decodePax). */
function decodePax(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  while (buf.length) {
    let i = 0;
    while (i < buf.length && buf[i] !== 32) i++;
    const len = parseInt(buf.toString('utf8', 0, i), 10);
    if (!len) return out;
    const rec = buf.toString('utf8', i + 1, len - 1);
    const k = rec.indexOf('=');
    if (k === -1) return out;
    out[rec.slice(0, k)] = rec.slice(k + 1);
    buf = buf.subarray(len);
  }
  return out;
}

const pad = (size: number) => (size & 511 ? 512 - (size & 511) : 0);

/**
 * Every entry of a tar, in order, with GNU long names and PAX records applied: `onEntry` gets the
 * header and, for entries that carry data, the body (what it leaves unread is skipped).
 */
export async function walkTarBlocks(b: Blocks, onEntry: (h: TarHeader, body: MemberBody) => Promise<void>): Promise<void> {
  let longPath: string | null = null;
  let longLink: string | null = null;
  let pax: Record<string, string> | null = null;
  let paxGlobal: Record<string, string> | null = null;
  for (;;) {
    const block = await b.take(512);
    if (block.length === 0) return;
    if (block.length < 512) throw new TarFormatError('unexpected end of data');
    const h = decodeHeader(block);
    if (!h) continue;
    if (h.type === 'pax-header' || h.type === 'pax-global-header' || h.type === 'gnu-long-path' || h.type === 'gnu-long-link-path') {
      if (!(h.size >= 0) || h.size > MAX_LONG_HEADER) throw new TarFormatError('header exceeds max size');
      const data = await b.take(h.size);
      if (data.length < h.size || (await b.skip(pad(h.size))) < pad(h.size)) throw new TarFormatError('unexpected end of data');
      if (h.type === 'gnu-long-path') longPath = until0(data, 0, data.length);
      else if (h.type === 'gnu-long-link-path') longLink = until0(data, 0, data.length);
      else if (h.type === 'pax-global-header') paxGlobal = decodePax(data);
      else pax = paxGlobal === null ? decodePax(data) : { ...paxGlobal, ...decodePax(data) };
      continue;
    }
    if (longPath !== null) h.name = longPath;
    if (longLink !== null) h.linkname = longLink;
    if (pax) {
      if (pax.path) h.name = pax.path;
      if (pax.linkpath) h.linkname = pax.linkpath;
      if (pax.size) h.size = parseInt(pax.size, 10);
    }
    longPath = longLink = pax = null;
    if (!(h.size >= 0)) throw new TarFormatError('invalid tar header (size)');
    // A directory's size is not data (as tar-stream and Python's tarfile read it; the walk refuses a directory with a size).
    const dataSize = h.type === 'directory' ? 0 : h.size;
    const body = memberBody(b, dataSize);
    await onEntry(h, body);
    const rest = body.left() + pad(dataSize);
    if ((await b.skip(rest)) < rest) throw new TarFormatError('unexpected end of data');
  }
}
