import { crc32 } from 'node:zlib';
import tar from 'tar-stream';

/**
 * Model files built from bytes for the scanner tests. Nothing here is ever unpickled: the
 * pickle recipes are hex strings checked with pickletools (../shared/reference/scanning.md §4),
 * and their payload is `id`.
 */
export const R = {
  /** proto 0: c os\nsystem\n ( S'id' t R . */
  R1: '636f730a73797374656d0a2853276964270a74522e',
  /** what CPython emits for os.system('id') at protocol 2 */
  R2: '800263706f7369780a73797374656d0a71005802000000696471018571025271032e',
  /** proto 4: SHORT_BINUNICODE + MEMOIZE, then STACK_GLOBAL */
  R3: '80048c05706f736978948c0673797374656d9493948c02696494859452942e',
  /** memo indirection with decoy torch/LongStorage strings */
  R4: '80048c026f7394308c0673797374656d94308c05746f726368948c0b4c6f6e6753746f7261676594303068006801938c02696485522e',
  /** INST */
  R5: '2853276964270a696f730a73797374656d0a2e',
  /** OBJ */
  R6: '28636f730a73797374656d0a53276964270a6f2e',
  /** getattr(__import__('os'), 'system')('id') */
  R7: '80048c086275696c74696e738c0767657461747472938c086275696c74696e738c0a5f5f696d706f72745f5f938c026f7385528c0673797374656d86528c02696485522e',
  /** broken pickle: payload, then junk, no STOP */
  R8: '800263706f7369780a73797374656d0a580200000069648552fffefd6a756e6b',
  /** two pickles: a benign list, then R2 */
  R9: '80025d71002e' + '800263706f7369780a73797374656d0a71005802000000696471018571025271032e',
  /** benign torch state_dict (collections.OrderedDict, _rebuild_tensor_v2, FloatStorage), proto 2 */
  R10: '800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271015806000000776569676874710263746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073746f72616765710463746f7263680a466c6f617453746f726167650a71055801000000307106580300000063707571074b04747108514b004b048571094b0185710a8968002952710b74710c52710d732e',
  /** STACK_GLOBAL without PROTO */
  R11: '8c026f738c0673797374656d938c02696485522e',
  /** STRING operands for STACK_GLOBAL (GHSA-9gvj-pp9x-gcfr) */
  R12: '800453276f73270a532773797374656d270a9353276964270a85522e',
} as const;

export const hex = (h: string) => Buffer.from(h, 'hex');

/** 4 x float32 (1, 2, 3, 4): the storage R10 points at. */
export const R10_STORAGE = hex('0000803f000000400000404000008040');

export interface ZipMember {
  name: string;
  data: Buffer;
  /** Name written in the local header (defaults to name). */
  localName?: string;
  flags?: number;
  /** CRC written (defaults to the real one). */
  crc?: number;
}

