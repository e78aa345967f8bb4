import { Parser } from 'htmlparser2';
import { AirlockError } from '../core/errors.js';
import { parseInstant } from '../policy/index.js';
import type { PyFile, PyProject } from './model.js';

/** Hash algorithms pip accepts in a URL fragment. */
const HASH_NAMES = new Set(['sha512', 'sha384', 'sha256', 'sha224', 'sha1', 'md5']);
const HEX = /^[0-9a-fA-F]+$/;
/** PEP 700's upload-time: yyyy-mm-ddThh:mm:ss(.ffffff)Z. */
const PEP700 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function lastSegment(u: URL): string {
  const seg = u.pathname.slice(u.pathname.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(seg);
  } catch {
    return '';
  }
}

function normalizeHashes(h: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    const alg = k.toLowerCase();
    if (HASH_NAMES.has(alg) && typeof v === 'string' && HEX.test(v)) out[alg] = v.toLowerCase();
  }
  return out;
}

function parseMetadataAttr(v: string | undefined | null): PyFile['coreMetadata'] {
  if (v === undefined || v === null) return undefined;
  if (v === 'true') return true;
  const m = /^([a-z0-9]+)=([0-9a-fA-F]+)$/.exec(v.trim());
  if (m && HASH_NAMES.has(m[1])) return { [m[1]]: m[2].toLowerCase() };
  return undefined;
}

/**
 * Parse a PEP 503 HTML page into the model. Links are resolved against the page's own URL:
 * an upstream `<base href>` is ignored, and each file URL must still pass the file-host check
 * before Airlock fetches it. A link whose anchor text is not its filename is dropped.
 */
export function parseHtmlPage(html: string, pageUrl: URL, project: string): PyProject {
  const files: PyFile[] = [];
  let sawMeta = false;
  let anchors = 0;
  let current: { attrs: Record<string, string>; text: string } | null = null;
  const parser = new Parser(
    {
      onopentag(name, attrs) {
        if (name === 'meta' && attrs.name === 'pypi:repository-version') {
          sawMeta = true;
          const major = Number((attrs.content ?? '1').split('.')[0]);
          if (major !== 1) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `upstream page has unsupported repository-version ${attrs.content}`);
        }
        if (name === 'a') current = { attrs, text: '' };
      },
      ontext(text) {
        if (current) current.text += text;
      },
      onclosetag(name) {
        if (name !== 'a' || !current) return;
        anchors++;
        const { attrs, text } = current;
        current = null;
        if (!attrs.href) return;
        let url: URL;
        try {
          url = new URL(attrs.href, pageUrl);
        } catch {
          return;
        }
        const filename = lastSegment(url);
        if (!filename || filename !== text.trim()) return;
        const hashes: Record<string, string> = {};
        const frag = /^#([a-z0-9]+)=([0-9a-fA-F]+)$/.exec(url.hash);
        if (frag && HASH_NAMES.has(frag[1])) hashes[frag[1]] = frag[2].toLowerCase();
        url.hash = '';
        const file: PyFile = {
          filename,
          url: url.href,
          hashes,
          yanked: 'data-yanked' in attrs ? (attrs['data-yanked'] ?? '') : false,
        };
        if (attrs['data-requires-python']) file.requiresPython = attrs['data-requires-python'];
        const md = parseMetadataAttr(attrs['data-core-metadata'] ?? attrs['data-dist-info-metadata']);
        if (md) file.coreMetadata = md;
        files.push(file);
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.write(html);
  parser.end();
  if (!sawMeta && anchors === 0) {
    // A login page, captive portal or blank CDN answer looks like this: never cache it as "no files".
    throw new AirlockError('UPSTREAM_BAD_RESPONSE', 'upstream answered an HTML page that is not a simple-index project page');
  }
  return { name: project, files };
}

/** Parse a PEP 691 JSON project page into the model. */
export function parseJsonPage(text: string, pageUrl: URL, project: string): PyProject {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new AirlockError('UPSTREAM_BAD_RESPONSE', 'upstream answered invalid JSON for a project page');
  }
  const d = doc as { meta?: { 'api-version'?: unknown }; files?: unknown };
  const apiVersion = d?.meta?.['api-version'];
  if (typeof apiVersion !== 'string' || !Array.isArray(d.files)) {
    throw new AirlockError('UPSTREAM_BAD_RESPONSE', 'upstream JSON is not a PEP 691 project page (no meta.api-version or files)');
  }
  if (Number(apiVersion.split('.')[0]) !== 1) {
    throw new AirlockError('UPSTREAM_BAD_RESPONSE', `upstream page has unsupported api-version ${apiVersion}`);
  }
  const files: PyFile[] = [];
  for (const raw of d.files as Record<string, unknown>[]) {
    if (!raw || typeof raw.filename !== 'string' || typeof raw.url !== 'string') continue;
    let url: URL;
    try {
      url = new URL(raw.url, pageUrl);
    } catch {
      continue;
    }
    url.hash = '';
    if (lastSegment(url) !== raw.filename) continue;
    const file: PyFile = {
      filename: raw.filename,
      url: url.href,
      hashes: raw.hashes && typeof raw.hashes === 'object' ? normalizeHashes(raw.hashes as Record<string, unknown>) : {},
      // `yanked: ""` is invalid JSON-API; treat it as yanked (the safe reading), like HTML's empty attribute.
      yanked: raw.yanked === true ? '' : typeof raw.yanked === 'string' ? raw.yanked : false,
    };
    if (typeof raw['requires-python'] === 'string' && raw['requires-python']) file.requiresPython = raw['requires-python'];
    const md = raw['core-metadata'] ?? raw['dist-info-metadata'];
    if (md === true) file.coreMetadata = true;
    else if (md && typeof md === 'object') {
      const h = normalizeHashes(md as Record<string, unknown>);
      if (Object.keys(h).length > 0) file.coreMetadata = h;
    }
    if (typeof raw.size === 'number' && Number.isSafeInteger(raw.size) && raw.size >= 0) file.size = raw.size;
    // PEP 700: kept only when it is a time (it decides min_age, and uv's exclude-newer reads it from our pages).
    const uploaded = pep700Time(raw['upload-time']);
    if (uploaded) file.uploadTime = uploaded;
    files.push(file);
  }
  return { name: project, files };
}

/**
 * An upstream's upload time in the one form PEP 700 gives, `yyyy-mm-ddThh:mm:ss.ffffffZ` in UTC
 * (what Airlock's pages serve, for uv's --exclude-newer): any RFC 3339 time (an offset, a space or
 * lower case, a fraction of any length or none) as the same instant, to the microsecond; null when
 * it is not a time.
 */
export function pep700Time(s: unknown): string | null {
  const t = parseInstant(s);
  if (t === null) return null;
  const m = /^.{10}[Tt ].{8}(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(s as string);
  if (!m) return null;
  // Offsets are whole minutes: the seconds' fraction is the one written; the rest is the instant in UTC.
  const whole = new Date(t - (((t % 1000) + 1000) % 1000)).toISOString().slice(0, 19);
  return `${whole}.${(m[1] ?? '').slice(0, 6).padEnd(6, '0')}Z`;
}
