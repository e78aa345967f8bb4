import { checkGguf, checkSafetensors, readNpyHeader, suspiciousTemplate } from './formats.js';
import { decodePickle, looksLikePickle, type PickleValue } from './pickle.js';
import { Cursor, ScanError, bufferSource, type ByteSource } from './source.js';
import { checkStoredCrc, readEntry, readZip, type ZipEntry } from './zip.js';

/** Bumped whenever a change could alter a verdict: stored reports from older versions are re-judged. */
export const SCANNER_VERSION = 'airlock-scan/2';

export type Format =
  | 'safetensors'
  | 'gguf'
  | 'pickle'
  | 'joblib'
  | 'torch-zip'
  | 'torch-legacy'
  | 'numpy'
  | 'npz'
  | 'keras'
  | 'zip'
  | 'archive'
  | 'json'
  | 'python'
  | 'opaque';

/** Formats whose bytes can run code when loaded: nothing is released before their verdict. */
export const PICKLE_FAMILY = new Set<Format>(['pickle', 'joblib', 'torch-zip', 'torch-legacy', 'numpy', 'npz', 'zip', 'keras']);

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
  findings: Finding[];
}

const ZIP_MAGIC = [0x04034b50, 0x06054b50];
const ARCHIVE_MAGICS: [number[], string][] = [
  [[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], '7z'],
  [[0x1f, 0x8b], 'gzip'],
  [[0x42, 0x5a, 0x68], 'bzip2'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd'],
  [[0x52, 0x61, 0x72, 0x21], 'rar'],
];
const LEGACY_TORCH_MAGIC = 0x1950a86a20f9469cfc6cn;

function startsWith(b: Buffer, m: number[]): boolean {
  return b.length >= m.length && m.every((x, i) => b[i] === x);
}

/** Which archive or compressed format the first bytes are, if any. */
function archiveKind(head: Buffer): string | undefined {
  for (const [m, name] of ARCHIVE_MAGICS) if (startsWith(head, m)) return name;
  if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  return undefined;
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

/** Whether a fill must hold every byte back until the verdict (code-bearing containers). */
export function holdsAll(head: Buffer): boolean {
  const f = sniff(head);
  return f === 'pickle' || f === 'zip' || f === 'numpy';
}

class Report {
  globals = new Set<string>();
  ops = new Set<string>();
  findings: Finding[] = [];
  pickle = false;
  refuse(code: string, message: string) {
    this.findings.push({ severity: 'refuse', code, message });
  }
  done(format: Format): ScanReport {
    return { scanner: SCANNER_VERSION, format, pickle: this.pickle, globals: [...this.globals].sort(), pickleOps: [...this.ops].sort(), findings: this.findings };
  }
}

/** Every pickle in [start, end) back to back; returns where the last one stopped. */
async function scanPickles(src: ByteSource, r: Report, start: number, end: number, max: number, where: string): Promise<{ stop: number; first: PickleValue | undefined; count: number; persistentIds: PickleValue[] }> {
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
      return { stop: cur.pos, first, count, persistentIds };
    }
  }
  return { stop: cur.pos, first, count, persistentIds };
}

const STORAGE_BYTES: Record<string, number> = {
  'torch.DoubleStorage': 8, 'torch.FloatStorage': 4, 'torch.HalfStorage': 2, 'torch.BFloat16Storage': 2, 'torch.LongStorage': 8,
  'torch.IntStorage': 4, 'torch.ShortStorage': 2, 'torch.CharStorage': 1, 'torch.ByteStorage': 1, 'torch.BoolStorage': 1,
  'torch.ComplexDoubleStorage': 16, 'torch.ComplexFloatStorage': 8, 'torch.QInt8Storage': 1, 'torch.QUInt8Storage': 1,
  'torch.QInt32Storage': 4, 'torch.QUInt4x2Storage': 1, 'torch.QUInt2x4Storage': 1, 'torch.UntypedStorage': 1,
};

/**
 * A torch persistent id is ('storage', <storage class>, key, location, numel) in the zip format;
 * the legacy format (_use_new_zipfile_serialization=False) adds a sixth element, view_metadata
 * (None, or (view_key, offset, size)), which torch unpacks as data.
 */
