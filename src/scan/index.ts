import { Readable } from 'node:stream';
import { ARCHIVE_LIMITS, compressionOf, isOpenable, readsAsTar, walkSource, walkStream } from './archive.js';
import { checkGguf, checkSafetensors, readNpyHeader, suspiciousTemplate } from './formats.js';
import { looksLikePickle } from './pickle.js';
import { Report, scanPickles, type Finding, type Format, type ScanReport } from './report.js';
import { ScanError, bufferSource, type ByteSource } from './source.js';
import { bufferBody, type MemberBody } from './tar.js';
import { ZIP_MEMBER_MAX, followTorchZip, judgeRawPickles, scanNpy, scanZip } from './torch.js';

export { SCANNER_VERSION, type Finding, type Format, type ScanReport } from './report.js';

const ZIP_MAGIC = [0x04034b50, 0x06054b50];
const OTHER_ARCHIVES: [number[], string][] = [
  [[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], '7z'],
  [[0x52, 0x61, 0x72, 0x21], 'rar'],
];

function startsWith(b: Buffer, m: number[]): boolean {
  return b.length >= m.length && m.every((x, i) => b[i] === x);
}

/** Which archive or compressed format the first bytes are, if any. */
function archiveKind(head: Buffer): string | undefined {
  for (const [m, name] of OTHER_ARCHIVES) if (startsWith(head, m)) return name;
  return compressionOf(head) ?? (readsAsTar(head) ? 'tar' : undefined);
}

/** What the first bytes say the file is (content, not name). */
export function sniff(head: Buffer): Format {
  if (head.length >= 4 && ZIP_MAGIC.includes(head.readUInt32LE(0))) return 'zip';
  if (archiveKind(head)) return 'archive';
  if (head.subarray(0, 6).toString('latin1') === '\x93NUMPY') return 'numpy';
  if (head.subarray(0, 4).toString('latin1') === 'GGUF') return 'gguf';
  if (head.length >= 9 && head[8] === 0x7b) {
    const n = head.readBigUInt64LE(0);
    if (n > 0n && n < 1n << 40n) return 'safetensors';
  }
  if (looksLikePickle(head)) return 'pickle';
  return 'opaque';
}

/** JSON content: auto_map (remote code) and chat templates. Returns false when it is not JSON. */
function scanJson(bytes: Buffer, path: string, r: Report): boolean {
  // A control byte other than tab, LF and CR is never JSON (raw, or in a string): binary that
  // opens with '{' or '[' (an image in a dataset shard, say) is answered without decoding it.
  for (const b of bytes) if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false;
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return false;
  }
  if (!doc || typeof doc !== 'object') return true;
  const d = doc as Record<string, unknown>;
  if (d.auto_map && typeof d.auto_map === 'object') {
    const refs = Object.values(d.auto_map as Record<string, unknown>)
      .flat()
      .filter((v) => typeof v === 'string');
    r.findings.push({
      severity: 'code',
      code: 'auto_map',
      message: `${path} has auto_map (${refs.slice(0, 3).join(', ')}): trust_remote_code would run the repository's code`,
    });
  }
  if (typeof d.chat_template === 'string') {
    const bad = suspiciousTemplate(d.chat_template);
    r.findings.push({
      severity: bad ? 'refuse' : 'info',
      code: bad ? 'chat_template_suspicious' : 'chat_template',
      message: `${path} carries a chat template (${d.chat_template.length} characters)${bad ? ' with Python attribute walks (template injection)' : ''}`,
    });
  }
  return true;
}

const EXPECTED_BY_NAME: [RegExp, Format[]][] = [
  [/\.safetensors$/i, ['safetensors']],
  [/\.gguf$/i, ['gguf']],
  [/\.npy$/i, ['numpy']],
];

function formatMismatch(path: string, report: { format: string }): Finding[] {
  const out: Finding[] = [];
  for (const [re, formats] of EXPECTED_BY_NAME) {
    if (re.test(path) && !formats.includes(report.format as Format)) {
      out.push({ severity: 'refuse', code: 'format_mismatch', message: `${path} is named like ${formats[0]} but its content is ${report.format}` });
    }
  }
  return out;
}

/** Findings that come from a file's name rather than its bytes (added at decision time). */
export function nameFindings(path: string, report?: { format: string }): Finding[] {
  const out: Finding[] = [];
  if (/\.py$/i.test(path)) out.push({ severity: 'code', code: 'python_source', message: `${path} is Python source (code trust_remote_code would run)` });
  if (report) out.push(...formatMismatch(path, report));
  return out;
}

