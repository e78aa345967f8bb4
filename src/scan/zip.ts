import { crc32, inflateRawSync } from 'node:zlib';
import { ScanError, type ByteSource } from './source.js';

/**
 * A strict zip reader for model containers. It reads the central directory the way PyTorch's
 * miniz does, and the layouts real writers produce (proven on test/corpus: torch.save 1.13 and
 * 2.x, numpy.savez, Python zipfile): ZIP64 end records and locator, ZIP64 extra fields in local
 * and central headers, data descriptors with and without their signature, padding extra fields
 * and archive comments. It rejects every inconsistency that has been used to show a scanner one
 * file and a loader another: local vs central names, sizes or CRCs (data descriptors included),
 * unexpected flag bits, duplicate names, bytes before the first entry or between entries, and
 * overlapping entries. The entries must tile the file from byte 0 to the central directory.
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
  /** Offset just past the entry: its data, plus its data descriptor when it has one. */
  end: number;
}

const MAX_ENTRIES = 100_000;
/** Flags a model archive may carry: 0x8 data descriptor, 0x800 UTF-8 names. */
const ALLOWED_FLAGS = 0x8 | 0x800;
const SIG = { local: 0x04034b50, central: 0x02014b50, eocd: 0x06054b50, z64eocd: 0x06064b50, z64locator: 0x07064b50, descriptor: 0x08074b50 };
const U32_MAX = 0xffffffff;

function u64(b: Buffer, at: number, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ScanError(`zip: ${what} ${v} is out of range`);
  return Number(v);
}

/** Extra fields by header id; a field that runs past its area or repeats is malformed. */
function extraFields(b: Buffer, where: string): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let p = 0;
  while (p + 4 <= b.length) {
    const id = b.readUInt16LE(p);
    const len = b.readUInt16LE(p + 2);
    if (p + 4 + len > b.length) throw new ScanError(`zip: ${where}: an extra field runs past its header`);
    if (out.has(id)) throw new ScanError(`zip: ${where}: extra field 0x${id.toString(16)} appears twice`);
    out.set(id, b.subarray(p + 4, p + 4 + len));
    p += 4 + len;
  }
  if (p !== b.length) throw new ScanError(`zip: ${where}: trailing bytes in the extra field area`);
  return out;
}

/**
 * The ZIP64 extended information field: the 64-bit values of the header fields that hold the
 * 0xFFFFFFFF sentinel, in the order uncompressed size, compressed size, local header offset.
 */
function zip64Values(extra: Map<number, Buffer>, fields: { size: number; compressedSize: number; localOffset?: number }, where: string, local: boolean) {
  const z = extra.get(0x0001);
  const out = { ...fields };
  if (!z) {
    if (fields.size === U32_MAX || fields.compressedSize === U32_MAX || fields.localOffset === U32_MAX)
      throw new ScanError(`zip: ${where}: a ZIP64 sentinel without a ZIP64 extra field`);
    return { ...out, zip64: false };
  }
  let p = 0;
  const next = (what: string) => {
    if (p + 8 > z.length) throw new ScanError(`zip: ${where}: the ZIP64 extra field lacks the ${what}`);
    const v = u64(z, p, what);
    p += 8;
    return v;
  };
  // A local header's ZIP64 field carries both sizes whenever it is present (APPNOTE 4.5.3).
  if (local || fields.size === U32_MAX) out.size = next('uncompressed size');
  if (local || fields.compressedSize === U32_MAX) out.compressedSize = next('compressed size');
  if (!local && fields.localOffset === U32_MAX) out.localOffset = next('local header offset');
  return { ...out, zip64: true };
}

interface EndRecord {
  count: number;
  cdSize: number;
  cdOffset: number;
  /** Where the central directory must end: the ZIP64 end record, or the end record. */
  cdEnd: number;
}

