import { Cursor, ScanError, type ByteSource } from './source.js';

// ---------------------------------------------------------------------------------------------
// A strict JSON reader: duplicate keys are an error (JSON.parse keeps the last one silently),
// integers above 2^53 are an error, depth is bounded. One function (a small recursive-descent
// parser with its helpers inside) so the grammar reads top to bottom.

export function strictJson(text: string, maxDepth = 64): unknown {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const fail = (msg: string): never => {
    throw new ScanError(`JSON: ${msg} at character ${i}`);
  };
  const str = (): string => {
    const m = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
    m.lastIndex = i;
    const r = m.exec(text);
    if (!r) fail('bad string');
    i = m.lastIndex;
    return JSON.parse(r![0]) as string;
  };
  const value = (depth: number): unknown => {
    if (depth > maxDepth) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const out: Record<string, unknown> = Object.create(null);
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const k = str();
        if (seen.has(k)) fail(`duplicate key ${JSON.stringify(k.slice(0, 100))}`);
        seen.add(k);
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        out[k] = value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return out;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const out: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return out;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    const m = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false|null/y;
    m.lastIndex = i;
    const r = m.exec(text);
    if (!r) fail('unexpected character');
    i = m.lastIndex;
    const v = JSON.parse(r![0]);
    if (typeof v === 'number' && !r![1] && !r![2] && !Number.isSafeInteger(v)) fail(`integer ${r![0].slice(0, 30)} is larger than 2^53`);
    return v;
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

// ---------------------------------------------------------------------------------------------
// safetensors: fully checkable from the header plus the total length (huggingface/safetensors
// tensor.rs rules), before any tensor byte goes out.

const ST_BITS: Record<string, number> = {
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  I64: 64,
  U64: 64,
  F64: 64,
  C64: 64,
};
/** The reference's MAX_HEADER_SIZE. */
export const ST_MAX_HEADER = 100_000_000;
const ST_MAX_TENSORS = 1_000_000;

export interface SafetensorsInfo {
  tensors: number;
  headerBytes: number;
  metadata: Record<string, string>;
}

export async function checkSafetensors(src: ByteSource): Promise<SafetensorsInfo> {
  if (src.size < 8) throw new ScanError('safetensors: shorter than its 8-byte header length');
  const n = (await src.read(0, 8)).readBigUInt64LE(0);
  if (n > BigInt(ST_MAX_HEADER)) throw new ScanError(`safetensors: header of ${n} bytes is over the ${ST_MAX_HEADER}-byte limit`);
  const hlen = Number(n);
  if (8 + hlen > src.size) throw new ScanError(`safetensors: header of ${hlen} bytes runs past the end of the file`);
  const hb = await src.read(8, hlen);
  if (hb[0] !== 0x7b) throw new ScanError('safetensors: header does not start with "{"');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(hb);
  } catch {
    throw new ScanError('safetensors: header is not valid UTF-8');
  }
  const header = strictJson(text.replace(/ +$/, '')) as Record<string, unknown>;
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new ScanError('safetensors: header is not an object');
  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: bigint; end: bigint }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ScanError('safetensors: __metadata__ is not an object');
      for (const [k, mv] of Object.entries(v)) {
        if (typeof mv !== 'string') throw new ScanError(`safetensors: __metadata__.${k} is not a string`);
        metadata[k] = mv;
      }
      continue;
    }
    if (spans.length >= ST_MAX_TENSORS) throw new ScanError('safetensors: too many tensors');
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!t || typeof t !== 'object' || Array.isArray(t)) throw new ScanError(`safetensors: tensor ${name} is not an object`);
    for (const k of Object.keys(t))
      if (!['dtype', 'shape', 'data_offsets'].includes(k)) throw new ScanError(`safetensors: tensor ${name} has unknown field ${k}`);
    const bits = typeof t.dtype === 'string' ? ST_BITS[t.dtype] : undefined;
    if (!bits) throw new ScanError(`safetensors: tensor ${name} has unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new ScanError(`safetensors: tensor ${name} has a bad shape`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new ScanError(`safetensors: tensor ${name} has bad data_offsets`);
    const [begin, end] = off.map(BigInt) as [bigint, bigint];
    if (end < begin) throw new ScanError(`safetensors: tensor ${name} ends before it begins`);
    let elems = 1n;
    for (const d of t.shape as number[]) elems *= BigInt(d);
    const totalBits = elems * BigInt(bits);
    if (totalBits % 8n !== 0n) throw new ScanError(`safetensors: tensor ${name} is not a whole number of bytes`);
    if (totalBits / 8n !== end - begin) throw new ScanError(`safetensors: tensor ${name} is ${end - begin} bytes, its dtype and shape say ${totalBits / 8n}`);
    spans.push({ name, begin, end });
  }
  spans.sort((a, b) => (a.begin < b.begin ? -1 : a.begin > b.begin ? 1 : a.end < b.end ? -1 : 1));
  let expect = 0n;
  for (const s of spans) {
    if (s.begin !== expect) throw new ScanError(`safetensors: tensor ${s.name} starts at ${s.begin}, expected ${expect} (a gap or an overlap)`);
    expect = s.end;
  }
  const total = 8n + BigInt(hlen) + expect;
  if (total !== BigInt(src.size))
    throw new ScanError(`safetensors: the header accounts for ${total} bytes, the file has ${src.size} (trailing or missing bytes)`);
  return { tensors: spans.length, headerBytes: hlen, metadata };
}

// ---------------------------------------------------------------------------------------------
// GGUF (ggml docs/gguf.md): bounds, overflow and alignment checks; chat templates surfaced.

/** ggml type id -> [block size, bytes per block]. From ggml's type traits; ids removed upstream are absent. */
const GGML_TYPES: Record<number, [number, number]> = {
  0: [1, 4],
  1: [1, 2],
  2: [32, 18],
  3: [32, 20],
  6: [32, 22],
  7: [32, 24],
  8: [32, 34],
  9: [32, 36],
  10: [256, 84],
  11: [256, 110],
  12: [256, 144],
  13: [256, 176],
  14: [256, 210],
  15: [256, 292],
  16: [256, 66],
  17: [256, 74],
  18: [256, 98],
  19: [256, 50],
  20: [32, 18],
  21: [256, 110],
  22: [256, 82],
  23: [256, 136],
  24: [1, 1],
  25: [1, 2],
  26: [1, 4],
  27: [1, 8],
  28: [1, 8],
  29: [256, 56],
  30: [1, 2],
  34: [256, 54],
  35: [256, 66],
  39: [32, 17],
};
const GGUF_SCALAR: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const SUSPICIOUS_TEMPLATE =
  /__class__|__mro__|__subclasses__|__globals__|__builtins__|__import__|\bpopen\b|\bos\.|subprocess|\bcycler\b|\bjoiner\b|\blipsum\b|\bnamespace\b\s*\./;

export interface GgufInfo {
  version: number;
  tensors: number;
  architecture: string;
  chatTemplate?: string;
  suspiciousTemplate: boolean;
}

/** Walk a GGUF header (metadata key/values, then tensor infos) in file order: one pass, one function, as the format is laid out. */
export async function checkGguf(src: ByteSource): Promise<GgufInfo> {
  const cur = new Cursor(src);
  const magic = await cur.take(4);
  if (magic.toString('latin1') !== 'GGUF') throw new ScanError('gguf: bad magic');
  const version = (await cur.take(4)).readUInt32LE(0);
  if (version !== 2 && version !== 3) throw new ScanError(`gguf: version ${version} is not accepted (2 or 3; a byte-swapped value means big-endian)`);
  const tensorCount = (await cur.take(8)).readBigUInt64LE(0);
  const kvCount = (await cur.take(8)).readBigUInt64LE(0);
  // Every KV takes at least 12 bytes and every tensor info at least 24: counts beyond that are lies.
  if (kvCount * 12n > BigInt(src.size) || tensorCount * 24n > BigInt(src.size)) throw new ScanError('gguf: counts larger than the file could hold');
  const u64 = async () => (await cur.take(8)).readBigUInt64LE(0);
  const str = async (what: string, max = 1 << 26): Promise<string> => {
    const n = await u64();
    if (n > BigInt(cur.remaining) || n > BigInt(max)) throw new ScanError(`gguf: ${what} string of ${n} bytes is out of bounds`);
    return (await cur.take(Number(n))).toString('utf8');
  };
  const kv = new Map<string, unknown>();
  const value = async (type: number, depth: number, key: string): Promise<unknown> => {
    if (type in GGUF_SCALAR) {
      const b = await cur.take(GGUF_SCALAR[type]);
      if (type === 7 && b[0] > 1) throw new ScanError(`gguf: ${key}: BOOL value ${b[0]}`);
      if (type === 4) return b.readUInt32LE(0);
      return undefined;
    }
    if (type === 8) return str(key);
    if (type === 9) {
      if (depth >= 3) throw new ScanError(`gguf: ${key}: arrays nested too deeply`);
      const et = (await cur.take(4)).readUInt32LE(0);
      const n = await u64();
      if (!(et in GGUF_SCALAR) && et !== 8 && et !== 9) throw new ScanError(`gguf: ${key}: unknown array element type ${et}`);
      const min = et in GGUF_SCALAR ? GGUF_SCALAR[et] : et === 8 ? 8 : 12;
      if (n * BigInt(min) > BigInt(cur.remaining)) throw new ScanError(`gguf: ${key}: array of ${n} elements is larger than the file`);
      if (et in GGUF_SCALAR) {
        await cur.take(Number(n) * GGUF_SCALAR[et]);
        return undefined;
      }
      for (let i = 0n; i < n; i++) await value(et, depth + 1, key);
      return undefined;
    }
    throw new ScanError(`gguf: ${key}: unknown value type ${type}`);
  };
  for (let i = 0n; i < kvCount; i++) {
    const key = await str('key', 65535);
    if (kv.has(key)) throw new ScanError(`gguf: duplicate key ${key}`);
    const type = (await cur.take(4)).readUInt32LE(0);
    kv.set(key, await value(type, 0, key));
  }
  const arch = kv.get('general.architecture');
  if (typeof arch !== 'string' || !/^[a-z0-9_]+$/.test(arch)) throw new ScanError('gguf: general.architecture is missing or malformed');
  const alignment = kv.has('general.alignment') ? kv.get('general.alignment') : 32;
  if (typeof alignment !== 'number' || alignment === 0 || alignment % 8 !== 0)
    throw new ScanError(`gguf: general.alignment ${String(alignment)} is not a multiple of 8`);
  const names = new Set<string>();
  const tensors: { name: string; offset: bigint; bytes: bigint }[] = [];
  for (let i = 0n; i < tensorCount; i++) {
    const name = await str('tensor name', 64);
    if (names.has(name)) throw new ScanError(`gguf: duplicate tensor ${name}`);
    names.add(name);
    const nd = (await cur.take(4)).readUInt32LE(0);
    if (nd < 1 || nd > 4) throw new ScanError(`gguf: tensor ${name} has ${nd} dimensions (1 to 4)`);
    let elems = 1n;
    let first = 0n;
    for (let d = 0; d < nd; d++) {
      const dim = await u64();
      if (dim === 0n) throw new ScanError(`gguf: tensor ${name} has a zero dimension`);
      if (d === 0) first = dim;
      elems *= dim;
      if (elems > 1n << 62n) throw new ScanError(`gguf: tensor ${name}: element count overflows`);
    }
    const type = (await cur.take(4)).readUInt32LE(0);
    const traits = GGML_TYPES[type];
    if (!traits) throw new ScanError(`gguf: tensor ${name} has unknown or removed ggml type ${type}`);
    const [block, bytes] = traits;
    if (first % BigInt(block) !== 0n) throw new ScanError(`gguf: tensor ${name}: first dimension is not a multiple of the block size`);
    const offset = await u64();
    if (offset % BigInt(alignment) !== 0n) throw new ScanError(`gguf: tensor ${name} offset is not aligned to ${alignment}`);
    tensors.push({ name, offset, bytes: (elems / BigInt(block)) * BigInt(bytes) });
  }
  const dataStart = BigInt(Math.ceil(cur.pos / alignment) * alignment);
  const dataSize = BigInt(src.size) - dataStart;
  if (dataSize < 0n) throw new ScanError('gguf: no room for the data section');
  tensors.sort((a, b) => (a.offset < b.offset ? -1 : 1));
  let end = 0n;
  for (const t of tensors) {
    if (t.offset < end) throw new ScanError(`gguf: tensor ${t.name} overlaps the previous one`);
    end = t.offset + t.bytes;
    if (end > dataSize) throw new ScanError(`gguf: tensor ${t.name} runs past the end of the file`);
  }
  const chatTemplate = typeof kv.get('tokenizer.chat_template') === 'string' ? (kv.get('tokenizer.chat_template') as string) : undefined;
  return {
    version,
    tensors: tensors.length,
    architecture: arch,
    chatTemplate,
    suspiciousTemplate: chatTemplate !== undefined && SUSPICIOUS_TEMPLATE.test(chatTemplate),
  };
}

export function suspiciousTemplate(t: string): boolean {
  return SUSPICIOUS_TEMPLATE.test(t);
}

// ---------------------------------------------------------------------------------------------
// NumPy .npy: the header says whether the data section is a pickle (object dtype).

export interface NpyInfo {
  descr: string;
  objectDtype: boolean;
  dataOffset: number;
}

export async function readNpyHeader(src: ByteSource, base = 0): Promise<NpyInfo> {
  const head = await src.read(base, 12);
  if (head.length < 10 || head.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw new ScanError('npy: bad magic');
  const major = head[6];
  let hlen: number;
  let start: number;
  if (major === 1) {
    hlen = head.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    hlen = head.readUInt32LE(8);
    start = 12;
  } else throw new ScanError(`npy: format version ${major} is not known`);
  if (hlen > 1 << 20 || base + start + hlen > src.size) throw new ScanError('npy: header length out of bounds');
  const text = (await src.read(base + start, hlen)).toString(major === 3 ? 'utf8' : 'latin1');
  const m = /['"]descr['"]\s*:\s*(.+?)\s*,\s*['"](?:fortran_order|shape)['"]/s.exec(text);
  if (!m) throw new ScanError('npy: header has no descr');
  const descr = m[1];
  // 'O' as a type code (|O, <O, O8) or inside a structured dtype means Python objects: a pickle.
  const objectDtype = /(^|['"(\s,])[|<>=]?O\d*['")\s,]/.test(descr) || /['"][|<>=]?O['"]/.test(descr);
  return { descr, objectDtype, dataOffset: base + start + hlen };
}