export interface ScanOptions {
  /**
   * Called once the bytes that could run code have been judged and what follows may stream to
   * clients (held back only by the fill's tail): at once for archives and data formats, after
   * the first pickle of a torch zip, after the five pickles of a legacy torch file, never before
   * the end for plain pickles and other zips. It gets the report so far; throwing refuses.
   */
  cleared?: (partial: ScanReport) => void | Promise<void>;
  /** Archive nesting depth of this file (0 for a file served on its own). */
  depth?: number;
}

/**
 * Judge one file by its content (the report is stored per SHA-256, so nothing in it depends on
 * the file's name; `path` only labels messages). Never executes or unpickles anything; reads
 * through `src` in order where it can (so it can follow a file as it downloads) and never holds
 * a large file in memory. Parse problems become 'refuse' findings.
 */
export async function scan(src: ByteSource, path = 'the file', opts: ScanOptions = {}): Promise<ScanReport> {
  const r = new Report();
  let clearedOnce = false;
  const clear = async (format: Format, report = r) => {
    if (clearedOnce || !opts.cleared) return;
    clearedOnce = true;
    await opts.cleared(report.done(format));
  };
  const head = await src.read(0, Math.min(src.size, 4096));
  let format: Format = sniff(head);
  const depth = opts.depth ?? 0;
  const judgeMember = (name: string, size: number | undefined, body: MemberBody) => scanMember(r, name, size, body, depth + 1);
  try {
    switch (format) {
      case 'safetensors':
        await checkSafetensors(src);
        break;
      case 'gguf': {
        const g = await checkGguf(src);
        if (g.chatTemplate !== undefined) {
          r.findings.push({
            severity: g.suspiciousTemplate ? 'refuse' : 'info',
            code: g.suspiciousTemplate ? 'chat_template_suspicious' : 'chat_template',
            message: `tokenizer.chat_template (${g.chatTemplate.length} characters)${g.suspiciousTemplate ? ' with Python attribute walks (template injection)' : ''}: ${JSON.stringify(g.chatTemplate.slice(0, 200))}`,
          });
        }
        break;
      }
      case 'numpy': {
        const header = await readNpyHeader(src);
        if (!header.objectDtype) await clear(format);
        await scanNpy(src, r, path, header);
        break;
      }
      case 'zip': {
        // Following a download: the judge sees the first pickle's imports at once, and storage
        // CRCs are checked as they pass; the whole archive is checked again at the end.
        const preverified = opts.cleared ? await followTorchZip(src, (first) => clear('torch-zip', first)) : null;
        format = await scanZip(src, r, (name, bytes) => judgeMember(name, bytes.length, bufferBody(bytes)), sniff, preverified ?? undefined);
        break;
      }
      case 'pickle': {
        const res = await scanPickles(src, r, 0, src.size, 5, path);
        format = judgeRawPickles(r, res, src.size, path);
        break;
      }
      case 'archive': {
        if (!isOpenable(head)) {
          r.refuse('archive', `${path}: ${archiveKind(head)} archives are not inspected (tar, gzip, bzip2, xz, zstd and zip are)`);
          break;
        }
        if (depth >= ARCHIVE_LIMITS.depth) {
          r.refuse('archive_depth', `${path}: archives nested more than ${ARCHIVE_LIMITS.depth} deep`);
          break;
        }
        await clear(format);
        await walkSource(src, path, judgeMember);
        break;
      }
      case 'opaque':
        format = await scanOpaque(src, head, path, r, () => clear('opaque'));
        break;
      default:
        break;
    }
  } catch (e) {
    if (!(e instanceof ScanError)) throw e;
    r.refuse('invalid', e.message);
  }
  return r.done(format);
}

const ZIP_END = Buffer.from([0x50, 0x4b, 0x05, 0x06]);

/** The first byte that String.prototype.trimStart would keep of the bytes read as latin1 (-1 if none): no string per member. */
function firstNonSpace(b: Buffer): number {
  for (const x of b) if (!(x === 0x20 || (x >= 0x09 && x <= 0x0d) || x === 0xa0)) return x;
  return -1;
}

/**
 * A trial decode of the first MiB as a pickle: whether it imports a Python name (or decodes
 * through STOP with imports), or decodes to the window's end unbroken, cut there by the window
 * (pickle.load would read on: a run of opcodes longer than the window hides nothing). `size` is
 * the whole file's when `src` holds only its head.
 */
async function headerlessPickle(src: ByteSource, path: string, size = src.size): Promise<boolean> {
  const window = Math.min(src.size, 1 << 20);
  const trial = new Report();
  const res = await scanPickles(src, trial, 0, window, 1, path);
  const named = [...trial.globals].some((g) => g !== 'unknown.unknown' && /^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$/.test(g));
  if (named || (!trial.refused('pickle_invalid') && trial.globals.size > 0)) return true;
  return res.needed !== undefined && res.needed > window && res.needed <= size;
}