async function readEnd(src: ByteSource): Promise<EndRecord> {
  const tailLen = Math.min(src.size, 22 + 65535);
  const tail = await src.read(src.size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG.eocd && i + 22 + tail.readUInt16LE(i + 20) === tail.length) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ScanError('zip: no end-of-central-directory record at the end of the file');
  const e = tail.subarray(eocd);
  const eocdAt = src.size - tailLen + eocd;
  if (e.readUInt16LE(4) !== 0 || e.readUInt16LE(6) !== 0) throw new ScanError('zip: multi-disk archives are not accepted');
  let count = e.readUInt16LE(10);
  if (count !== e.readUInt16LE(8)) throw new ScanError('zip: entry counts disagree');
  let cdSize = e.readUInt32LE(12);
  let cdOffset = e.readUInt32LE(16);
  let cdEnd = eocdAt;
  const loc = eocdAt >= 20 ? await src.read(eocdAt - 20, 20) : Buffer.alloc(0);
  if (loc.length === 20 && loc.readUInt32LE(0) === SIG.z64locator) {
    // ZIP64: torch.save always writes this record and its locator; Python's zipfile past 65,535 entries or 4 GiB.
    if (loc.readUInt32LE(4) !== 0 || loc.readUInt32LE(16) !== 1) throw new ScanError('zip: multi-disk archives are not accepted (ZIP64 locator)');
    const z64At = u64(loc, 8, 'ZIP64 end record offset');
    const z = await src.read(z64At, 56);
    if (z.length < 56 || z.readUInt32LE(0) !== SIG.z64eocd) throw new ScanError('zip: no ZIP64 end record where its locator points');
    if (z64At + 12 + u64(z, 4, 'ZIP64 end record size') !== eocdAt - 20) throw new ScanError('zip: bytes between the ZIP64 end record and its locator');
    if (z.readUInt32LE(16) !== 0 || z.readUInt32LE(20) !== 0) throw new ScanError('zip: multi-disk archives are not accepted (ZIP64 end record)');
    const n = u64(z, 32, 'entry count');
    if (n !== u64(z, 24, 'entry count')) throw new ScanError('zip: ZIP64 entry counts disagree');
    const z64 = { count: n, cdSize: u64(z, 40, 'central directory size'), cdOffset: u64(z, 48, 'central directory offset') };
    // Each 32-bit field holds its value or the sentinel; anything else contradicts the ZIP64 record.
    if ((count !== 0xffff && count !== z64.count) || (cdSize !== U32_MAX && cdSize !== z64.cdSize) || (cdOffset !== U32_MAX && cdOffset !== z64.cdOffset)) {
      throw new ScanError('zip: the end record and the ZIP64 end record disagree');
    }
    ({ count, cdSize, cdOffset } = z64);
    cdEnd = z64At;
  } else if (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) {
    throw new ScanError('zip: ZIP64 sentinels in the end record without a ZIP64 end record');
  }
  if (count > MAX_ENTRIES) throw new ScanError(`zip: more than ${MAX_ENTRIES} entries`);
  if (cdOffset + cdSize !== cdEnd)
    throw new ScanError('zip: the central directory does not end where the end records begin (data hidden between them, or a prepended stub)');
  return { count, cdSize, cdOffset, cdEnd };
}

/** Length of the data descriptor after an entry's data, checked against the central directory. */
async function descriptorLength(src: ByteSource, e: Omit<ZipEntry, 'end'>, zip64: boolean): Promise<number> {
  const at = e.dataOffset + e.compressedSize;
  const b = await src.read(at, 24);
  const signed = b.length >= 4 && b.readUInt32LE(0) === SIG.descriptor && !(e.crc === SIG.descriptor && b.length >= 8 && b.readUInt32LE(4) !== SIG.descriptor);
  const p = signed ? 4 : 0;
  const need = p + (zip64 ? 20 : 12);
  if (b.length < need) throw new ScanError(`zip: ${e.name}: its data descriptor is truncated`);
  const crc = b.readUInt32LE(p);
  const comp = zip64 ? u64(b, p + 4, 'descriptor size') : b.readUInt32LE(p + 4);
  const size = zip64 ? u64(b, p + 12, 'descriptor size') : b.readUInt32LE(p + 8);
  if (crc !== e.crc || comp !== e.compressedSize || size !== e.size)
    throw new ScanError(`zip: ${e.name}: the data descriptor's sizes or CRC differ from the central directory`);
  return need;
}