function storageRef(pid: PickleValue, legacy = false): { key: string; bytes: bigint | undefined } | string {
  const arity = legacy ? 6 : 5;
  if (pid.t !== 'tuple' || pid.items.length !== arity) return `a persistent id that is not a ${arity}-tuple`;
  const [tag, cls, key, loc, numel] = pid.items;
  if (tag.t !== 'str' || tag.v !== 'storage') return "a persistent id that does not start with 'storage'";
  if (cls.t !== 'global' || !(cls.name in STORAGE_BYTES)) return 'a persistent id whose storage type is not a torch storage class';
  if (key.t !== 'str' || loc.t !== 'str' || numel.t !== 'int') return 'a malformed storage persistent id';
  return { key: key.v, bytes: numel.v * BigInt(STORAGE_BYTES[cls.name]) };
}

async function scanZip(src: ByteSource, r: Report): Promise<Format> {
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
    if (res.stop !== bytes.length && !r.findings.some((f) => f.code === 'pickle_invalid')) r.refuse('pickle_trailing', `${archive}/data.pkl: bytes after the pickle's STOP`);
    for (const pid of res.persistentIds) {
      const ref = storageRef(pid);
      if (typeof ref === 'string') {
        r.refuse('pickle_persistent_id', `${archive}/data.pkl: ${ref}`);
        continue;
      }
      const e = byName.get(`${archive}/data/${ref.key}`);
      if (!e) r.refuse('torch_storage_missing', `${archive}/data.pkl refers to storage ${ref.key}, which the archive lacks`);
      else if (ref.bytes !== undefined && BigInt(e.size) < ref.bytes) r.refuse('torch_storage_size', `${archive}/data/${ref.key} is ${e.size} bytes, smaller than the ${ref.bytes} its tensor needs`);
    }
  } else if (entries.some((e) => e.name.endsWith('.npy'))) format = 'npz';
  else if (byName.has('config.json') && byName.has('metadata.json')) format = 'keras';
  for (const e of entries) {
    if (scanned.has(e)) continue;
    const isStorage = format === 'torch-zip' && e.name.startsWith(`${archive}/data/`);
    if (isStorage) {
      await checkStoredCrc(src, e);
      continue;
    }
    if (e.size > 64 << 20) {
      await checkStoredCrc(src, e);
      const head = (await src.read(e.dataOffset, Math.min(4096, e.compressedSize))) as Buffer;
      const kind = sniff(head);
      if (e.method === 0 && kind !== 'opaque') r.refuse('zip_member_unscanned', `${e.name}: a ${e.size}-byte member that looks like ${kind} is too large to inspect inside an archive`);
      continue;
    }
    const bytes = await readEntry(src, e, 64 << 20);
    const kind = sniff(bytes.subarray(0, 4096));
    if (kind === 'zip' || kind === 'archive') r.refuse('zip_nested', `${e.name}: an archive inside the archive`);
    else if (kind === 'pickle') {
      // Pickles under any name are scanned (a .txt member must not hide one).
      const res = await scanPickles(bufferSource(bytes), r, 0, bytes.length, 8, e.name);
      if (res.stop !== bytes.length && !r.findings.some((f) => f.code === 'pickle_invalid')) r.refuse('pickle_trailing', `${e.name}: bytes after the pickle`);
    } else if (kind === 'numpy') await scanNpy(bufferSource(bytes), r, e.name);
    else if (format === 'keras' && e.name === 'config.json') scanKerasConfig(bytes, r);
  }
  return format;
}

async function scanNpy(src: ByteSource, r: Report, where: string): Promise<void> {
  const h = await readNpyHeader(src);
  if (!h.objectDtype) return;
  const res = await scanPickles(src, r, h.dataOffset, src.size, 1, `${where} (object array)`);
  if (res.stop !== src.size && !r.findings.some((f) => f.code === 'pickle_invalid')) r.refuse('pickle_trailing', `${where}: bytes after the object array's pickle`);
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

/** JSON content: auto_map (remote code) and chat templates. Returns false when it is not JSON. */
function scanJson(bytes: Buffer, path: string, r: Report): boolean {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return false;
  }
  if (!doc || typeof doc !== 'object') return true;
  const d = doc as Record<string, unknown>;
  if (d.auto_map && typeof d.auto_map === 'object') {
    const refs = Object.values(d.auto_map as Record<string, unknown>).flat().filter((v) => typeof v === 'string');
    r.findings.push({ severity: 'code', code: 'auto_map', message: `${path} has auto_map (${refs.slice(0, 3).join(', ')}): trust_remote_code would run the repository's code` });
  }
  if (typeof d.chat_template === 'string') {
    const bad = suspiciousTemplate(d.chat_template);
    r.findings.push({ severity: bad ? 'refuse' : 'info', code: bad ? 'chat_template_suspicious' : 'chat_template', message: `${path} carries a chat template (${d.chat_template.length} characters)${bad ? ' with Python attribute walks (template injection)' : ''}` });
  }
  return true;
}

