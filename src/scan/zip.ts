import { crc32, inflateRawSync } from 'node:zlib';
import { ScanError, type ByteSource } from './source.js';

/**
 * A strict zip reader for model containers. It reads the central directory the way PyTorch's
 * miniz does, and rejects every inconsistency that has been used to show a scanner one file and a
 * loader another: local vs central names, unexpected flag bits, CRC mismatches, duplicate names,
 * bytes before the first entry, overlapping entries, ZIP64 and multi-disk archives.
 */
export interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's data (after its local header). */
  dataOffset: number;
  localOffset: number;
}

const MAX_ENTRIES = 100_000;
/** Flags a model archive may carry: 0x8 data descriptor, 0x800 UTF-8 names. */
const ALLOWED_FLAGS = 0x8 | 0x800;

export async function readZip(src: ByteSource): Promise<ZipEntry[]> {
  const tailLen = Math.min(src.size, 22 + 65535);
  const tail = await src.read(src.size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50 && i + 22 + tail.readUInt16LE(i + 20) === tail.length) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ScanError('zip: no end-of-central-directory record at the end of the file');
  const e = tail.subarray(eocd);
  if (e.readUInt16LE(4) !== 0 || e.readUInt16LE(6) !== 0) throw new ScanError('zip: multi-disk archives are not accepted');
  const count = e.readUInt16LE(10);
  if (count !== e.readUInt16LE(8)) throw new ScanError('zip: entry counts disagree');
  const cdSize = e.readUInt32LE(12);
  const cdOffset = e.readUInt32LE(16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) throw new ScanError('zip: ZIP64 archives are not accepted (not needed below 4 GiB)');
  if (count > MAX_ENTRIES) throw new ScanError(`zip: more than ${MAX_ENTRIES} entries`);
  const eocdAt = src.size - tailLen + eocd;
  if (cdOffset + cdSize !== eocdAt) throw new ScanError('zip: the central directory does not end where the end record begins (data hidden between them, or a prepended stub)');
  const cd = await src.read(cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw new ScanError(`zip: central directory entry ${i} is malformed`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    const compressedSize = cd.readUInt32LE(p + 20);
    const size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const diskStart = cd.readUInt16LE(p + 34);
    const localOffset = cd.readUInt32LE(p + 42);
    const nameBuf = cd.subarray(p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (p > cd.length) throw new ScanError(`zip: central directory entry ${i} runs past the directory`);
    const name = nameBuf.toString('utf8');
    if (flags & ~ALLOWED_FLAGS) throw new ScanError(`zip: ${name} has general-purpose flags 0x${flags.toString(16)} (encrypted or patched entries are not accepted)`);
    if (method !== 0 && method !== 8) throw new ScanError(`zip: ${name} uses compression method ${method} (only stored and deflate are accepted)`);
    if (diskStart !== 0) throw new ScanError(`zip: ${name} starts on another disk`);
    if (names.has(name)) throw new ScanError(`zip: duplicate entry ${name}`);
    names.add(name);
    if (name.startsWith('/') || name.includes('\\') || name.split('/').includes('..')) throw new ScanError(`zip: entry name ${JSON.stringify(name)} escapes the archive`);
    const lh = await src.read(localOffset, 30);
    if (lh.length < 30 || lh.readUInt32LE(0) !== 0x04034b50) throw new ScanError(`zip: ${name}: no local header where the central directory points`);
    const lFlags = lh.readUInt16LE(6);
    const lMethod = lh.readUInt16LE(8);
    const lNameLen = lh.readUInt16LE(26);
    const lExtraLen = lh.readUInt16LE(28);
    const lName = (await src.read(localOffset + 30, lNameLen)).toString('utf8');
    if (lName !== name) throw new ScanError(`zip: local header names ${JSON.stringify(lName)} where the central directory names ${JSON.stringify(name)}`);
    if (lFlags !== flags || lMethod !== method) throw new ScanError(`zip: ${name}: local header flags or method differ from the central directory`);
    if (!(flags & 0x8)) {
      const lCrc = lh.readUInt32LE(14);
      const lComp = lh.readUInt32LE(18);
      const lSize = lh.readUInt32LE(22);
      if (lCrc !== crc || lComp !== compressedSize || lSize !== size) throw new ScanError(`zip: ${name}: local header sizes or CRC differ from the central directory`);
    }
    const dataOffset = localOffset + 30 + lNameLen + lExtraLen;
    if (dataOffset + compressedSize > cdOffset) throw new ScanError(`zip: ${name} runs into the central directory`);
    entries.push({ name, method, flags, crc, compressedSize, size, dataOffset, localOffset });
  }
  // Entries must tile the file from byte 0 without overlaps (gaps only for data descriptors).
  const sorted = [...entries].sort((a, b) => a.dataOffset - b.dataOffset);
  if (sorted.length > 0 && sorted[0].localOffset !== 0) throw new ScanError('zip: bytes before the first entry');
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].dataOffset < sorted[i - 1].dataOffset + sorted[i - 1].compressedSize) throw new ScanError(`zip: entries ${sorted[i - 1].name} and ${sorted[i].name} overlap`);
  }
  return entries;
}

const MAX_INFLATE = 1 << 30;

/** An entry's bytes (inflated), checked against its CRC and size. */
export async function readEntry(src: ByteSource, e: ZipEntry, maxBytes = MAX_INFLATE): Promise<Buffer> {
  if (e.size > maxBytes) throw new ScanError(`zip: ${e.name} is ${e.size} bytes, over the ${maxBytes}-byte limit for inspected entries`);
  const raw = await src.read(e.dataOffset, e.compressedSize);
  let data: Buffer;
  if (e.method === 0) data = raw;
  else {
    try {
      data = inflateRawSync(raw, { maxOutputLength: Math.max(e.size, 1) });
    } catch (err) {
      throw new ScanError(`zip: ${e.name} does not inflate: ${(err as Error).message}`);
    }
  }
  if (data.length !== e.size) throw new ScanError(`zip: ${e.name} is ${data.length} bytes, the directory says ${e.size}`);
  if (crc32(data) >>> 0 !== e.crc) throw new ScanError(`zip: ${e.name} fails its CRC check`);
  return data;
}

/** CRC of a stored entry without holding it whole (for large tensor data). */
export async function checkStoredCrc(src: ByteSource, e: ZipEntry): Promise<void> {
  if (e.method !== 0) {
    await readEntry(src, e);
    return;
  }
  if (e.compressedSize !== e.size) throw new ScanError(`zip: stored entry ${e.name} has different compressed and plain sizes`);
  let crc = 0;
  for (let off = 0; off < e.size; off += 1 << 20) {
    const chunk = await src.read(e.dataOffset + off, Math.min(1 << 20, e.size - off));
    crc = crc32(chunk, crc);
  }
  if (crc >>> 0 !== e.crc) throw new ScanError(`zip: ${e.name} fails its CRC check`);
}
