import { ScanError } from './source.js';
import { LIMITS, OTHER, type PickleVm, type V } from './pickle-vm.js';

/**
 * What each pickle opcode does to the abstract machine (pickle-vm.ts), one small handler per
 * opcode, in tables grouped by job: framing, the stack and MARK frames, literals, strings and
 * bytes, containers, the memo, imports, and calls. decodePickle (pickle.ts) reads the opcode byte
 * and calls the handler from OPCODES; STOP and unknown opcodes are its own. A handler that reads
 * no operand is synchronous, so the dispatch awaits only the ones that read (the decoder runs on
 * every pickle inside every model file). Opcode table and semantics: CPython's pickletools and
 * pickle.py; each handler can be checked against its _Unpickler.load_* method.
 */

/** Handles one opcode; `at` is the byte offset of the opcode, `op` the opcode (for handlers shared by a family). */
export type OpHandler = (m: PickleVm, at: number, op: number) => void | Promise<void>;
type OpTable = Record<number, OpHandler>;

function le(b: Buffer): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** Python 2 repr-quoted STRING argument ('...' or "..."), enough escapes to recover names. */
function unquote(raw: string, at: number): string {
  const q = raw[0];
  if (raw.length < 2 || (q !== "'" && q !== '"') || raw[raw.length - 1] !== q) throw new ScanError(`STRING at byte ${at} is not quoted`);
  const s = raw.slice(1, -1);
  return s.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_m, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ({ n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v' } as Record<string, string>)[e] ?? `\\${e}`;
  });
}

/** raw-unicode-escape (UNICODE opcode): \uXXXX and \UXXXXXXXX, the rest latin-1. */
function rawUnicode(b: Buffer): string {
  return b.toString('latin1').replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_m, u: string, U: string) => String.fromCodePoint(parseInt(u ?? U, 16)));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function decodeUtf8(b: Buffer, at: number): string {
  try {
    return utf8.decode(b);
  } catch {
    throw new ScanError(`invalid UTF-8 in a string at byte ${at}`);
  }
}

/** PROTO and FRAME (STOP is the dispatch's: it ends the pickle). */
const FRAMING: OpTable = {
  // PROTO
  0x80: async (m, at) => {
    m.proto = await m.cur.u8();
    if (m.proto > 5) throw new ScanError(`unsupported pickle protocol ${m.proto} at byte ${at}`);
  },
  // FRAME: the content is ordinary opcodes
  0x95: async (m, at) => {
    const n = Number((await m.cur.take(8)).readBigUInt64LE(0));
    if (n > m.cur.remaining) throw new ScanError(`FRAME of ${n} bytes at byte ${at} runs past the end`);
  },
};

/** MARK frames and the plain stack operations. */
const STACK: OpTable = {
  // MARK
  0x28: (m) => {
    if (m.marks.length >= LIMITS.marks) throw new ScanError('too many nested MARKs');
    m.marks.push(m.stack.length);
  },
  // POP: pops the top item, or the whole MARK frame when the frame is empty
  0x30: (m, at) => {
    const floor = m.marks.length ? m.marks[m.marks.length - 1] : 0;
    if (m.stack.length > floor) m.stack.pop();
    else m.popMark(at);
  },
  // POP_MARK
  0x31: (m, at) => void m.popMark(at),
  // DUP
  0x32: (m, at) => m.push(m.top(at)),
};

const pushOther: OpHandler = (m) => m.push(OTHER);

/** Numbers and constants. */
const LITERALS: OpTable = {
  0x4e: pushOther, // NONE
  0x88: pushOther, // NEWTRUE
  0x89: pushOther, // NEWFALSE
  // INT, LONG
  0x49: textInt,
  0x4c: textInt,
  // BININT
  0x4a: async (m) => m.push({ t: 'int', v: BigInt((await m.cur.take(4)).readInt32LE(0)) }),
  // BININT1
  0x4b: async (m) => m.push({ t: 'int', v: BigInt(await m.cur.u8()) }),
  // BININT2
  0x4d: async (m) => m.push({ t: 'int', v: BigInt((await m.cur.take(2)).readUInt16LE(0)) }),
  // LONG1
  0x8a: async (m, at) => {
    const n = await m.length(1, at);
    const b = await m.cur.take(n);
    m.push(n > 0 && n <= 16 && !(b[n - 1] & 0x80) ? { t: 'int', v: le(b) } : OTHER);
  },
  // LONG4
  0x8b: async (m, at) => {
    const n = await m.length(4, at);
    await m.cur.take(n);
    m.push(OTHER);
  },
  // FLOAT
  0x46: async (m) => {
    await m.cur.line();
    m.push(OTHER);
  },
  // BINFLOAT
  0x47: async (m) => {
    await m.cur.take(8);
    m.push(OTHER);
  },
};

