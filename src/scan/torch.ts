import { crc32 } from 'node:zlib';
import { readNpyHeader, type NpyInfo } from './formats.js';
import type { PickleValue } from './pickle.js';
import { Report, noTrailing, scanPickles, type Format } from './report.js';
import { bufferSource, type ByteSource } from './source.js';
import { checkStoredCrc, readEntry, readZip, type ZipEntry } from './zip.js';

/** Bytes per element of each torch storage class a persistent id may name. */
const STORAGE_BYTES: Record<string, number> = {
  'torch.DoubleStorage': 8,
  'torch.FloatStorage': 4,
  'torch.HalfStorage': 2,
  'torch.BFloat16Storage': 2,
  'torch.LongStorage': 8,
  'torch.IntStorage': 4,
  'torch.ShortStorage': 2,
  'torch.CharStorage': 1,
  'torch.ByteStorage': 1,
  'torch.BoolStorage': 1,
  'torch.ComplexDoubleStorage': 16,
  'torch.ComplexFloatStorage': 8,
  'torch.QInt8Storage': 1,
  'torch.QUInt8Storage': 1,
  'torch.QInt32Storage': 4,
  'torch.QUInt4x2Storage': 1,
  'torch.QUInt2x4Storage': 1,
  'torch.UntypedStorage': 1,
};

export const LEGACY_TORCH_MAGIC = 0x1950a86a20f9469cfc6cn;

/**
 * A torch persistent id is ('storage', <storage class>, key, location, numel) in the zip format;
 * the legacy format (_use_new_zipfile_serialization=False) adds a sixth element, view_metadata
 * (None, or (view_key, offset, size)), which torch unpacks as data.
 */
export function storageRef(pid: PickleValue, legacy = false): { key: string; bytes: bigint } | string {
  const arity = legacy ? 6 : 5;
  if (pid.t !== 'tuple' || pid.items.length !== arity) return `a persistent id that is not a ${arity}-tuple`;
  const [tag, cls, key, loc, numel] = pid.items;
  if (tag.t !== 'str' || tag.v !== 'storage') return "a persistent id that does not start with 'storage'";
  if (cls.t !== 'global' || !(cls.name in STORAGE_BYTES)) return 'a persistent id whose storage type is not a torch storage class';
  if (key.t !== 'str' || loc.t !== 'str' || numel.t !== 'int') return 'a malformed storage persistent id';
  return { key: key.v, bytes: numel.v * BigInt(STORAGE_BYTES[cls.name]) };
}

/** Judges one member that is not a torch storage (a pickle under any name, an npy, an archive...). */
export type MemberJudge = (name: string, bytes: Buffer) => Promise<void>;

/** Members above this are not read whole: their CRC is checked and their first bytes sniffed. */
export const ZIP_MEMBER_MAX = 64 << 20;

export async function scanZip(
  src: ByteSource,
  r: Report,
  judgeMember: MemberJudge,
  sniffKind: (head: Buffer) => Format,
  preverified?: Preverified,
): Promise<Format> {
  const entries = await readZip(src);
  if (entries.length === 0) return 'zip';
  const byName = new Map(entries.map((e) => [e.name, e]));
  // PyTorch takes the archive name from the first central-directory entry (miniz), then <name>/data.pkl.
  const archive = entries[0].name.split('/')[0];
  const dataPkl = byName.get(`${archive}/data.pkl`);
  let format: Format = 'zip';
  const scanned = new Set<ZipEntry>();
  if (dataPkl) {
    format = 'torch-zip';
    const bytes = await readEntry(src, dataPkl, 512 << 20);
    scanned.add(dataPkl);
    const res = await scanPickles(bufferSource(bytes), r, 0, bytes.length, 1, `${archive}/data.pkl`);
    noTrailing(r, res, bytes.length, `${archive}/data.pkl: bytes after the pickle's STOP`);
    for (const pid of res.persistentIds) {
      const ref = storageRef(pid);
      if (typeof ref === 'string') {
        r.refuse('pickle_persistent_id', `${archive}/data.pkl: ${ref}`);
        continue;
      }
      const e = byName.get(`${archive}/data/${ref.key}`);
      if (!e) r.refuse('torch_storage_missing', `${archive}/data.pkl refers to storage ${ref.key}, which the archive lacks`);
      else if (BigInt(e.size) < ref.bytes)
        r.refuse('torch_storage_size', `${archive}/data/${ref.key} is ${e.size} bytes, smaller than the ${ref.bytes} its tensor needs`);
    }
  } else if (entries.some((e) => e.name.endsWith('.npy'))) format = 'npz';
  else if (byName.has('config.json') && byName.has('metadata.json')) format = 'keras';
  for (const e of entries) {
    if (scanned.has(e)) continue;
    if (format === 'torch-zip' && e.name.startsWith(`${archive}/data/`)) {
      // Checked as it streamed past, when the central directory agrees on where, what and which CRC.
      const seen = preverified?.get(e.localOffset);
      if (!(seen && seen.name === e.name && seen.crc === e.crc && seen.size === e.size && e.method === 0)) await checkStoredCrc(src, e);
      continue;
    }
    if (e.size > ZIP_MEMBER_MAX) {
      await checkStoredCrc(src, e);
      const head = await src.read(e.dataOffset, Math.min(4096, e.compressedSize));
      const kind = sniffKind(head);
      if (e.method === 0 && kind !== 'opaque')
        r.refuse('zip_member_unscanned', `${e.name}: a ${e.size}-byte member that looks like ${kind} is too large to inspect inside an archive`);
      continue;
    }
    const bytes = await readEntry(src, e, ZIP_MEMBER_MAX);
    if (format === 'keras' && e.name === 'config.json') scanKerasConfig(bytes, r);
    else await judgeMember(e.name, bytes);
  }
  return format;
}