const EXPECTED_BY_NAME: [RegExp, Format[]][] = [
  [/\.safetensors$/i, ['safetensors']],
  [/\.gguf$/i, ['gguf']],
  [/\.npy$/i, ['numpy']],
];

/** Findings that come from a file's name rather than its bytes (added at decision time). */
export function nameFindings(path: string, report?: { format: string }): Finding[] {
  const out: Finding[] = [];
  if (/\.py$/i.test(path)) out.push({ severity: 'code', code: 'python_source', message: `${path} is Python source (code trust_remote_code would run)` });
  for (const [re, formats] of EXPECTED_BY_NAME) {
    if (report && re.test(path) && !formats.includes(report.format as Format)) {
      out.push({ severity: 'refuse', code: 'format_mismatch', message: `${path} is named like ${formats[0]} but its content is ${report.format}` });
    }
  }
  return out;
}

/**
 * Judge one file by its content (the report is stored per SHA-256, so nothing in it depends on
 * the file's name; `path` only labels messages). Never executes or unpickles anything; reads
 * through `src` without holding large files in memory. Parse problems become 'refuse' findings.
 */
export async function scan(src: ByteSource, path = 'the file'): Promise<ScanReport> {
  const r = new Report();
  const head = await src.read(0, Math.min(src.size, 4096));
  let format: Format = sniff(head);
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
      case 'numpy':
        await scanNpy(src, r, path);
        break;
      case 'zip':
        format = await scanZip(src, r);
        break;
      case 'pickle': {
        const res = await scanPickles(src, r, 0, src.size, 5, path);
        const legacy = res.first?.t === 'int' && res.first.v === LEGACY_TORCH_MAGIC;
        if (legacy) {
          format = 'torch-legacy';
          if (res.count < 5 && !r.findings.some((f) => f.code === 'pickle_invalid')) r.refuse('torch_legacy', 'legacy torch file with fewer than its 5 pickles');
          for (const pid of res.persistentIds) {
            const ref = storageRef(pid, true);
            if (typeof ref === 'string') r.refuse('pickle_persistent_id', `${path}: ${ref}`);
          }
        } else {
          // After the pickles of a plain pickle file, nothing may follow (joblib appends raw arrays; a payload could hide there).
          if (res.stop !== src.size && !r.findings.some((f) => f.code === 'pickle_invalid')) r.refuse('pickle_trailing', `${path}: ${src.size - res.stop} bytes after the last pickle`);
          for (const pid of res.persistentIds) {
            const ref = storageRef(pid);
            if (typeof ref === 'string') r.refuse('pickle_persistent_id', `${path}: ${ref}`);
          }
          if ([...r.globals].some((g) => g.startsWith('joblib.'))) format = 'joblib';
        }
        break;
      }
      case 'archive':
        r.refuse('archive', `${path}: ${archiveKind(head)} content (an archive or compressed file) is not inspected`);
        break;
      case 'opaque': {
        const first = head.toString('latin1').trimStart()[0];
        if (src.size <= 16 << 20 && (first === '{' || first === '[')) {
          const bytes = await src.read(0, src.size);
          if (scanJson(bytes, path, r)) format = 'json';
          break;
        }
        // A zip whose end record is at the end but whose first bytes are something else (a stub).
        const tail = await src.read(Math.max(0, src.size - 65557), Math.min(src.size, 65557));
        if (tail.includes(Buffer.from([0x50, 0x4b, 0x05, 0x06]))) {
          r.refuse('zip_prefixed', `${path}: a zip archive behind ${head.subarray(0, 4).toString('hex')}... (bytes before the first entry)`);
          format = 'zip';
          break;
        }
        // pickle.load needs no PROTO and no particular first opcode: try to decode, and call it a
        // pickle if it imports anything that looks like a Python name (or decodes through STOP).
        const trial = new Report();
        await scanPickles(src, trial, 0, Math.min(src.size, 1 << 20), 1, path);
        const named = [...trial.globals].some((g) => /^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$/.test(g));
        const clean = !trial.findings.some((f) => f.code === 'pickle_invalid');
        if (named || (clean && trial.globals.size > 0)) {
          await scanPickles(src, r, 0, src.size, 5, path);
          format = 'pickle';
        }
        break;
      }
      default:
        break;
    }
  } catch (e) {
    if (!(e instanceof ScanError)) throw e;
    r.refuse('invalid', e.message);
  }
  return r.done(format);
}
