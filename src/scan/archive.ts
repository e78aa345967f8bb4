import { Readable, Transform, type Duplex } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { createRequire } from 'node:module';
import type lzmaNative from 'lzma-native';
import type unbzip2Stream from 'unbzip2-stream';
import type * as zstdNapi from 'zstd-napi';
import { ScanError, type ByteSource } from './source.js';
import { TarFormatError, memberBody, sourceBlocks, streamBlocks, walkTarBlocks, type Blocks, type MemberBody } from './tar.js';

/**
 * Opening archives as they stream: compressed files (gzip, bzip2, xz, zstd) are decompressed and
 * tars are walked member by member, so every member is handed to the same judge as a file of its
 * own. Decompressors are the formats' reference libraries where Node has none built in: zlib
 * (Node) for gzip, libzstd (zstd-napi) and liblzma (lzma-native) with their memory limits, and
 * unbzip2-stream for bzip2. Limits against bombs: the expansion ratio, the member count and the
 * nesting depth; memory stays bounded by the decompressors' windows and one buffered member.
 */

/**
 * The three decompression libraries are loaded on first use (issue 29): lzma-native alone added
 * ~5 MB to every server's resident memory at start (its native binding and liblzma), and most
 * servers never open an xz, bzip2 or zstd member (gzip is Node's own).
 */
const lazy = createRequire(import.meta.url);
let zstd: typeof zstdNapi | undefined;
let lzma: typeof lzmaNative | undefined;
let unbzip2: typeof unbzip2Stream | undefined;
export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd';

const MAGICS: [number[], Compression][] = [
  [[0x1f, 0x8b], 'gzip'],
  [[0x42, 0x5a, 0x68], 'bzip2'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd'],
];

export function compressionOf(head: Buffer): Compression | undefined {
  for (const [m, kind] of MAGICS) if (head.length >= m.length && m.every((x, i) => head[i] === x)) return kind;
  return undefined;
}

/** POSIX ustar and GNU tar headers carry "ustar" at offset 257 (what Python's tarfile and GNU tar write). */
export function isTar(head: Buffer): boolean {
  return head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
}

/**
 * What Python's tarfile opens as a tar: it never reads the magic, only the checksum, so a first
 * block whose checksum holds (a V7 tar, or any magic) is a tar too (the walk refuses the formats
 * it does not read). The field is read as Python reads it, the sum unsigned or signed.
 */
export function readsAsTar(head: Buffer): boolean {
  if (isTar(head)) return true;
  if (head.length < 512) return false;
  let sum: number;
  if (head[148] === 0x80 || head[148] === 0xff) {
    // base-256, as Python's nti reads any number field.
    sum = 0;
    for (let i = 149; i < 156; i++) sum = sum * 256 + head[i];
    if (head[148] === 0xff) sum -= 256 ** 7;
  } else {
    const field = /^[\t-\r\x1c-\x1f ]*([0-7]+)[\t-\r\x1c-\x1f ]*$/.exec(head.toString('latin1', 148, 156).split('\0')[0]);
    if (!field) return false;
    sum = parseInt(field[1], 8);
  }
  let unsigned = 8 * 32;
  let signed = 8 * 32;
  for (let i = 0; i < 512; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += head[i];
    signed += head[i] > 127 ? head[i] - 256 : head[i];
  }
  return sum === unsigned || sum === signed;
}

/** Whether walkStream can open it: a tar, or a stream compressed with one of the four. */
export function isOpenable(head: Buffer): boolean {
  return compressionOf(head) !== undefined || readsAsTar(head);
}

export const ARCHIVE_LIMITS = {
  /** Decompressed bytes may reach this many times the compressed size (gzip's own maximum is ~1032)... */
  ratio: 1032,
  /** ...or this floor, whichever is larger. */
  floor: 1 << 30,
  members: 1_000_000,
  /** An archive inside an archive inside an archive, and no deeper. */
  depth: 3,
  /** xz dictionaries above this are refused (xz -9 needs 65 MiB); zstd keeps libzstd's default 128 MiB window limit. */
  xzMemory: 256 << 20,
};

/** The bytes of src, in order, as a stream (reads wait for a growing source). */
export function sequential(src: ByteSource, chunk = 1 << 20): Readable {
  let pos = 0;
  return new Readable({
    highWaterMark: chunk,
    read() {
      if (pos >= src.size) {
        this.push(null);
        return;
      }
      const len = Math.min(chunk, src.size - pos);
      src.read(pos, len).then(
        (b) => {
          if (b.length === 0) return this.destroy(new ScanError(`short read at byte ${pos}`));
          pos += b.length;
          this.push(b);
        },
        (e) => this.destroy(e),
      );
    },
  });
}

export function decompressor(kind: Compression): Duplex {
  switch (kind) {
    case 'gzip':
      // 256 KiB output chunks, not zlib's 16 KiB: a GiB layer read beside a pull cost ~0.9 s of
      // main-thread time in per-chunk callbacks at 16 KiB (CPU profile of the inventory row).
      return createGunzip({ chunkSize: 256 << 10 });
    case 'zstd':
      zstd ??= lazy('zstd-napi') as typeof zstdNapi;
      return new zstd.DecompressStream();
    case 'xz':
      lzma ??= lazy('lzma-native') as typeof lzmaNative;
      return lzma.createStream('streamDecoder', { memlimit: ARCHIVE_LIMITS.xzMemory, flags: lzma.LZMA_CONCATENATED });
    case 'bzip2':
      // unbzip2-stream is a classic (through) stream; it pipes and emits errors like a Duplex.
      unbzip2 ??= lazy('unbzip2-stream') as typeof unbzip2Stream;
      return unbzip2() as unknown as Duplex;
  }
}

/** Counts output bytes and stops the stream past the expansion limit. */
function expansionGuard(compressed: number, label: string): Transform {
  const max = Math.max(ARCHIVE_LIMITS.floor, compressed * ARCHIVE_LIMITS.ratio);
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      n += chunk.length;
      if (n > max) cb(new ScanError(`${label}: decompresses to more than ${max} bytes (${ARCHIVE_LIMITS.ratio}x its size): a decompression bomb`));
      else cb(null, chunk);
    },
  });
}