/** A STORED zip, as torch.save writes it, with switches for the tricks scanners were fooled by. */
export function makeZip(members: ZipMember[], opts: { prepend?: Buffer; descriptorZeros?: boolean } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = opts.prepend?.length ?? 0;
  for (const m of members) {
    const name = Buffer.from(m.name);
    const lname = Buffer.from(m.localName ?? m.name);
    const crc = m.crc ?? crc32(m.data) >>> 0;
    const flags = m.flags ?? (opts.descriptorZeros ? 0x8 : 0);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(flags, 6);
    lh.writeUInt16LE(0, 8);
    lh.writeUInt16LE(0x21, 12);
    lh.writeUInt32LE(opts.descriptorZeros ? 0 : crc, 14);
    lh.writeUInt32LE(opts.descriptorZeros ? 0 : m.data.length, 18);
    lh.writeUInt32LE(opts.descriptorZeros ? 0 : m.data.length, 22);
    lh.writeUInt16LE(lname.length, 26);
    lh.writeUInt16LE(0, 28);
    const parts = [lh, lname, m.data];
    if (opts.descriptorZeros) {
      const dd = Buffer.alloc(16);
      dd.writeUInt32LE(0x08074b50, 0);
      dd.writeUInt32LE(crc, 4);
      dd.writeUInt32LE(m.data.length, 8);
      dd.writeUInt32LE(m.data.length, 12);
      parts.push(dd);
    }
    const local = Buffer.concat(parts);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(flags, 8);
    ch.writeUInt16LE(0, 10);
    ch.writeUInt16LE(0x21, 14);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(m.data.length, 20);
    ch.writeUInt32LE(m.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    centrals.push(Buffer.concat([ch, name]));
    locals.push(local);
    offset += local.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(members.length, 8);
  eocd.writeUInt16LE(members.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([opts.prepend ?? Buffer.alloc(0), ...locals, cd, eocd]);
}

/** The torch.save zip layout: archive/data.pkl first, then version and storages. */
export function torchZip(pickle: Buffer, storages: Record<string, Buffer> = { '0': R10_STORAGE }, archive = 'archive'): Buffer {
  return makeZip([
    { name: `${archive}/data.pkl`, data: pickle },
    { name: `${archive}/version`, data: Buffer.from('3\n') },
    ...Object.entries(storages).map(([k, v]) => ({ name: `${archive}/data/${k}`, data: v })),
  ]);
}

/** safetensors: 8-byte LE header length, the header (raw text or an object), then the data. */
export function safetensors(header: string | object, data: Buffer, pad = true): Buffer {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  if (pad) while ((8 + Buffer.byteLength(text)) % 8) text += ' ';
  const h = Buffer.from(text);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: bigint | number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const gstr = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);

export type GgufKv = [string, 'string', string] | [string, 'u32', number] | [string, 'raw', number, Buffer];

/** A GGUF v3 file with the given KVs and tensors (F32 tensors, data zero-filled and aligned). */
export function gguf(
  kvs: GgufKv[],
  tensors: { name: string; dims: number[]; type?: number; offset?: number }[] = [],
  opts: { version?: number; kvCount?: bigint; alignment?: number } = {},
): Buffer {
  const parts: Buffer[] = [Buffer.from('GGUF'), u32(opts.version ?? 3), u64(tensors.length), u64(opts.kvCount ?? BigInt(kvs.length))];
  for (const kv of kvs) {
    parts.push(gstr(kv[0]));
    if (kv[1] === 'string') parts.push(u32(8), gstr(kv[2]));
    else if (kv[1] === 'u32') parts.push(u32(4), u32(kv[2]));
    else parts.push(u32(kv[2]), kv[3]);
  }
  let off = 0;
  const align = opts.alignment ?? 32;
  const sizes: number[] = [];
  for (const t of tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    // Absurd shapes (overflow tests) get no data section at all.
    const bytes = n * 4 <= 1 << 20 ? n * 4 : 0;
    parts.push(gstr(t.name), u32(t.dims.length), ...t.dims.map((d) => u64(d)), u32(t.type ?? 0), u64(t.offset ?? off));
    sizes.push(bytes);
    off += Math.ceil(bytes / align) * align;
  }
  let body = Buffer.concat(parts);
  const pad = (align - (body.length % align)) % align;
  body = Buffer.concat([body, Buffer.alloc(pad), Buffer.alloc(off)]);
  return body;
}

/** An .npy file with the given descr and a data section. */
export function npy(descr: string, data: Buffer, shape = '(1,)'): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  while ((10 + header.length + 1) % 64) header += ' ';
  header += '\n';
  const len = Buffer.alloc(2);
  len.writeUInt16LE(header.length);
  return Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), len, Buffer.from(header, 'latin1'), data]);
}

/** A tar written by tar-stream (a real tar writer), with links and odd names where asked. */
export async function makeTar(members: { name: string; data?: Buffer; type?: 'file' | 'symlink' | 'link' | 'fifo'; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const m of members)
    pack.entry({ name: m.name, type: m.type ?? 'file', linkname: m.linkname, size: m.data?.length ?? 0, mtime: new Date(0) }, m.data ?? Buffer.alloc(0));
  pack.finalize();
  const out: Buffer[] = [];
  for await (const c of pack) out.push(c as Buffer);
  return Buffer.concat(out);
}