// Long: one pass over the central directory, each entry checked against its local header and
// data descriptor; splitting it would scatter the cross-checks that are the point of it.
// `pace`, awaited before each entry: lets a caller on a server's event loop take turns (an advisory
// export of 20,000 entries in memory is otherwise read in one ~0.2 s stretch, core/turns.ts).
export async function readZip(src: ByteSource, pace?: () => Promise<void>): Promise<ZipEntry[]> {
  const { count, cdSize, cdOffset } = await readEnd(src);
  const cd = await src.read(cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    await pace?.();
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG.central) throw new ScanError(`zip: central directory entry ${i} is malformed`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const diskStart = cd.readUInt16LE(p + 34);
    const nameBuf = cd.subarray(p + 46, p + 46 + nameLen);
    const name = nameBuf.toString('utf8');
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw new ScanError(`zip: central directory entry ${i} runs past the directory`);
    const central = zip64Values(
      extraFields(cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), name),
      { compressedSize: cd.readUInt32LE(p + 20), size: cd.readUInt32LE(p + 24), localOffset: cd.readUInt32LE(p + 42) },
      name,
      false,
    );
    const { compressedSize, size } = central;
    const localOffset = central.localOffset!;
    p += 46 + nameLen + extraLen + commentLen;
    if (flags & ~ALLOWED_FLAGS)
      throw new ScanError(`zip: ${name} has general-purpose flags 0x${flags.toString(16)} (encrypted or patched entries are not accepted)`);
    if (method !== 0 && method !== 8) throw new ScanError(`zip: ${name} uses compression method ${method} (only stored and deflate are accepted)`);
    if (diskStart !== 0 && diskStart !== 0xffff) throw new ScanError(`zip: ${name} starts on another disk`);
    if (names.has(name)) throw new ScanError(`zip: duplicate entry ${name}`);
    names.add(name);
    if (name.startsWith('/') || name.includes('\\') || name.split('/').includes('..'))
      throw new ScanError(`zip: entry name ${JSON.stringify(name)} escapes the archive`);
    if (method === 0 && compressedSize !== size) throw new ScanError(`zip: stored entry ${name} has different compressed and plain sizes`);
    const lh = await src.read(localOffset, 30);
    if (lh.length < 30 || lh.readUInt32LE(0) !== SIG.local) throw new ScanError(`zip: ${name}: no local header where the central directory points`);
    const lFlags = lh.readUInt16LE(6);
    const lMethod = lh.readUInt16LE(8);
    const lNameLen = lh.readUInt16LE(26);
    const lExtraLen = lh.readUInt16LE(28);
    const lVar = await src.read(localOffset + 30, lNameLen + lExtraLen);
    const lName = lVar.subarray(0, lNameLen).toString('utf8');
    if (lName !== name) throw new ScanError(`zip: local header names ${JSON.stringify(lName)} where the central directory names ${JSON.stringify(name)}`);
    if (lFlags !== flags || lMethod !== method) throw new ScanError(`zip: ${name}: local header flags or method differ from the central directory`);
    const lExtra = extraFields(lVar.subarray(lNameLen), `${name} (local header)`);
    const local = zip64Values(lExtra, { compressedSize: lh.readUInt32LE(18), size: lh.readUInt32LE(22) }, `${name} (local header)`, true);
    const lCrc = lh.readUInt32LE(14);
    const dataOffset = localOffset + 30 + lNameLen + lExtraLen;
    const entry = { name, method, flags, crc, compressedSize, size, dataOffset, localOffset };
    let ddLen = 0;
    if (flags & 0x8) {
      // Streamed entries: the local header holds zeros (or zeros behind ZIP64 sentinels); the descriptor after the data has the values.
      if (lCrc !== 0 || local.compressedSize !== 0 || local.size !== 0) {
        if (lCrc !== crc || local.compressedSize !== compressedSize || local.size !== size)
          throw new ScanError(`zip: ${name}: local header sizes or CRC differ from the central directory`);
      }
      ddLen = await descriptorLength(src, entry, local.zip64 || central.zip64);
    } else if (lCrc !== crc || local.compressedSize !== compressedSize || local.size !== size) {
      throw new ScanError(`zip: ${name}: local header sizes or CRC differ from the central directory`);
    }
    entries.push({ ...entry, end: dataOffset + compressedSize + ddLen });
  }
  if (p !== cd.length) throw new ScanError('zip: bytes after the last central directory entry');
  // The entries tile the file: the first at byte 0, each where the last ended, the directory right after.
  const sorted = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  let at = 0;
  for (const e of sorted) {
    if (e.localOffset < at) throw new ScanError(`zip: ${e.name} overlaps the entry before it`);
    if (e.localOffset > at) throw new ScanError(at === 0 ? 'zip: bytes before the first entry' : `zip: ${e.localOffset - at} bytes hidden before ${e.name}`);
    at = e.end;
  }
  if (at > cdOffset) throw new ScanError('zip: the last entry runs into the central directory');
  if (at < cdOffset) throw new ScanError(`zip: ${cdOffset - at} bytes hidden before the central directory`);
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
  let crc = 0;
  for (let off = 0; off < e.size; off += 1 << 20) {
    const chunk = await src.read(e.dataOffset + off, Math.min(1 << 20, e.size - off));
    crc = crc32(chunk, crc);
  }
  if (crc >>> 0 !== e.crc) throw new ScanError(`zip: ${e.name} fails its CRC check`);
}
