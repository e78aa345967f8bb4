/**
 * What a layer says about the files that describe what is installed: the OS release, OS package
 * databases (dpkg, apk, rpm) and Python distributions. Layers are read once each; an image's
 * inventory is these facts with the layers applied in order (inventory.ts).
 */
export type PackageType = 'deb' | 'apk' | 'rpm' | 'pypi';

export interface Pkg {
  name: string;
  version: string;
  arch?: string;
  /** The source package (dpkg Source:, apk origin, rpm SOURCERPM name): what OS advisories name. */
  source?: string;
  /** The source package's version when it differs from the binary's (dpkg "Source: x (v)"). */
  sourceVersion?: string;
}

export type FileFact =
  | { kind: 'os-release'; fields: Record<string, string> }
  | { kind: 'dpkg' | 'apk' | 'rpm' | 'python'; packages: Pkg[] }
  /** A database Airlock found but cannot read (say which and why): the inventory is incomplete. */
  | { kind: 'unreadable'; why: string };

export interface LayerFacts {
  /** Format version of these facts: stored facts of an older version are recomputed. */
  v: number;
  /** Whether the blob was a layer (a tar, plain or compressed) at all. */
  tar: boolean;
  /** Files of interest by path (no leading "./" or "/"). */
  files: Record<string, FileFact>;
  /** Paths this layer deletes from the layers below (whiteouts `.wh.<name>`). */
  whiteouts: string[];
  /** Directories whose contents from the layers below this layer hides (`.wh..wh..opq`). */
  opaque: string[];
}

/** Bumped when what a layer's facts hold changes (2: a tar without ustar magic is a layer, not "no layer"): older facts are read again. */
export const FACTS_VERSION = 2;

/** os-release(5): KEY=value lines, values optionally quoted with shell escapes. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2].trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1).replace(/\\(["'$`\\])/g, '$1');
    out[m[1]] = v;
  }
  return out;
}

/** RFC 822-style paragraphs (dpkg status, distroless status.d files): fields, continuation lines skipped. */
function* paragraphs(text: string): Generator<Map<string, string>> {
  let cur = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (cur.size) yield cur;
      cur = new Map();
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') continue;
    const colon = line.indexOf(':');
    if (colon > 0) cur.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  if (cur.size) yield cur;
}

/** dpkg states in which a package's files are on disk (dpkg(1) "package states"). */
const ON_DISK = new Set(['installed', 'half-installed', 'unpacked', 'half-configured', 'triggers-awaited', 'triggers-pending']);

/**
 * A dpkg status database (var/lib/dpkg/status, or one file of distroless's status.d): the
 * packages on disk, each with its source package ("Source: name (version)", or itself).
 */
export function parseDpkgStatus(text: string): Pkg[] {
  const out: Pkg[] = [];
  for (const p of paragraphs(text)) {
    const name = p.get('package');
    const version = p.get('version');
    if (!name || !version) continue;
    const status = p.get('status');
    if (status !== undefined && !ON_DISK.has(status.split(/\s+/)[2] ?? '')) continue;
    const pkg: Pkg = { name, version };
    const arch = p.get('architecture');
    if (arch) pkg.arch = arch;
    const src = /^(\S+)(?:\s+\(([^)]+)\))?/.exec(p.get('source') ?? '');
    pkg.source = src ? src[1] : name;
    if (src?.[2] && src[2] !== version) pkg.sourceVersion = src[2];
    out.push(pkg);
  }
  return out;
}

/** apk's installed database (lib/apk/db/installed, apk-v2 "P:/V:/A:/o:" letters per package). */
export function parseApkInstalled(text: string): Pkg[] {
  const out: Pkg[] = [];
  let cur: Partial<Record<string, string>> = {};
  const flush = () => {
    if (cur.P && cur.V) out.push({ name: cur.P, version: cur.V, ...(cur.A ? { arch: cur.A } : {}), source: cur.o || cur.P });
    cur = {};
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      flush();
      continue;
    }
    if (line[1] === ':' && 'PVAo'.includes(line[0])) cur[line[0]] = line.slice(2).trim();
  }
  flush();
  return out;
}

/** Core metadata (METADATA, PKG-INFO): Name and Version from the header block. */
export function parsePythonMetadata(text: string): Pkg | null {
  let name: string | undefined;
  let version: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') break;
    const m = /^(Name|Version):\s*(.*?)\s*$/i.exec(line);
    if (m && m[1].toLowerCase() === 'name') name ??= m[2];
    else if (m) version ??= m[2];
  }
  return name && version ? { name, version } : null;
}
