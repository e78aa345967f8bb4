import { Cursor, ScanError } from './source.js';
import { OPCODES } from './pickle-ops.js';
import { LIMITS, PickleVm, type V } from './pickle-vm.js';

/**
 * An abstract interpreter for the pickle VM: it decodes every opcode, simulates the stack, the
 * MARK frames and the memo, and recovers the module and name of every import (GLOBAL, INST,
 * STACK_GLOBAL), without ever running anything. Anything it cannot follow (EXT codes, non-literal
 * STACK_GLOBAL operands, out-of-band buffers, unknown opcodes, truncation, underflow, a missing
 * memo key) is reported; the profile decides. Opcode table: CPython's pickletools.
 * This module is the entry point (decodePickle, looksLikePickle) and the dispatch loop; the
 * machine's state is pickle-vm.ts, what each opcode does pickle-ops.ts.
 */

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

/**
 * Decode one pickle starting at cur.pos (through STOP). Imports are appended to `globals` as
 * they are decoded, so a caller still has them when a later opcode fails. Throws ScanError on anything CPython
 * would fail on (after having run the opcodes before it, which is why a parse error refuses).
 * The loop reads an opcode, notes it if torch's weights-only unpickler lacks it, and runs its
 * handler (pickle-ops.ts) on the machine state (pickle-vm.ts).
 */
export async function decodePickle(cur: Cursor, globals: string[] = []): Promise<PickleResult> {
  const m = new PickleVm(cur, globals);
  let ops = 0;
  const foreign = new Set<string>();
  for (;;) {
    if (++ops > LIMITS.opcodes) throw new ScanError('pickle has too many opcodes');
    const at = cur.pos;
    // Most opcode bytes are already buffered: read them without a promise.
    let op = cur.u8Buffered();
    if (op < 0) op = await cur.u8();
    if (!WEIGHTS_ONLY_OPS.has(op)) foreign.add(OP_NAMES[op] ?? `0x${op.toString(16)}`);
    if (op === 0x2e) {
      // STOP
      return {
        end: cur.pos,
        protocol: m.proto,
        globals,
        persistentIds: m.persistentIds,
        unknowns: m.unknowns,
        result: m.stack[m.stack.length - 1],
        opcodes: ops,
        foreignOps: [...foreign],
      };
    }
    const handle = OPCODES[op];
    if (!handle) throw new ScanError(`unknown opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}`);
    // Only handlers that read an operand return a promise: the others cost no await.
    const reading = handle(m, at, op);
    if (reading) await reading;
    if (m.memo.size > LIMITS.memo) throw new ScanError('pickle memo over the limit');
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
