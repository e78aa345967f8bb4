import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { valid as validVersion } from '@renovatebot/pep440';
import { isScalar, LineCounter, parseAllDocuments, visit, type Scalar } from 'yaml';
import { ConfigError } from '../config/load.js';
import { isValidProjectName, normalizeName } from '../names/pypi.js';

/**
 * The files `airlock pin -r/-f` reads, parsed into what to pin: pure text in, a list out, every
 * item with its file:line. Bad input is a ConfigError naming file:line (nothing is pinned then).
 */

/** A release to pin, with the hashes the file names (empty: every file the index has for it). */
export interface PypiWant {
  name: string;
  version: string;
  sha256: string[];
  where: string;
  /** Set when the file names something no index serves (a VCS checkout, a path): refused, not pinned. */
  refuse?: string;
}

const bad = (where: string, msg: string) => new ConfigError(`${where}: ${msg}`);
const SHA256 = /^[0-9a-f]{64}$/;

/** A pip requirements file (pip-compile --generate-hashes writes one): `NAME==VERSION [; marker] [--hash=sha256:…]…`, `-r` followed. */
export function parseRequirements(file: string, text = readFileSync(file, 'utf8'), seen = new Set<string>()): PypiWant[] {
  seen.add(resolve(file));
  const out: PypiWant[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const first = i;
    let line = lines[i];
    while (/(^|[^\\])\\$/.test(line) && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i];
    const where = `${file}:${first + 1}`;
    line = line.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') continue;
    // pip (optparse) also takes the value attached to the short option: -rbase.txt, -cconstraints.txt.
    const opt = /^(?:(-r|--requirement|-c|--constraint)(?:\s+|=)|(-r|-c)(?=[^\s=-]))(\S+)$/.exec(line);
    if (opt) {
      const [flag, target] = [opt[1] ?? opt[2], opt[3]];
      if (flag === '-c' || flag === '--constraint') continue; // constraints install nothing
      const inc = resolve(dirname(file), target);
      if (seen.has(inc)) continue;
      let incText: string;
      try {
        incText = readFileSync(inc, 'utf8');
      } catch (e) {
        throw bad(where, `cannot read ${target}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      out.push(...parseRequirements(inc, incText, seen));
      continue;
    }
    if (/^(-e|--editable)\b/.test(line)) throw bad(where, 'an editable requirement (-e) cannot be pinned from an index');
    if (line.startsWith('-')) continue; // --index-url, --extra-index-url, --find-links, --require-hashes, --pre, ...: options, not requirements
    const hashes: string[] = [];
    const others: string[] = [];
    const req = line
      .replace(/\s--hash(?:=|\s+)(\S+)/g, (_, h: string) => {
        const [alg, hex] = h.split(':');
        if (alg !== 'sha256') others.push(alg);
        else {
          if (!SHA256.test((hex ?? '').toLowerCase())) throw bad(where, `--hash=${h.slice(0, 80)} is not sha256:<64 hex>`);
          hashes.push(hex.toLowerCase());
        }
        return '';
      })
      .split(';')[0]
      .trim();
    if (/\s@\s|:\/\//.test(req) || req.startsWith('.') || req.startsWith('/'))
      throw bad(where, `${JSON.stringify(req.slice(0, 80))} is a URL or a path: only NAME==VERSION from an index can be pinned`);
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(===?)\s*([^\s,]+)$/.exec(req);
    if (!m) throw bad(where, `${JSON.stringify(req.slice(0, 80))} is not an exact pin: expected NAME==VERSION (pip-compile writes them)`);
    if (!isValidProjectName(m[1])) throw bad(where, `${JSON.stringify(m[1])} is not a project name`);
    if (!validVersion(m[3])) throw bad(where, `${JSON.stringify(m[3])} is not a PEP 440 version`);
    const want: PypiWant = { name: normalizeName(m[1]), version: m[3], sha256: hashes, where };
    // Hashes that name its files, none of them sha256: not "no hashes" (that would approve every file upstream).
    if (others.length && !hashes.length)
      want.refuse = `its files are named only by ${others[0]} hashes; Airlock pins and checks sha256 (pip-compile --generate-hashes writes sha256)`;
    out.push(want);
  }
  return out;
}

/** The lines the `[[table]]` headers are on (for messages: the n-th package is the n-th header). */
function tomlLines(text: string, table: string): number[] {
  const lines: number[] = [];
  text.split(/\r?\n/).forEach((l, i) => {
    if (l.trim() === `[[${table}]]`) lines.push(i + 1);
  });
  return lines;
}

type Table = Record<string, unknown>;
const tables = (v: unknown): Table[] => (Array.isArray(v) ? v.filter((x): x is Table => !!x && typeof x === 'object') : []);

/** The packages of a PEP 751 lock file (pylock.toml), parsed: every wheel and sdist sha256 of each package from an index. */
export function pinsFromPylock(doc: Table, file: string, text: string): PypiWant[] {
  if (typeof doc['lock-version'] !== 'string') throw bad(file, 'not a PEP 751 lock file (no lock-version)');
  const lines = tomlLines(text, 'packages');
  let n = 0;
  return tables(doc.packages).map((p) => {
    const where = `${file}:${lines[n++] ?? '?'}`;
    const name = String(p.name ?? '');
    if (!isValidProjectName(name)) throw bad(where, `${JSON.stringify(name)} is not a project name`);
    const want = { name: normalizeName(name), version: String(p.version ?? ''), sha256: [] as string[], where };
    if (p.vcs || p.directory || p.archive) return { ...want, refuse: 'not from a package index (a VCS checkout, directory or archive)' };
    if (!validVersion(want.version)) throw bad(where, `${name}: ${JSON.stringify(p.version ?? null)} is not a PEP 440 version`);
    for (const f of [...tables(p.wheels), ...tables([p.sdist])]) {
      const h = String((f.hashes as Table | undefined)?.sha256 ?? '').toLowerCase();
      if (!SHA256.test(h)) throw bad(where, `${name}: a file without a sha256 hash (${String(f.name ?? f.url ?? '?').slice(0, 80)})`);
      want.sha256.push(h);
    }
    return want;
  });
}

/** The packages of a uv.lock: registry packages with their sdist and wheel hashes; the project itself (editable, virtual) is left out. */
export function pinsFromUvLock(doc: Table, file: string, text: string): PypiWant[] {
  if (doc.version === undefined || !Array.isArray(doc.package)) throw bad(file, 'not a uv.lock file (no version and [[package]] tables)');
  const lines = tomlLines(text, 'package');
  let n = 0;
  const out: PypiWant[] = [];
  for (const p of tables(doc.package)) {
    const where = `${file}:${lines[n++] ?? '?'}`;
    const source = (p.source ?? {}) as Table;
    if (source.editable !== undefined || source.virtual !== undefined) continue;
    const name = String(p.name ?? '');
    if (!isValidProjectName(name)) throw bad(where, `${JSON.stringify(name)} is not a project name`);
    const want: PypiWant = { name: normalizeName(name), version: String(p.version ?? ''), sha256: [], where };
    if (source.registry === undefined) {
      out.push({ ...want, refuse: `not from a package index (source ${Object.keys(source).join(', ') || 'unknown'})` });
      continue;
    }
    if (!validVersion(want.version)) throw bad(where, `${name}: ${JSON.stringify(p.version ?? null)} is not a PEP 440 version`);
    for (const f of [...tables(p.wheels), ...tables([p.sdist])]) {
      const [alg, hex] = String(f.hash ?? '').split(':');
      if (alg !== 'sha256' || !SHA256.test(hex ?? '')) throw bad(where, `${name}: a file without a sha256 hash (${String(f.url ?? '?').slice(0, 80)})`);
      want.sha256.push(hex);
    }
    out.push(want);
  }
  return out;
}

/** Read a lock file by its name: pylock.toml / pylock.*.toml, uv.lock, else a requirements file. */
export async function readPypiLock(file: string): Promise<PypiWant[]> {
  const name = basename(file);
  if (!/^pylock(\.[^.]+)?\.toml$/.test(name) && name !== 'uv.lock') return parseRequirements(file);
  const text = readFileSync(file, 'utf8');
  const { parse } = await import('smol-toml');
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (e) {
    const line = (e as { line?: number }).line;
    throw new ConfigError(`${file}${line ? `:${line}` : ''}: invalid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  return name === 'uv.lock' ? pinsFromUvLock(doc, file, text) : pinsFromPylock(doc, file, text);
}

/** An image named in a Dockerfile, compose file or Kubernetes manifest, with where its text is (for --rewrite). */
export interface ImageWant {
  /** The reference with ARG / ${VAR:-default} values put in. */
  ref: string;
  where: string;
  /** The span of the reference in the file's text, and how to write a new one there. */
  start: number;
  end: number;
  quote?: Scalar.Type;
}

/** `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR-default}` with these values; a variable without one is an error. */
function substitute(s: string, vars: Map<string, string | undefined>, where: string): string {
  return s.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced, def, bare) => {
    if (all === '$$') return '$';
    const v = vars.get(braced ?? bare) ?? def;
    if (v === undefined) throw bad(where, `${all} has no default value (give it one: ARG ${braced ?? bare}=...)`);
    return v;
  });
}

/** Every `FROM` of a Dockerfile: global ARG defaults put in, `--platform` skipped, build stages and scratch left out. */
export function parseDockerfile(file: string, text: string): ImageWant[] {
  const out: ImageWant[] = [];
  const args = new Map<string, string | undefined>();
  const stages = new Set<string>();
  let seenFrom = false;
  const re = /^[ \t]*([A-Za-z]+)[ \t]+((?:[^\n]*\\[ \t]*\r?\n)*[^\n]*)/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const line = text.slice(0, m.index).split('\n').length;
    const where = `${file}:${line}`;
    const kw = m[1].toUpperCase();
    const body = m[2]
      .replace(/\\[ \t]*\r?\n/g, ' ')
      .replace(/\s+#.*$/, '')
      .trim();
    if (kw === 'ARG' && !seenFrom) {
      for (const a of body.split(/\s+/)) {
        const [k, ...v] = a.split('=');
        args.set(k, v.length ? v.join('=').replace(/^(["'])(.*)\1$/, '$2') : undefined);
      }
    }
    if (kw !== 'FROM') continue;
    seenFrom = true;
    const words = body.split(/\s+/).filter((w) => !w.startsWith('--'));
    if (words.length === 0) throw bad(where, 'FROM names no image');
    const stage = words.length >= 3 && words[1].toLowerCase() === 'as' ? words[2].toLowerCase() : undefined;
    const raw = words[0];
    const ref = substitute(raw, args, where);
    const known = ref.toLowerCase() === 'scratch' || stages.has(ref.toLowerCase());
    if (stage) stages.add(stage);
    if (known) continue; // FROM an earlier stage, or from nothing
    const start = text.indexOf(raw, m.index + m[1].length + m[0].indexOf(m[1]));
    out.push({ ref, where, start, end: start + raw.length });
  }
  return out;
}

/** Every `image:` scalar of a YAML file (compose, Kubernetes, several documents), `${VAR:-default}` put in. */
export function parseImageYaml(file: string, text: string): ImageWant[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc });
  const out: ImageWant[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length) {
      const e = doc.errors[0];
      throw bad(`${file}:${lc.linePos(e.pos[0]).line}`, `invalid YAML: ${e.message.split('\n')[0]}`);
    }
    visit(doc, {
      Pair(_, pair) {
        if (!isScalar(pair.key) || pair.key.value !== 'image' || !isScalar(pair.value) || typeof pair.value.value !== 'string') return;
        const v = pair.value;
        const where = `${file}:${lc.linePos(v.range![0]).line}`;
        out.push({ ref: substitute(String(v.value), new Map(), where), where, start: v.range![0], end: v.range![1], quote: v.type });
      },
    });
  }
  return out;
}

/** A Dockerfile, or a YAML file naming images (by its extension). */
export function readImageFile(file: string): ImageWant[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: cannot read file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return /\.ya?ml$/i.test(file) ? parseImageYaml(file, text) : parseDockerfile(file, text);
}

/** The lines of an HF list: `[datasets/]REPO@REVISION`, comments and blank lines allowed. */
export function parseHfList(file: string, text: string): { ref: string; where: string }[] {
  const out: { ref: string; where: string }[] = [];
  text.split(/\r?\n/).forEach((l, i) => {
    const ref = l.replace(/(^|\s)#.*$/, '').trim();
    if (ref === '') return;
    const where = `${file}:${i + 1}`;
    if (!/^(datasets\/)?[^@\s]+@\S+$/.test(ref)) throw bad(where, `expected [datasets/]REPO@REVISION, got ${JSON.stringify(ref.slice(0, 120))}`);
    out.push({ ref, where });
  });
  return out;
}
