import { Cursor, ScanError } from './source.js';

/**
 * An abstract interpreter for the pickle VM: it decodes every opcode, simulates the stack, the
 * MARK frames and the memo, and recovers the module and name of every import (GLOBAL, INST,
 * STACK_GLOBAL), without ever running anything. Anything it cannot follow (EXT codes, non-literal
 * STACK_GLOBAL operands, out-of-band buffers, unknown opcodes, truncation, underflow, a missing
 * memo key) is reported; the profile decides. Opcode table: CPython's pickletools.
 */

type V = { t: 'str'; v: string } | { t: 'int'; v: bigint } | { t: 'global'; name: string } | { t: 'tuple'; items: V[] } | { t: 'other' };

const OTHER: V = { t: 'other' };

export interface PickleResult {
  /** Byte offset just after STOP. */
  end: number;
  protocol: number;
  /** Every import, as "module.name" after protocol<3 renames. */
  globals: string[];
  /** Persistent ids passed to BINPERSID/PERSID. */
  persistentIds: V[];
  /** Things the interpreter could not follow; each one is a refusal under any profile. */
  unknowns: string[];
  /** The first value the pickle produced (for the legacy torch magic number). */
  result: V | undefined;
  opcodes: number;
  /** Opcodes used that torch's weights-only unpickler does not implement (by name, first use). */
  foreignOps: string[];
}

/**
 * The opcodes torch.load(weights_only=True) implements (torch/_weights_only_unpickler.py, read
 * from torch 2.13): anything else makes it raise "Unsupported operand", so a file using one
 * cannot be loaded under the weights-only profiles whatever its imports.
 */
const WEIGHTS_ONLY_OPS = new Set([
  0x63,
  0x81,
  0x52,
  0x62, // GLOBAL NEWOBJ REDUCE BUILD
  0x61,
  0x65,
  0x73,
  0x75, // APPEND APPENDS SETITEM SETITEMS
  0x28,
  0x74,
  0x85,
  0x86,
  0x87, // MARK TUPLE TUPLE1 TUPLE2 TUPLE3
  0x4e,
  0x88,
  0x89,
  0x29,
  0x5d,
  0x7d,
  0x8f, // NONE NEWTRUE NEWFALSE EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET
  0x4a,
  0x4b,
  0x4d,
  0x47,
  0x58,
  0x55,
  0x8a, // BININT BININT1 BININT2 BINFLOAT BINUNICODE SHORT_BINSTRING LONG1
  0x51,
  0x68,
  0x6a,
  0x71,
  0x72,
  0x80,
  0x2e, // BINPERSID BINGET LONG_BINGET BINPUT LONG_BINPUT PROTO STOP
]);
const OP_NAMES: Record<number, string> = {
  0x95: 'FRAME',
  0x94: 'MEMOIZE',
  0x93: 'STACK_GLOBAL',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8b: 'LONG4',
  0x92: 'NEWOBJ_EX',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x96: 'BYTEARRAY8',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x67: 'GET',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x56: 'UNICODE',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x49: 'INT',
  0x4c: 'LONG',
  0x46: 'FLOAT',
  0x6c: 'LIST',
  0x64: 'DICT',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x50: 'PERSID',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
};

export type PickleValue = V;

/** CPython's _compat_pickle module renames, applied for protocol < 3 (what find_class does). */
const COMPAT: Record<string, string> = {
  __builtin__: 'builtins',
  copy_reg: 'copyreg',
  cPickle: 'pickle',
  commands: 'subprocess',
  httplib: 'http.client',
  urllib2: 'urllib.request',
  exceptions: 'builtins',
  UserDict: 'collections',
  UserList: 'collections',
  UserString: 'collections',
  Queue: 'queue',
  StringIO: 'io',
  cStringIO: 'io',
  thread: '_thread',
  dummy_thread: '_dummy_thread',
  repr: 'reprlib',
  SocketServer: 'socketserver',
  ConfigParser: 'configparser',
  Tkinter: 'tkinter',
  urlparse: 'urllib.parse',
  robotparser: 'urllib.robotparser',
  HTMLParser: 'html.parser',
  htmlentitydefs: 'html.entities',
  BaseHTTPServer: 'http.server',
  SimpleHTTPServer: 'http.server',
  CGIHTTPServer: 'http.server',
  cookielib: 'http.cookiejar',
  Cookie: 'http.cookies',
  xmlrpclib: 'xmlrpc.client',
  anydbm: 'dbm',
  whichdb: 'dbm',
  dbhash: 'dbm.bsd',
  dumbdbm: 'dbm.dumb',
  gdbm: 'dbm.gnu',
  __main__: '__main__',
};

