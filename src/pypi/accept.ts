/** PEP 691 content negotiation. */
export const JSON_V1 = 'application/vnd.pypi.simple.v1+json';
export const HTML_V1 = 'application/vnd.pypi.simple.v1+html';
export const TEXT_HTML = 'text/html';

export type SimpleFormat = typeof JSON_V1 | typeof HTML_V1 | typeof TEXT_HTML;

/** Server preference, most expressive first: used to break q-value ties. */
const PREFERENCE: SimpleFormat[] = [JSON_V1, HTML_V1, TEXT_HTML];

const ALIASES: Record<string, SimpleFormat> = {
  [JSON_V1]: JSON_V1,
  'application/vnd.pypi.simple.latest+json': JSON_V1,
  [HTML_V1]: HTML_V1,
  'application/vnd.pypi.simple.latest+html': HTML_V1,
  [TEXT_HTML]: TEXT_HTML,
};

interface Entry {
  type: string;
  q: number;
}

function parseAccept(header: string): Entry[] {
  const out: Entry[] = [];
  for (const part of header.split(',')) {
    const [rawType, ...params] = part.split(';');
    const type = rawType.trim().toLowerCase();
    if (!type) continue;
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split('=').map((x) => x.trim());
      if (k.toLowerCase() === 'q') {
        // RFC 9110: 0..1 with up to three decimals; a malformed q makes the entry unusable.
        q = v !== undefined && /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(v) ? Number(v) : -1;
      }
    }
    if (q >= 0) out.push({ type, q });
  }
  return out;
}

function qualityOf(format: SimpleFormat, entries: Entry[]): number {
  let best = -1;
  let bestSpecificity = -1;
  for (const e of entries) {
    let specificity = -1;
    if (ALIASES[e.type] === format) specificity = 2;
    else if (e.type === '*/*') specificity = 0;
    else if (e.type.endsWith('/*') && format.startsWith(e.type.slice(0, -1))) specificity = 1;
    if (specificity > bestSpecificity) {
      bestSpecificity = specificity;
      best = e.q;
    } else if (specificity === bestSpecificity && specificity >= 0) {
      best = Math.max(best, e.q);
    }
  }
  return best;
}

/**
 * Pick the representation for an Accept header (absent means `*\/*`). `format` is the optional
 * `?format=` URL parameter, which overrides Accept. Returns null when nothing acceptable is on
 * offer (the caller answers 406).
 */
export function negotiate(accept: string | undefined | null, format?: string | null): SimpleFormat | null {
  if (format) return ALIASES[format.trim().toLowerCase()] ?? null;
  const key = accept ?? '';
  const hit = memo.get(key);
  if (hit !== undefined) return hit;
  const chosen = choose(accept);
  // Clients send a handful of distinct headers; remember them (bounded) instead of re-parsing.
  if (memo.size >= 256) memo.clear();
  memo.set(key, chosen);
  return chosen;
}

const memo = new Map<string, SimpleFormat | null>();

function choose(accept: string | undefined | null): SimpleFormat | null {
  const entries = parseAccept(accept && accept.trim() ? accept : '*/*');
  let chosen: SimpleFormat | null = null;
  let chosenQ = 0;
  for (const f of PREFERENCE) {
    const q = qualityOf(f, entries);
    if (q > chosenQ) {
      chosen = f;
      chosenQ = q;
    }
  }
  return chosen;
}