/**
 * Node's gunzip stops at a NUL after a member (padding), and ignores whatever follows; Python's
 * gzip skips the NULs and reads the next member. Whatever gunzip left unread must be NULs only.
 */
function gzipTail(label: string): { counter: Transform; check: (d: Gunzip) => void } {
  let seen = 0;
  let lastData = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      for (let i = chunk.length - 1; i >= 0; i--)
        if (chunk[i] !== 0) {
          lastData = seen + i + 1;
          break;
        }
      seen += chunk.length;
      cb(null, chunk);
    },
  });
  const check = (d: Gunzip) => {
    if (d.bytesWritten < lastData) throw new ScanError(`${label}: data after the end of the gzip stream, past NUL padding (Python's gzip reads on there)`);
  };
  return { counter, check };
}

/** What a walk hands the judge: one member's name, declared size (when the tar says) and bytes. */
export type MemberHandler = (name: string, size: number | undefined, body: MemberBody) => Promise<void>;

/**
 * Walk a file being judged: a plain tar is read in place (positional reads, member bodies the
 * judge does not read are skipped, not read); a compressed one through its decompressor.
 */
export async function walkSource(src: ByteSource, label: string, onMember: MemberHandler): Promise<void> {
  const head = await src.read(0, Math.min(src.size, 512));
  if (!compressionOf(head) && readsAsTar(head)) return walkTar(sourceBlocks(src), label, onMember);
  return walkStream(sequential(src), src.size, label, onMember);
}

/**
 * Decompress `body` (if compressed) and walk it: a tar's regular files each go to `onMember`; a
 * compressed file that is not a tar is one member, named after the file without its extension.
 */
