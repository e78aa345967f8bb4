import { decodePickle, type PickleValue } from './pickle.js';
import { Cursor, ScanError, Truncated, type ByteSource } from './source.js';

/** Bumped whenever a change could alter a verdict: stored reports from older versions are re-judged. */
export const SCANNER_VERSION = 'airlock-scan/4';

export type Format =
  'safetensors' | 'gguf' | 'pickle' | 'joblib' | 'torch-zip' | 'torch-legacy' | 'numpy' | 'npz' | 'keras' | 'zip' | 'archive' | 'json' | 'python' | 'opaque';

export interface Finding {
  /** 'refuse': a structural or parse problem (refused under every profile); 'code': code that trust_remote_code or Keras would run (policy remote_code); 'info': surfaced only. */
  severity: 'refuse' | 'code' | 'info';
  code: string;
  message: string;
}

export interface ScanReport {
  scanner: string;
  format: Format;
  /** The file carries pickles (judged against the pickle profile). */
  pickle: boolean;
  /** Every import the pickles make, "module.name", sorted and unique. */
  globals: string[];
  /** Opcodes the pickles use that torch's weights-only unpickler does not implement. */
  pickleOps: string[];
  /** For archives: the member each import was first seen in. */
  where?: Record<string, string>;
  findings: Finding[];
  /**
   * Only the part judged before a refusal stopped the scan (the first pickle, say). Findings only
   * grow as more is read, so it stands for that refusal; it never stands for an approval.
   */
  partial?: boolean;
}

export class Report {
  globals = new Set<string>();
  ops = new Set<string>();
  where = new Map<string, string>();
  findings: Finding[] = [];
  pickle = false;
  refuse(code: string, message: string) {
    this.findings.push({ severity: 'refuse', code, message });
  }
  refused(code?: string): boolean {
    return this.findings.some((f) => f.severity === 'refuse' && (!code || f.code === code));
  }
  /** Take in a member's report: its imports (remembering the member), opcodes and findings. */
  merge(sub: ScanReport, member: string) {
    if (sub.pickle) this.pickle = true;
    for (const g of sub.globals) {
      this.globals.add(g);
      if (!this.where.has(g)) this.where.set(g, sub.where?.[g] ? `${member}/${sub.where[g]}` : member);
    }
    sub.pickleOps.forEach((o) => this.ops.add(o));
    for (const f of sub.findings) this.findings.push({ ...f, message: `member ${member}: ${f.message}` });
  }
  done(format: Format): ScanReport {
    const out: ScanReport = {
      scanner: SCANNER_VERSION,
      format,
      pickle: this.pickle,
      globals: [...this.globals].sort(),
      pickleOps: [...this.ops].sort(),
      findings: this.findings,
    };
    if (this.where.size > 0) out.where = Object.fromEntries([...this.where].slice(0, 200));
    return out;
  }
}

export interface PickleScan {
  /** Where the last pickle stopped. */
  stop: number;
  first: PickleValue | undefined;
  count: number;
  persistentIds: PickleValue[];
  /** When the last pickle ran out of bytes: the offset it needed to read up to. */
  needed?: number;
}

/** Every pickle in [start, end) back to back, at most `max` of them; imports and problems go into r. */
export async function scanPickles(src: ByteSource, r: Report, start: number, end: number, max: number, where: string): Promise<PickleScan> {
  r.pickle = true;
  const cur = new Cursor(src, start, end);
  let first: PickleValue | undefined;
  let count = 0;
  const persistentIds: PickleValue[] = [];
  while (count < max && cur.remaining > 0) {
    if (count > 0) {
      await cur.need(1);
      const peek = await src.read(cur.pos, 2);
      if (!(peek[0] === 0x80 && peek[1] >= 2 && peek[1] <= 5)) break;
    }
    const seen: string[] = [];
    try {
      const p = await decodePickle(cur, seen);
      seen.forEach((g) => r.globals.add(g));
      p.foreignOps.forEach((o) => r.ops.add(o));
      p.unknowns.forEach((u) => r.refuse('pickle_unknown', `${where}: ${u}`));
      persistentIds.push(...p.persistentIds);
      if (count === 0) first = p.result;
      count++;
    } catch (e) {
      if (!(e instanceof ScanError)) throw e;
      // The opcodes before the error would already have run in Python: the imports seen count.
      seen.forEach((g) => r.globals.add(g));
      r.refuse('pickle_invalid', `${where}: ${e.message}`);
      return { stop: cur.pos, first, count, persistentIds, ...(e instanceof Truncated ? { needed: e.upTo } : {}) };
    }
  }
  return { stop: cur.pos, first, count, persistentIds };
}

/** Refuse bytes after a pickle's STOP (unless the pickle itself already failed to parse). */
export function noTrailing(r: Report, res: PickleScan, end: number, what: string): void {
  if (res.stop !== end && !r.refused('pickle_invalid')) r.refuse('pickle_trailing', what);
}
