import { compareDigits } from './dpkg.js';

/**
 * RPM version order (rpmvercmp, rpm 4.x): segments of digits or letters, separators ignored;
 * a digit segment beats a letter segment; `~` sorts before everything, even the end, and `^`
 * after the end but before any further segment. An EVR compares epoch (absent = 0), then
 * version, then release. Checked against the published rpmvercmp vectors and against
 * `rpm.vercmp` of the real rpm on generated pairs (test/unit/versions.test.ts).
 */
const isAlnum = (c: string) => /[0-9A-Za-z]/.test(c);
const isDigit = (c: string) => c >= '0' && c <= '9';
const isAlpha = (c: string) => /[A-Za-z]/.test(c);

export function rpmvercmp(a: string, b: string): number {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < a.length && !isAlnum(a[i]) && a[i] !== '~' && a[i] !== '^') i++;
    while (j < b.length && !isAlnum(b[j]) && b[j] !== '~' && b[j] !== '^') j++;
    if (a[i] === '~' || b[j] === '~') {
      if (a[i] !== '~') return 1;
      if (b[j] !== '~') return -1;
      i++;
      j++;
      continue;
    }
    if (a[i] === '^' || b[j] === '^') {
      if (i >= a.length) return -1;
      if (j >= b.length) return 1;
      if (a[i] !== '^') return 1;
      if (b[j] !== '^') return -1;
      i++;
      j++;
      continue;
    }
    if (i >= a.length || j >= b.length) break;
    const numeric = isDigit(a[i]);
    const take = numeric ? isDigit : isAlpha;
    let ei = i;
    while (ei < a.length && take(a[ei])) ei++;
    let ej = j;
    while (ej < b.length && take(b[ej])) ej++;
    // The other side's segment is of the other type: digits win.
    if (ej === j) return numeric ? 1 : -1;
    const x = a.slice(i, ei);
    const y = b.slice(j, ej);
    const c = numeric ? compareDigits(x, y) : x < y ? -1 : x > y ? 1 : 0;
    if (c !== 0) return c;
    i = ei;
    j = ej;
  }
  if (i >= a.length && j >= b.length) return 0;
  return i < a.length ? 1 : -1;
}

export interface Evr {
  epoch: string;
  version: string;
  release: string;
}

/** [epoch:]version[-release], as rpm and OSV write them. */
export function parseEvr(s: string): Evr {
  let epoch = '0';
  let rest = s.trim();
  const colon = rest.indexOf(':');
  if (colon >= 0 && /^\d*$/.test(rest.slice(0, colon))) {
    epoch = rest.slice(0, colon) || '0';
    rest = rest.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  return dash >= 0 ? { epoch, version: rest.slice(0, dash), release: rest.slice(dash + 1) } : { epoch, version: rest, release: '' };
}

export function compareRpm(a: string, b: string): number {
  const x = parseEvr(a);
  const y = parseEvr(b);
  const e = compareDigits(x.epoch, y.epoch);
  if (e !== 0) return e;
  const v = rpmvercmp(x.version, y.version);
  if (v !== 0) return v;
  // A missing release matches any release (rpm's own rule for dependency ranges).
  if (!x.release || !y.release) return 0;
  return rpmvercmp(x.release, y.release);
}
