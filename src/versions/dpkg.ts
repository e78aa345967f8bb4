/**
 * Debian version order (Debian Policy 5.6.12, as `dpkg --compare-versions` implements it):
 * [epoch:]upstream[-revision]. Epochs compare as numbers; upstream and revision alternate
 * non-digit runs, compared character by character where `~` sorts before everything (even the
 * end of the string) and letters before other characters, and digit runs, compared as numbers.
 * Checked against dpkg itself on thousands of generated pairs (test/unit/versions.test.ts).
 */
export interface DebVersion {
  epoch: string;
  upstream: string;
  revision: string;
}

/** Split a Debian version; null when it is not one (empty, a bad epoch). */
export function parseDeb(v: string): DebVersion | null {
  const s = v.trim();
  if (!s) return null;
  let epoch = '0';
  let rest = s;
  const colon = s.indexOf(':');
  if (colon >= 0) {
    epoch = s.slice(0, colon);
    rest = s.slice(colon + 1);
    if (!/^\d+$/.test(epoch)) return null;
  }
  const dash = rest.lastIndexOf('-');
  const upstream = dash >= 0 ? rest.slice(0, dash) : rest;
  const revision = dash >= 0 ? rest.slice(dash + 1) : '';
  if (!upstream) return null;
  return { epoch, upstream, revision };
}

/** The weight of one character in a non-digit run; 0 is the end of the run. */
function weight(c: number | undefined): number {
  if (c === undefined) return 0;
  if (c === 0x7e) return -1; // '~'
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return c;
  if (c >= 0x30 && c <= 0x39) return 0;
  return c + 256;
}

const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;

/** Digit runs compared as numbers of any length (no overflow): strip zeros, then length, then text. */
export function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+/, '');
  const y = b.replace(/^0+/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** dpkg's comparison of one upstream or revision part. */
function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // Non-digit runs, character by character.
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const wa = weight(i < a.length && !isDigit(a.charCodeAt(i)) ? a.charCodeAt(i) : undefined);
      const wb = weight(j < b.length && !isDigit(b.charCodeAt(j)) ? b.charCodeAt(j) : undefined);
      if (wa !== wb) return wa < wb ? -1 : 1;
      if (i < a.length && !isDigit(a.charCodeAt(i))) i++;
      if (j < b.length && !isDigit(b.charCodeAt(j))) j++;
    }
    // Digit runs, as numbers (an absent run is 0).
    let ei = i;
    while (ei < a.length && isDigit(a.charCodeAt(ei))) ei++;
    let ej = j;
    while (ej < b.length && isDigit(b.charCodeAt(ej))) ej++;
    const c = compareDigits(a.slice(i, ei) || '0', b.slice(j, ej) || '0');
    if (c !== 0) return c;
    i = ei;
    j = ej;
  }
  return 0;
}

/** -1, 0 or 1, as `dpkg --compare-versions a lt|eq|gt b`; unparseable versions sort as text, after valid ones. */
export function compareDeb(a: string, b: string): number {
  const x = parseDeb(a);
  const y = parseDeb(b);
  if (!x || !y) return !x && !y ? (a < b ? -1 : a > b ? 1 : 0) : x ? -1 : 1;
  return compareDigits(x.epoch, y.epoch) || comparePart(x.upstream, y.upstream) || comparePart(x.revision, y.revision);
}