/** INT and LONG: a decimal line ("00"/"01" are protocol 0's False/True). */
async function textInt(m: PickleVm, at: number): Promise<void> {
  const s = (await m.cur.line()).toString('latin1').replace(/L$/, '');
  if (s === '00' || s === '01') m.push(OTHER);
  else if (/^[-+]?\d+$/.test(s)) m.push({ t: 'int', v: BigInt(s) });
  else throw new ScanError(`bad integer literal at byte ${at}`);
}

/** Strings (kept: they name imports for STACK_GLOBAL), bytes and buffers (skipped). */
const STRINGS: OpTable = {
  // STRING
  0x53: async (m, at) => {
    const raw = (await m.cur.line()).toString('latin1');
    m.push({ t: 'str', v: unquote(raw, at) });
  },
  // BINSTRING
  0x54: async (m, at) => m.push({ t: 'str', v: (await m.cur.take(await m.length(4, at))).toString('latin1') }),
  // SHORT_BINSTRING
  0x55: async (m, at) => m.push({ t: 'str', v: (await m.cur.take(await m.length(1, at))).toString('latin1') }),
  // UNICODE
  0x56: async (m) => m.push({ t: 'str', v: rawUnicode(await m.cur.line()) }),
  // BINUNICODE
  0x58: async (m, at) => m.push({ t: 'str', v: decodeUtf8(await m.cur.take(await m.length(4, at)), at) }),
  // SHORT_BINUNICODE
  0x8c: async (m, at) => m.push({ t: 'str', v: decodeUtf8(await m.cur.take(await m.length(1, at)), at) }),
  // BINUNICODE8
  0x8d: async (m, at) => m.push({ t: 'str', v: decodeUtf8(await m.cur.take(await m.length(8, at)), at) }),
  // BINBYTES
  0x42: (m, at) => skipBytes(m, at, 4),
  // SHORT_BINBYTES
  0x43: (m, at) => skipBytes(m, at, 1),
  // BINBYTES8, BYTEARRAY8
  0x8e: (m, at) => skipBytes(m, at, 8),
  0x96: (m, at) => skipBytes(m, at, 8),
  // NEXT_BUFFER, READONLY_BUFFER
  0x97: outOfBand,
  0x98: outOfBand,
};

async function skipBytes(m: PickleVm, at: number, n: 1 | 4 | 8): Promise<void> {
  await m.cur.take(await m.length(n, at));
  m.push(OTHER);
}

function outOfBand(m: PickleVm, at: number, op: number): void {
  m.unknowns.push(`out-of-band buffer (opcode 0x${op.toString(16)}) at byte ${at}`);
  if (op === 0x97) m.push(OTHER);
}

/** Building lists, dicts, sets and tuples (only tuples are kept: REDUCE arguments). */
const CONTAINERS: OpTable = {
  0x5d: pushOther, // EMPTY_LIST
  0x7d: pushOther, // EMPTY_DICT
  0x8f: pushOther, // EMPTY_SET
  // EMPTY_TUPLE
  0x29: (m) => m.push({ t: 'tuple', items: [] }),
  // LIST, DICT, FROZENSET
  0x6c: markToOther,
  0x64: markToOther,
  0x91: markToOther,
  // TUPLE
  0x74: (m, at) => m.push({ t: 'tuple', items: m.popMark(at) }),
  // TUPLE1, TUPLE2, TUPLE3
  0x85: smallTuple,
  0x86: smallTuple,
  0x87: smallTuple,
  // APPEND
  0x61: (m, at) => {
    m.pop(at);
    m.top(at);
  },
  // APPENDS, ADDITEMS, SETITEMS
  0x65: markIntoTop,
  0x90: markIntoTop,
  0x75: markIntoTop,
  // SETITEM
  0x73: (m, at) => {
    m.pop(at);
    m.pop(at);
    m.top(at);
  },
};

function markToOther(m: PickleVm, at: number): void {
  m.popMark(at);
  m.push(OTHER);
}

function smallTuple(m: PickleVm, at: number, op: number): void {
  const n = op - 0x84;
  const items: V[] = [];
  for (let i = 0; i < n; i++) items.unshift(m.pop(at));
  m.push({ t: 'tuple', items });
}

function markIntoTop(m: PickleVm, at: number): void {
  m.popMark(at);
  m.top(at);
}