function scanKerasConfig(bytes: Buffer, r: Report): void {
  const text = bytes.toString('utf8');
  if (/"class_name"\s*:\s*"(Lambda|TFSMLayer)"/.test(text) || text.includes('__lambda__')) {
    r.findings.push({ severity: 'code', code: 'keras_lambda', message: 'Keras model with a Lambda or TFSMLayer layer (code that runs when the model loads)' });
  }
  for (const m of text.matchAll(/"module"\s*:\s*"([^"]+)"/g)) {
    if (!/^keras(\.|$)/.test(m[1])) r.findings.push({ severity: 'code', code: 'keras_module', message: `Keras config refers to module ${m[1]} outside keras` });
  }
}

export async function scanNpy(src: ByteSource, r: Report, where: string, header?: NpyInfo): Promise<void> {
  const h = header ?? (await readNpyHeader(src));
  if (!h.objectDtype) return;
  const res = await scanPickles(src, r, h.dataOffset, src.size, 1, `${where} (object array)`);
  noTrailing(r, res, src.size, `${where}: bytes after the object array's pickle`);
}

/** After a raw pickle scan: a legacy torch file (magic number first) or a plain pickle file. */
export function judgeRawPickles(r: Report, res: Awaited<ReturnType<typeof scanPickles>>, size: number, path: string): Format {
  const legacy = res.first?.t === 'int' && res.first.v === LEGACY_TORCH_MAGIC;
  if (legacy && res.count < 5 && !r.refused('pickle_invalid')) r.refuse('torch_legacy', 'legacy torch file with fewer than its 5 pickles');
  // After the pickles of a plain pickle file, nothing may follow (joblib appends raw arrays; a payload could hide there).
  if (!legacy) noTrailing(r, res, size, `${path}: ${size - res.stop} bytes after the last pickle`);
  for (const pid of res.persistentIds) {
    const ref = storageRef(pid, legacy);
    if (typeof ref === 'string') r.refuse('pickle_persistent_id', `${path}: ${ref}`);
  }
  if (legacy) return 'torch-legacy';
  return [...r.globals].some((g) => g.startsWith('joblib.')) ? 'joblib' : 'pickle';
}

/** Entries whose CRC was checked as they streamed past: local header offset -> what was checked. */
export type Preverified = Map<number, { name: string; crc: number; size: number }>;

const DESCRIPTOR = 0x08074b50;
/** How far past a small entry's start its data descriptor is looked for (torch's metadata members). */
const SMALL_ENTRY = 4096;

/**
 * A torch.save zip read forwards from byte 0 as the file arrives. torch writes <archive>/data.pkl
 * first, with a data descriptor (sizes unknown in its local header): the pickle is decoded to its
 * STOP, checked against the descriptor that follows, and handed to `onPickle` (which may refuse
 * or release the stream). The walk then goes on through the storages (their sizes are the
 * pickle's numel x element size) and metadata members, checking each CRC as the bytes pass, so
 * the final whole-archive check need not read them again. Returns the entries it checked, or null
 * when the file does not start with a torch pickle (then it is judged whole, at the end).
 */
