import { Cursor, ScanError, Truncated } from './source.js';

/**
 * The state of the abstract pickle machine (see pickle.ts): the stack, the MARK frames, the memo,
 * what has been recovered so far (imports, persistent ids, things it could not follow), and the
 * checked primitives every opcode handler uses to touch them (pop, top, popMark, push, a length
 * operand). Each primitive fails the way CPython's unpickler would (underflow, a missing MARK, an
 * out-of-bounds length), and the limits keep a hostile pickle from growing without bound.
 */

export type V = { t: 'str'; v: string } | { t: 'int'; v: bigint } | { t: 'global'; name: string } | { t: 'tuple'; items: V[] } | { t: 'other' };

export const OTHER: V = { t: 'other' };

export const LIMITS = { opcodes: 50_000_000, stack: 1_000_000, memo: 1_000_000, marks: 10_000, string: 1 << 30 };

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

export class PickleVm {
  readonly stack: V[] = [];
  readonly marks: number[] = [];
  readonly memo = new Map<number, V>();
  readonly unknowns: string[] = [];
  readonly persistentIds: V[] = [];
  proto = 0;

  constructor(
    readonly cur: Cursor,
    /** Imports are appended as they are decoded, so a caller still has them when a later opcode fails. */
    readonly globals: string[],
  ) {}

  pop(at: number): V {
    const floor = this.marks.length ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= floor) throw new ScanError(`stack underflow at byte ${at}`);
    return this.stack.pop()!;
  }

  top(at: number): V {
    const floor = this.marks.length ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length <= floor) throw new ScanError(`empty stack at byte ${at}`);
    return this.stack[this.stack.length - 1];
  }

  popMark(at: number): V[] {
    const m = this.marks.pop();
    if (m === undefined) throw new ScanError(`no MARK to pop at byte ${at}`);
    return this.stack.splice(m);
  }

  push(v: V): void {
    if (this.stack.length >= LIMITS.stack) throw new ScanError('pickle stack over the limit');
    this.stack.push(v);
  }

  addGlobal(module: string, name: string): string {
    const mod = this.proto < 3 ? (COMPAT[module] ?? module) : module;
    const full = `${mod}.${name}`;
    this.globals.push(full);
    return full;
  }

  /** A 1, 4 or 8-byte length operand, checked against the limit and the bytes left. */
  async length(n: 1 | 4 | 8, at: number): Promise<number> {
    const b = await this.cur.take(n);
    const v = n === 1 ? b[0] : n === 4 ? b.readInt32LE(0) : Number(b.readBigUInt64LE(0));
    if (v < 0 || v > LIMITS.string) throw new ScanError(`length ${v} at byte ${at} is out of bounds`);
    // Past the bytes at hand: truncated (a trial decode's window may have cut it).
    if (v > this.cur.remaining) throw new Truncated(`length ${v} at byte ${at} is out of bounds`, this.cur.pos + v);
    return v;
  }
}