/** PUT/GET and their binary forms; a GET of a key never written fails as in CPython. */
const MEMO: OpTable = {
  // PUT
  0x70: async (m, at) => {
    const s = (await m.cur.line()).toString('latin1');
    if (!/^\d+$/.test(s)) throw new ScanError(`bad PUT index at byte ${at}`);
    m.memo.set(Number(s), m.top(at));
  },
  // BINPUT
  0x71: async (m, at) => void m.memo.set(await m.cur.u8(), m.top(at)),
  // LONG_BINPUT
  0x72: async (m, at) => void m.memo.set((await m.cur.take(4)).readUInt32LE(0), m.top(at)),
  // MEMOIZE
  0x94: (m, at) => void m.memo.set(m.memo.size, m.top(at)),
  // GET
  0x67: async (m, at) => {
    const s = (await m.cur.line()).toString('latin1');
    if (!/^\d+$/.test(s)) throw new ScanError(`bad GET index at byte ${at}`);
    memoGet(m, at, Number(s));
  },
  // BINGET
  0x68: async (m, at) => memoGet(m, at, await m.cur.u8()),
  // LONG_BINGET
  0x6a: async (m, at) => memoGet(m, at, (await m.cur.take(4)).readUInt32LE(0)),
};

function memoGet(m: PickleVm, at: number, idx: number): void {
  const v = m.memo.get(idx);
  if (!v) throw new ScanError(`memo key ${idx} read before it was written, at byte ${at}`);
  m.push(v);
}

/** Every way a pickle imports something: what the profiles judge. */
const IMPORTS: OpTable = {
  // GLOBAL
  0x63: async (m) => {
    const module = (await m.cur.line()).toString('utf8');
    const name = (await m.cur.line()).toString('utf8');
    m.push({ t: 'global', name: m.addGlobal(module, name) });
  },
  // INST: imports and calls cls(*items since MARK)
  0x69: async (m, at) => {
    const module = (await m.cur.line()).toString('utf8');
    const name = (await m.cur.line()).toString('utf8');
    m.addGlobal(module, name);
    m.popMark(at);
    m.push(OTHER);
  },
  // STACK_GLOBAL
  0x93: (m, at) => {
    const name = m.pop(at);
    const module = m.pop(at);
    if (module.t === 'str' && name.t === 'str') m.push({ t: 'global', name: m.addGlobal(module.v, name.v) });
    else {
      m.unknowns.push(`STACK_GLOBAL with non-literal operands at byte ${at}`);
      m.globals.push('unknown.unknown');
      m.push(OTHER);
    }
  },
  // EXT1, EXT2, EXT4
  0x82: extension,
  0x83: extension,
  0x84: extension,
};

async function extension(m: PickleVm, at: number, op: number): Promise<void> {
  const code = op === 0x82 ? await m.cur.u8() : op === 0x83 ? (await m.cur.take(2)).readUInt16LE(0) : (await m.cur.take(4)).readInt32LE(0);
  m.unknowns.push(`EXT${op === 0x82 ? 1 : op === 0x83 ? 2 : 4} extension code ${code} at byte ${at} (an import Airlock cannot resolve)`);
  m.globals.push('unknown.unknown');
  m.push(OTHER);
}

/** Calls and construction: each must call an imported global, or it is reported. */
const CALLS: OpTable = {
  // REDUCE: callable(*args)
  0x52: construct,
  // NEWOBJ: cls.__new__(cls, *args)
  0x81: construct,
  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
  0x92: construct,
  // OBJ: cls(*args) from the MARK frame
  0x6f: (m, at) => {
    const items = m.popMark(at);
    if (items.length === 0) throw new ScanError(`OBJ without a class at byte ${at}`);
    if (items[0].t !== 'global') m.unknowns.push(`OBJ on a value that is not an imported global, at byte ${at}`);
    m.push(OTHER);
  },
  // BUILD
  0x62: (m, at) => {
    m.pop(at);
    m.top(at);
  },
  // PERSID
  0x50: async (m) => {
    const pid = (await m.cur.line()).toString('latin1');
    m.persistentIds.push({ t: 'str', v: pid });
    m.push(OTHER);
  },
  // BINPERSID
  0x51: (m, at) => {
    m.persistentIds.push(m.pop(at));
    m.push(OTHER);
  },
};

function construct(m: PickleVm, at: number, op: number): void {
  const name = op === 0x52 ? 'REDUCE' : op === 0x81 ? 'NEWOBJ' : 'NEWOBJ_EX';
  for (let i = op === 0x92 ? 2 : 1; i > 0; i--) m.pop(at);
  if (m.pop(at).t !== 'global') m.unknowns.push(`${name} on a value that is not an imported global, at byte ${at}`);
  m.push(OTHER);
}

/** The handler of every opcode but STOP, by opcode byte; undefined for an opcode that is not one. */
export const OPCODES: readonly (OpHandler | undefined)[] = (() => {
  const table: (OpHandler | undefined)[] = new Array(256).fill(undefined);
  for (const group of [FRAMING, STACK, LITERALS, STRINGS, CONTAINERS, MEMO, IMPORTS, CALLS]) {
    for (const [op, handler] of Object.entries(group)) {
      if (table[Number(op)]) throw new Error(`pickle opcode ${op} has two handlers`);
      table[Number(op)] = handler;
    }
  }
  return table;
})();