export async function walkStream(body: Readable, compressedSize: number, label: string, onMember: MemberHandler): Promise<void> {
  const head = await peek(body, 512);
  let stream = head.stream;
  try {
    const kind = compressionOf(head.bytes);
    let blocks: Blocks;
    let ended = () => {};
    if (kind) {
      const d = decompressor(kind);
      const wrapErr = (e: Error) => (e instanceof ScanError ? e : new ScanError(`${label}: ${kind} stream is corrupt (${e.message})`));
      head.stream.on('error', (e) => d.destroy(e));
      let input: Readable = head.stream;
      if (kind === 'gzip') {
        const tail = gzipTail(label);
        input = head.stream.pipe(tail.counter);
        ended = () => tail.check(d as Gunzip);
      }
      stream = input.pipe(d).pipe(expansionGuard(compressedSize, label));
      d.on('error', (e) => stream.destroy(wrapErr(e)));
      blocks = streamBlocks(stream);
      if (!readsAsTar(await blocks.peek(512))) {
        await onMember(label.replace(/\.(gz|tgz|bz2|xz|zst|zstd)$/i, ''), undefined, memberBody(blocks));
        // What the judge left unread is still decompressed: a corrupt or bombing tail is refused.
        await blocks.skip(Infinity);
        ended();
        return;
      }
    } else if (!readsAsTar(head.bytes)) {
      throw new ScanError(`${label}: not a tar or a compressed stream`);
    } else {
      blocks = streamBlocks(stream);
    }
    await walkTar(blocks, label, onMember);
    ended();
  } finally {
    // Whatever was not read (a refusal stopped the walk) is not read or decompressed further.
    stream.destroy();
    head.stream.destroy();
    body.destroy();
  }
}

async function walkTar(blocks: Blocks, label: string, onMember: MemberHandler): Promise<void> {
  let count = 0;
  try {
    await walkTarBlocks(blocks, async (h, body) => {
      if (++count > ARCHIVE_LIMITS.members) throw new ScanError(`${label}: more than ${ARCHIVE_LIMITS.members} members`);
      const name = h.name;
      if (name.startsWith('/') || name.split('/').includes('..')) throw new ScanError(`${label}: member ${JSON.stringify(name)} escapes the archive`);
      if (h.type === 'symlink' || h.type === 'link') {
        const target = h.linkname ?? '';
        const base = h.type === 'symlink' ? name.split('/').slice(0, -1) : [];
        if (target.startsWith('/') || escapes([...base, ...target.split('/')]))
          throw new ScanError(`${label}: member ${name} links to ${JSON.stringify(target)}, outside the archive`);
        // tar-stream would skip a link's data, Python's tarfile reads it as the next header: no reading may hide a member.
        if (h.size > 0) throw new ScanError(`${label}: member ${name} is a ${h.type} carrying ${h.size} bytes of data`);
      } else if (h.type === 'directory') {
        // Readers disagree on whether a directory's size is data to skip: none may see a member the walk did not.
        if (h.size > 0) throw new ScanError(`${label}: member ${name} is a directory carrying ${h.size} bytes of data`);
      } else if (h.type !== 'file' && h.type !== 'contiguous-file') {
        throw new ScanError(`${label}: member ${name} is a ${h.type} (only files, directories and links inside the archive are accepted)`);
      }
      if (h.type === 'file' || h.type === 'contiguous-file') await onMember(name, h.size, body);
    });
  } catch (e) {
    if (e instanceof TarFormatError) throw new ScanError(`${label}: the tar is malformed (${e.message})`);
    throw e instanceof ScanError ? e : new ScanError(`${label}: the tar is malformed (${(e as Error).message})`);
  }
}

function escapes(parts: string[]): boolean {
  let depth = 0;
  for (const p of parts) {
    if (p === '..') depth--;
    else if (p !== '' && p !== '.') depth++;
    if (depth < 0) return true;
  }
  return false;
}

/** The first n bytes of a stream (fewer if it ends), and a stream that still yields every byte. */
export async function peek(stream: Readable, n: number): Promise<{ bytes: Buffer; stream: Readable }> {
  const parts: Buffer[] = [];
  let have = 0;
  const it = stream[Symbol.asyncIterator]();
  let done = false;
  while (have < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    parts.push(r.value as Buffer);
    have += (r.value as Buffer).length;
  }
  const bytes = Buffer.concat(parts);
  async function* rest() {
    yield bytes;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value as Buffer;
    }
  }
  return { bytes: bytes.subarray(0, n), stream: Readable.from(rest(), { objectMode: false }) };
}