/** Bytes that match no format: JSON, a zip behind a stub, a pickle without a header, or data. */
async function scanOpaque(src: ByteSource, head: Buffer, path: string, r: Report, clear: () => Promise<void>): Promise<Format> {
  const first = firstNonSpace(head);
  // '{' or '[': JSON.
  if (src.size <= 16 << 20 && (first === 0x7b || first === 0x5b)) {
    const bytes = await src.read(0, src.size);
    if (scanJson(bytes, path, r)) return 'json';
  }
  // pickle.load needs no PROTO and no particular first opcode: try to decode, and call it a
  // pickle if it imports anything that looks like a Python name (or decodes through STOP). The
  // placeholder for an unresolvable import is no name: random bytes (images) produce it, and
  // CPython fails on it too (STACK_GLOBAL needs strings, the EXT registry is empty).
  if (await headerlessPickle(src, path)) {
    await scanPickles(src, r, 0, src.size, 5, path);
    return 'pickle';
  }
  await clear();
  // A zip whose end record is at the end but whose first bytes are something else (a stub).
  const tail = await src.read(Math.max(0, src.size - 65557), Math.min(src.size, 65557));
  if (tail.includes(ZIP_END)) {
    r.refuse('zip_prefixed', `${path}: a zip archive behind ${head.subarray(0, 4).toString('hex')}... (bytes before the first entry)`);
    return 'zip';
  }
  return 'opaque';
}

/** How much of a member is read whole for judging; larger members are sniffed from their head. */
const MEMBER_MAX = ZIP_MEMBER_MAX;
/** How much of a larger member is sniffed. */
const MEMBER_HEAD = 64 << 10;

/**
 * Judge one archive member by the same rules as a file of its own: archives inside are walked as
 * they stream; anything else up to MEMBER_MAX is read and scanned; larger members are sniffed, and
 * refused when they could carry code (a pickle, a zip, an object array) that cannot be read whole.
 * A larger data member is not read past its head (in a plain tar its bytes are skipped, not read).
 */
async function scanMember(r: Report, name: string, size: number | undefined, body: MemberBody, depth: number): Promise<void> {
  // Members of known size up to MEMBER_MAX are taken whole (in place from the walk's read); of
  // unknown size (a compressed file that is not a tar), up to one byte more than MEMBER_MAX.
  const first = await body.take(size === undefined ? MEMBER_MAX + 1 : size <= MEMBER_MAX ? size : MEMBER_HEAD);
  if (first.length <= MEMBER_MAX && (size === undefined || size <= MEMBER_MAX)) {
    const sub = await scan(bufferSource(first), name, { depth });
    sub.findings.push(...formatMismatch(name, sub));
    r.merge(sub, name);
    return;
  }
  // Too large to hold: sniff its head.
  const head = first.subarray(0, MEMBER_HEAD);
  // A pickle needs no header: what sniffs as data is tried as one (pickle.load stops at STOP, whatever follows).
  let kind = sniff(head);
  if (kind === 'opaque' && (await headerlessPickle(bufferSource(head), name, size ?? Infinity))) kind = 'pickle';
  if (isOpenable(head)) {
    // An archive inside is walked as it streams: what was taken, then the rest of the member.
    const rest = body.stream();
    const whole = Readable.from(
      (async function* () {
        yield first;
        yield* rest;
      })(),
      { objectMode: false },
    );
    await walkNested(r, name, size, whole, depth);
    return;
  }
  const objectArray = kind === 'numpy' && (await readNpyHeader(bufferSource(head)).catch(() => ({ objectDtype: true }))).objectDtype;
  if (kind === 'pickle' || kind === 'zip' || kind === 'archive' || objectArray) {
    r.refuse(
      'archive_member_unscanned',
      `member ${name}: a member of over ${MEMBER_MAX} bytes that looks like ${kind} is too large to inspect inside an archive`,
    );
  }
  // Data: the rest passes unread (the walk skips it).
}

async function walkNested(r: Report, name: string, size: number | undefined, body: Readable, depth: number): Promise<void> {
  if (depth >= ARCHIVE_LIMITS.depth) {
    r.refuse('archive_depth', `member ${name}: archives nested more than ${ARCHIVE_LIMITS.depth} deep`);
    return;
  }
  const sub = new Report();
  try {
    await walkStream(body, size ?? 0, name, (n, s, b) => scanMember(sub, n, s, b, depth + 1));
  } catch (e) {
    if (!(e instanceof ScanError)) throw e;
    sub.refuse('invalid', e.message);
  }
  r.merge(sub.done('archive'), name);
}