const LIMITS = { opcodes: 50_000_000, stack: 1_000_000, memo: 1_000_000, marks: 10_000, string: 1 << 30 };

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

/**
 * Decode one pickle starting at cur.pos (through STOP). Imports are appended to `globals` as
 * they are decoded, so a caller still has them when a later opcode fails. Throws ScanError on anything CPython
 * would fail on (after having run the opcodes before it, which is why a parse error refuses).
 * Long on purpose: one switch over the pickle opcodes, each case a few lines, kept together so
 * the whole machine can be checked against CPython's pickle.py in one reading.
 */
export async function decodePickle(cur: Cursor, globals: string[] = []): Promise<PickleResult> {
  const stack: V[] = [];
  const marks: number[] = [];
  const memo = new Map<number, V>();
  const unknowns: string[] = [];
  const persistentIds: V[] = [];
  let proto = 0;
  let ops = 0;
  const foreign = new Set<string>();

  const pop = (at: number): V => {
    const floor = marks.length ? marks[marks.length - 1] : 0;
    if (stack.length <= floor) throw new ScanError(`stack underflow at byte ${at}`);
    return stack.pop()!;
  };
  const top = (at: number): V => {
    const floor = marks.length ? marks[marks.length - 1] : 0;
    if (stack.length <= floor) throw new ScanError(`empty stack at byte ${at}`);
    return stack[stack.length - 1];
  };
  const popMark = (at: number): V[] => {
    const m = marks.pop();
    if (m === undefined) throw new ScanError(`no MARK to pop at byte ${at}`);
    return stack.splice(m);
  };
  const push = (v: V) => {
    if (stack.length >= LIMITS.stack) throw new ScanError('pickle stack over the limit');
    stack.push(v);
  };
  const addGlobal = (module: string, name: string) => {
    const mod = proto < 3 ? (COMPAT[module] ?? module) : module;
    const full = `${mod}.${name}`;
    globals.push(full);
    return full;
  };
  const length = async (n: 1 | 4 | 8, at: number): Promise<number> => {
    const b = await cur.take(n);
    const v = n === 1 ? b[0] : n === 4 ? b.readInt32LE(0) : Number(b.readBigUInt64LE(0));
    if (v < 0 || v > LIMITS.string || v > cur.remaining) throw new ScanError(`length ${v} at byte ${at} is out of bounds`);
    return v;
  };

  for (;;) {
    if (++ops > LIMITS.opcodes) throw new ScanError('pickle has too many opcodes');
    const at = cur.pos;
    const op = await cur.u8();
    if (!WEIGHTS_ONLY_OPS.has(op)) foreign.add(OP_NAMES[op] ?? `0x${op.toString(16)}`);
    switch (op) {
      case 0x80: {
        // PROTO
        proto = await cur.u8();
        if (proto > 5) throw new ScanError(`unsupported pickle protocol ${proto} at byte ${at}`);
        break;
      }
      case 0x95: {
        // FRAME: the content is ordinary opcodes
        const n = Number((await cur.take(8)).readBigUInt64LE(0));
        if (n > cur.remaining) throw new ScanError(`FRAME of ${n} bytes at byte ${at} runs past the end`);
        break;
      }
      case 0x2e: {
        // STOP
        return { end: cur.pos, protocol: proto, globals, persistentIds, unknowns, result: stack[stack.length - 1], opcodes: ops, foreignOps: [...foreign] };
      }
      case 0x28: // MARK
        if (marks.length >= LIMITS.marks) throw new ScanError('too many nested MARKs');
        marks.push(stack.length);
        break;
      case 0x30: {
        // POP: pops the top item, or the whole MARK frame when the frame is empty
        const floor = marks.length ? marks[marks.length - 1] : 0;
        if (stack.length > floor) stack.pop();
        else popMark(at);
        break;
      }
      case 0x31: // POP_MARK
        popMark(at);
        break;
      case 0x32: // DUP
        push(top(at));
        break;
      // ---- literals
      case 0x4e: // NONE
      case 0x88: // NEWTRUE
      case 0x89: // NEWFALSE
        push(OTHER);
        break;
      case 0x49: // INT
      case 0x4c: {
        // LONG
        const s = (await cur.line()).toString('latin1').replace(/L$/, '');
        if (s === '00' || s === '01') push(OTHER);
        else if (/^[-+]?\d+$/.test(s)) push({ t: 'int', v: BigInt(s) });
        else throw new ScanError(`bad integer literal at byte ${at}`);
        break;
      }
      case 0x4a: // BININT
        push({ t: 'int', v: BigInt((await cur.take(4)).readInt32LE(0)) });
        break;
      case 0x4b: // BININT1
        push({ t: 'int', v: BigInt(await cur.u8()) });
        break;
      case 0x4d: // BININT2
        push({ t: 'int', v: BigInt((await cur.take(2)).readUInt16LE(0)) });
        break;
      case 0x8a: {
        // LONG1
        const n = await length(1, at);
        const b = await cur.take(n);
        push(n > 0 && n <= 16 && !(b[n - 1] & 0x80) ? { t: 'int', v: le(b) } : OTHER);
        break;
      }
      case 0x8b: {
        // LONG4
        const n = await length(4, at);
        await cur.take(n);
        push(OTHER);
        break;
      }
      case 0x46: // FLOAT
        await cur.line();
        push(OTHER);
        break;
      case 0x47: // BINFLOAT
        await cur.take(8);
        push(OTHER);
        break;
      // ---- strings and bytes
      case 0x53: {
        // STRING
        const raw = (await cur.line()).toString('latin1');
        push({ t: 'str', v: unquote(raw, at) });
        break;
      }
      case 0x54: // BINSTRING
        push({ t: 'str', v: (await cur.take(await length(4, at))).toString('latin1') });
        break;
      case 0x55: // SHORT_BINSTRING
        push({ t: 'str', v: (await cur.take(await length(1, at))).toString('latin1') });
        break;
      case 0x56: // UNICODE
        push({ t: 'str', v: rawUnicode(await cur.line()) });
        break;
      case 0x58: // BINUNICODE
        push({ t: 'str', v: decodeUtf8(await cur.take(await length(4, at)), at) });
        break;
      case 0x8c: // SHORT_BINUNICODE
        push({ t: 'str', v: decodeUtf8(await cur.take(await length(1, at)), at) });
        break;
      case 0x8d: // BINUNICODE8
        push({ t: 'str', v: decodeUtf8(await cur.take(await length(8, at)), at) });
        break;
      case 0x42: // BINBYTES
        await cur.take(await length(4, at));
        push(OTHER);
        break;
      case 0x43: // SHORT_BINBYTES
        await cur.take(await length(1, at));
        push(OTHER);
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        await cur.take(await length(8, at));
        push(OTHER);
        break;
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        unknowns.push(`out-of-band buffer (opcode 0x${op.toString(16)}) at byte ${at}`);
        if (op === 0x97) push(OTHER);
        break;
      // ---- containers
      case 0x5d: // EMPTY_LIST
      case 0x7d: // EMPTY_DICT
      case 0x8f: // EMPTY_SET
        push(OTHER);
        break;
      case 0x29: // EMPTY_TUPLE
        push({ t: 'tuple', items: [] });
        break;
      case 0x6c: // LIST
      case 0x64: // DICT
      case 0x91: // FROZENSET
        popMark(at);
        push(OTHER);
        break;
      case 0x74: // TUPLE
        push({ t: 'tuple', items: popMark(at) });
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84;
        const items: V[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop(at));
        push({ t: 'tuple', items });
        break;
      }
      case 0x61: // APPEND
        pop(at);
        top(at);
        break;
      case 0x65: // APPENDS
      case 0x90: // ADDITEMS
      case 0x75: // SETITEMS
        popMark(at);
        top(at);
        break;
      case 0x73: // SETITEM
        pop(at);
        pop(at);
        top(at);
        break;
      // ---- memo
      case 0x70: {
        // PUT
        const s = (await cur.line()).toString('latin1');
        if (!/^\d+$/.test(s)) throw new ScanError(`bad PUT index at byte ${at}`);
        memo.set(Number(s), top(at));
        break;
      }
      case 0x71: // BINPUT
        memo.set(await cur.u8(), top(at));
        break;
      case 0x72: // LONG_BINPUT
        memo.set((await cur.take(4)).readUInt32LE(0), top(at));
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top(at));
        break;
      case 0x67: // GET
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        let idx: number;
        if (op === 0x67) {
          const s = (await cur.line()).toString('latin1');
          if (!/^\d+$/.test(s)) throw new ScanError(`bad GET index at byte ${at}`);
          idx = Number(s);
        } else idx = op === 0x68 ? await cur.u8() : (await cur.take(4)).readUInt32LE(0);
        const v = memo.get(idx);
        if (!v) throw new ScanError(`memo key ${idx} read before it was written, at byte ${at}`);
        push(v);
        break;
      }
      // ---- imports
      case 0x63: {
        // GLOBAL
        const module = (await cur.line()).toString('utf8');
        const name = (await cur.line()).toString('utf8');
        push({ t: 'global', name: addGlobal(module, name) });
        break;
      }
      case 0x69: {
        // INST: imports and calls cls(*items since MARK)
        const module = (await cur.line()).toString('utf8');
        const name = (await cur.line()).toString('utf8');
        addGlobal(module, name);
        popMark(at);
        push(OTHER);
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop(at);
        const module = pop(at);
        if (module.t === 'str' && name.t === 'str') push({ t: 'global', name: addGlobal(module.v, name.v) });
        else {
          unknowns.push(`STACK_GLOBAL with non-literal operands at byte ${at}`);
          globals.push('unknown.unknown');
          push(OTHER);
        }
        break;
      }
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: {
        // EXT4
        const code = op === 0x82 ? await cur.u8() : op === 0x83 ? (await cur.take(2)).readUInt16LE(0) : (await cur.take(4)).readInt32LE(0);
        unknowns.push(`EXT${op === 0x82 ? 1 : op === 0x83 ? 2 : 4} extension code ${code} at byte ${at} (an import Airlock cannot resolve)`);
        globals.push('unknown.unknown');
        push(OTHER);
        break;
      }
      // ---- calls and construction
      case 0x52: // REDUCE: callable(*args)
      case 0x81: // NEWOBJ: cls.__new__(cls, *args)
      case 0x92: {
        // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
        const name = op === 0x52 ? 'REDUCE' : op === 0x81 ? 'NEWOBJ' : 'NEWOBJ_EX';
        for (let i = op === 0x92 ? 2 : 1; i > 0; i--) pop(at);
        if (pop(at).t !== 'global') unknowns.push(`${name} on a value that is not an imported global, at byte ${at}`);
        push(OTHER);
        break;
      }
      case 0x6f: {
        // OBJ: cls(*args) from the MARK frame
        const items = popMark(at);
        if (items.length === 0) throw new ScanError(`OBJ without a class at byte ${at}`);
        if (items[0].t !== 'global') unknowns.push(`OBJ on a value that is not an imported global, at byte ${at}`);
        push(OTHER);
        break;
      }
      case 0x62: // BUILD
        pop(at);
        top(at);
        break;
      case 0x50: {
        // PERSID
        const pid = (await cur.line()).toString('latin1');
        persistentIds.push({ t: 'str', v: pid });
        push(OTHER);
        break;
      }
      case 0x51: // BINPERSID
        persistentIds.push(pop(at));
        push(OTHER);
        break;
      default:
        throw new ScanError(`unknown opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}`);
    }
    if (memo.size > LIMITS.memo) throw new ScanError('pickle memo over the limit');
  }
}

/** Looks like the start of a pickle: PROTO 2-5, or a protocol 0/1 opening opcode. */
export function looksLikePickle(head: Buffer): boolean {
  if (head.length >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) return true;
  if (head.length < 2) return false;
  // Protocol 0/1 pickles open with MARK, a GLOBAL, a container or a literal; require a plausible second byte too.
  const first = head[0];
  if (first === 0x63 /* c */) return /^c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n/.test(head.subarray(0, 256).toString('latin1'));
  if (first === 0x28 /* ( */) return [0x63, 0x53, 0x56, 0x58, 0x64, 0x6c, 0x74, 0x28, 0x49, 0x4b, 0x4a, 0x55, 0x5d, 0x7d, 0x29, 0x4e].includes(head[1]);
  if (first === 0x7d /* } */ || first === 0x5d /* ] */) return [0x71, 0x28, 0x2e, 0x94, 0x72].includes(head[1]);
  return false;
}
