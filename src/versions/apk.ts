/**
 * Alpine's version order, as apk-tools 3 defines it (apk-package(5):
 * number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}) and tests it (test/unit/version.data,
 * every comparison of which test/unit/versions.test.ts replays):
 * - tokens come in grammar order: first number, dotted numbers, one letter, suffixes with optional
 *   numbers, a commit hash, the revision; anything out of order ends the version as "invalid";
 * - suffixes sort alpha < beta < pre < rc < (none) < cvs < svn < git < hg < p;
 * - a dotted number with a leading zero on either side compares as text (Gentoo's rule), others
 *   as numbers of any length;
 * - when one side runs out first, it is greater only if the other continues with a pre-release
 *   suffix; otherwise the side whose next token comes later in the grammar (or ends) is smaller.
 */
const enum T {
  First,
  Digit,
  Letter,
  Suffix,
  SuffixNo,
  Hash,
  Revision,
  End,
  Invalid,
}

const SUFFIXES = ['alpha', 'beta', 'pre', 'rc', '', 'cvs', 'svn', 'git', 'hg', 'p'];
const NO_SUFFIX = 4;

interface Tok {
  t: T;
  /** The token's text (digits, letter, suffix name, hash). */
  text: string;
  suffix: number;
}

function* tokens(s: string): Generator<Tok> {
  let pos = 0;
  const run = (re: RegExp) => {
    const start = pos;
    while (pos < s.length && re.test(s[pos])) pos++;
    return s.slice(start, pos);
  };
  let prev = T.First;
  let text = run(/[0-9]/);
  if (!text) {
    yield { t: T.Invalid, text: '', suffix: 0 };
    return;
  }
  yield { t: T.First, text, suffix: 0 };
  for (;;) {
    if (pos >= s.length) {
      yield { t: T.End, text: '', suffix: 0 };
      return;
    }
    const c = s[pos];
    let tok: Tok | null = null;
    if (c >= 'a' && c <= 'z') {
      if (prev <= T.Digit) tok = { t: T.Letter, text: s[pos++], suffix: 0 };
    } else if (c === '.' || (c >= '0' && c <= '9')) {
      if (c === '.' && prev <= T.Digit) pos++;
      const kind: T | null = prev <= T.Digit && c === '.' ? T.Digit : prev === T.Suffix && c !== '.' ? T.SuffixNo : null;
      if (kind !== null) {
        text = run(/[0-9]/);
        if (text) tok = { t: kind, text, suffix: 0 };
      }
    } else if (c === '_') {
      if (prev <= T.SuffixNo) {
        pos++;
        text = run(/[a-z]/);
        const i = SUFFIXES.indexOf(text);
        if (text && i >= 0) tok = { t: T.Suffix, text, suffix: i };
      }
    } else if (c === '~') {
      if (prev < T.Hash) {
        pos++;
        text = run(/[0-9a-f]/);
        if (text) tok = { t: T.Hash, text, suffix: 0 };
      }
    } else if (c === '-') {
      if (prev < T.Revision && s[pos + 1] === 'r') {
        pos += 2;
        text = run(/[0-9]/);
        if (text) tok = { t: T.Revision, text, suffix: 0 };
      }
    }
    if (!tok) {
      yield { t: T.Invalid, text: '', suffix: 0 };
      return;
    }
    prev = tok.t;
    yield tok;
  }
}

const textOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const numOrder = (a: string, b: string) => {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

function compareTok(a: Tok, b: Tok): number {
  switch (a.t) {
    case T.Digit:
      if (a.text[0] === '0' || b.text[0] === '0') return textOrder(a.text, b.text);
      return numOrder(a.text, b.text);
    case T.First:
    case T.SuffixNo:
    case T.Revision:
      return numOrder(a.text, b.text);
    case T.Letter:
      return textOrder(a.text, b.text);
    case T.Suffix:
      return Math.sign(a.suffix - b.suffix);
    default:
      return textOrder(a.text, b.text);
  }
}

/** -1, 0 or 1 in Alpine's order. */
export function compareApk(a: string, b: string): number {
  const ia = tokens(a);
  const ib = tokens(b);
  for (;;) {
    const x = ia.next().value as Tok;
    const y = ib.next().value as Tok;
    if (x.t === y.t && x.t < T.End) {
      const c = compareTok(x, y);
      if (c !== 0) return c;
      continue;
    }
    if (x.t === y.t) return 0;
    if (x.t === T.Suffix && x.suffix < NO_SUFFIX) return -1;
    if (y.t === T.Suffix && y.suffix < NO_SUFFIX) return 1;
    return x.t > y.t ? -1 : 1;
  }
}

/** Whether a string is a valid Alpine version. */
export function validApk(v: string): boolean {
  for (const t of tokens(v)) {
    if (t.t === T.End) return true;
    if (t.t === T.Invalid) return false;
  }
  return false;
}