export async function followTorchZip(src: ByteSource, onPickle: (r: Report) => Promise<void>): Promise<Preverified | null> {
  const first = await localEntry(src, 0);
  if (!first || !/^[^/]+\/data\.pkl$/.test(first.name)) return null;
  const r = new Report();
  const res = await scanPickles(src, r, first.dataOffset, src.size, 1, first.name);
  if (r.refused()) {
    await onPickle(r);
    return null;
  }
  const checked: Preverified = new Map();
  const end = await checkEntry(src, first, res.stop - first.dataOffset, checked);
  if (end === null) return null;
  await onPickle(r);
  const archive = first.name.split('/')[0];
  const sizes = new Map<string, bigint>();
  for (const pid of res.persistentIds) {
    const ref = storageRef(pid);
    if (typeof ref !== 'string') sizes.set(`${archive}/data/${ref.key}`, ref.bytes);
  }
  // Long walks stop quietly at anything unexpected: the central directory pass judges it.
  for (let at: number | null = end; at !== null;) {
    const e = await localEntry(src, at);
    if (!e) break;
    const size = e.size ?? (sizes.has(e.name) ? Number(sizes.get(e.name)) : await findDescriptor(src, e));
    if (size === null || size === undefined) break;
    at = await checkEntry(src, e, size, checked);
  }
  return checked;
}

interface LocalEntry {
  name: string;
  offset: number;
  dataOffset: number;
  flags: number;
  /** From the local header, when it states it (no data descriptor). */
  size: number | undefined;
  crc: number;
}

async function localEntry(src: ByteSource, at: number): Promise<LocalEntry | null> {
  if (at + 30 > src.size) return null;
  const lh = await src.read(at, 30);
  if (lh.readUInt32LE(0) !== 0x04034b50 || lh.readUInt16LE(8) !== 0) return null;
  const flags = lh.readUInt16LE(6);
  const nameLen = lh.readUInt16LE(26);
  const name = (await src.read(at + 30, nameLen)).toString('utf8');
  const size = lh.readUInt32LE(22);
  const known = !(flags & 0x8) && size !== 0xffffffff && lh.readUInt32LE(18) === size;
  return { name, offset: at, dataOffset: at + 30 + nameLen + lh.readUInt16LE(28), flags, size: known ? size : undefined, crc: lh.readUInt32LE(14) };
}

/** The length of a small streamed entry: where a descriptor whose CRC and size match its data begins. */
async function findDescriptor(src: ByteSource, e: LocalEntry): Promise<number | null> {
  const window = await src.read(e.dataOffset, Math.min(SMALL_ENTRY, src.size - e.dataOffset));
  for (let i = window.indexOf(0x50); i >= 0 && i + 16 <= window.length; i = window.indexOf(0x50, i + 1)) {
    if (
      window.readUInt32LE(i) === DESCRIPTOR &&
      window.readUInt32LE(i + 8) === i &&
      window.readUInt32LE(i + 12) === i &&
      crc32(window.subarray(0, i)) >>> 0 === window.readUInt32LE(i + 4)
    )
      return i;
  }
  return null;
}

/** CRC of `size` bytes of an entry's data as they arrive, against its descriptor or header; the offset after it. */
async function checkEntry(src: ByteSource, e: LocalEntry, size: number, checked: Preverified): Promise<number | null> {
  let crc = 0;
  for (let off = 0; off < size; off += 1 << 20) crc = crc32(await src.read(e.dataOffset + off, Math.min(1 << 20, size - off)), crc);
  crc >>>= 0;
  let end = e.dataOffset + size;
  if (e.flags & 0x8) {
    const dd = await src.read(end, 16);
    const p = dd.length >= 4 && dd.readUInt32LE(0) === DESCRIPTOR ? 4 : 0;
    if (dd.length < p + 12 || dd.readUInt32LE(p) !== crc || dd.readUInt32LE(p + 4) !== size || dd.readUInt32LE(p + 8) !== size) return null;
    end += p + 12;
  } else if (e.crc !== crc) return null;
  checked.set(e.offset, { name: e.name, crc, size });
  return end;
}
