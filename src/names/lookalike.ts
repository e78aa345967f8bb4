/**
 * Look-alike names: is a name about to be approved a near copy of one people already use (a
 * typosquat, an impersonating owner, a dependency-confusion near miss)? Pure (no I/O): the known
 * names are given by the caller (cli/lookalike.ts gathers them: the policy's, the internal ones,
 * the record's by pulls, and the shipped popular lists in share/popular/).
 *
 * The tests, in order (the first that holds names the reason, one warning per known name):
 * - normalised: equal after lowercasing and collapsing `-_.` (PEP 503); for PyPI that is the same
 *   project, so only Hugging Face and OCI names, where `meta_llama` is not `meta-llama`, warn;
 * - ultranormalised: equal once separators are dropped and look-alike letters folded (l/i/1, o/0,
 *   rn/m, vv/w, and non-ASCII letters to the ASCII letter they imitate);
 * - words: the same words repeated or in another order (`dateutil-python`);
 * - affix: the same core once `python-`, `py-`, `-py`, `-python`, `-dev`, `-lib`, a version digit... are dropped;
 * - edit: Damerau-Levenshtein distance 1 (a character repeated, left out, changed, or two swapped),
 *   only when both names have at least 5 characters (4 for internal names) and the edit is not a
 *   digit (a version or a size: `Qwen3.5` and `Qwen3.6` are different models, not a typo), except,
 *   for internal names, a letter typed as a digit (`5ecretlib`);
 * - owner (Hugging Face `owner/name`, OCI `registry/namespace/name`): the same repository name under
 *   another owner, or an owner that looks like a known one (`libary` for `library`).
 * A name that is itself in the policy or internal is not checked; a popular name is checked only
 * against names more popular than itself. Lookups go through hash maps of keys; for the edit
 * distance, of (first character, length) and (length, last character): one edit leaves one of
 * the two ends intact, so a check compares a few dozen names of about its length, not 10,000.
 */
import { normalizeName } from './pypi.js';

export type LookalikeEcosystem = 'pypi' | 'hf' | 'oci';
export type KnownSource = 'internal' | 'policy' | 'record' | 'popular';
export type LookalikeKind = 'normalised' | 'ultranormalised' | 'words' | 'affix' | 'edit' | 'owner' | 'non-ascii';

export interface KnownName {
  name: string;
  source: KnownSource;
}

export interface LookalikeWarning {
  /** The known name it looks like (absent for a non-ASCII name that looks like nothing known). */
  like?: string;
  source?: KnownSource;
  kind: LookalikeKind;
  /** One sentence: what makes it look like `like`. */
  reason: string;
}

const SOURCE_ORDER: KnownSource[] = ['internal', 'policy', 'record', 'popular'];
const SOURCE_TEXT: Record<KnownSource, string> = {
  internal: 'an internal name',
  policy: 'in the policy',
  record: 'pulled through this mirror',
  popular: 'a popular name',
};

/** Non-ASCII characters that render like an ASCII one, as pairs (from Unicode's confusables: the common Cyrillic, Greek and Latin letters, and dashes). */
const CONFUSABLES = new Map(
  'аa вb еe оo рp сc уy хx ѕs іi јj ԁd һh ӏl ԛq ԝw кk мm нh тt пn гr ьb ɡg ıi łl ƚl ɩi οo αa ρp νv ιi κk τt υu χx εe βb μu ωw ηn ‐- ‑- –- —- ・. ·.'
    .split(' ')
    .map((p) => [p[0], p[1]] as const),
);

/** NFKC (fullwidth, ligatures, mathematical letters), accents stripped, lowercase, confusables to ASCII. */
export function skeleton(s: string): string {
  const base = s
    .normalize('NFKC')
    .normalize('NFD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase();
  return [...base].map((c) => CONFUSABLES.get(c) ?? c).join('');
}

/** PEP 503 normalisation of the skeleton: what a reader sees, whatever the separators. */
export const loose = (s: string) => normalizeName(skeleton(s));

/** Separators dropped and look-alike letters folded: l, i and 1; o and 0; rn and m; vv and w. */
export function ultra(s: string): string {
  return loose(s)
    .replace(/[-_.]/g, '')
    .replace(/rn/g, 'm')
    .replace(/vv/g, 'w')
    .replace(/[li|!]/g, '1')
    .replace(/o/g, '0');
}

const words = (l: string) => l.split(/[-/]/).filter(Boolean);
/** The words, each once, in order: `dateutil-python` and `python-python-dateutil` are `dateutil python`. */
const wordKey = (l: string) => {
  const w = [...new Set(words(l))].sort();
  return w.length >= 2 ? w.join(' ') : null;
};

const PREFIXES = /^(?:python[23]?|py[23]?)(?:-|(?=[a-z]{5}))/;
/** A version digit is one digit after a letter (`boto3`, `beautifulsoup4`), not the end of a number (`rfc3986`, `cu12`). */
const SUFFIXES = /(?:-?(?:python[23]?|py[23]?)|-(?:dev|devel|lib|official)|(?<=[a-z])-?[0-9])$/;
/** The core once affixes are dropped (`python3-dateutil` and `python-dateutil` are `dateutil`), or null when nothing is dropped or too little is left. */
export function affixCore(l: string): string | null {
  let s = l;
  for (let i = 0; i < 4; i++) {
    const t = s.replace(PREFIXES, '').replace(SUFFIXES, '');
    if (t === s) break;
    s = t;
  }
  return s.length >= 3 ? s : null;
}

/** The buckets a string one edit away from `s` may be in: its first character or its last, at a length within one of its own. */
const ends = (s: string, lengths = [s.length]) => lengths.flatMap((n) => [`${s[0]}<${n}`, `${n}>${s[s.length - 1]}`]);

/**
 * The one edit that turns `a` into `b` (Damerau-Levenshtein distance 1), described, or null when
 * they are further apart (or equal).
 */
export function oneEdit(a: string, b: string): { what: string; digit: boolean; at: number; letterDigit?: boolean } | null {
  if (a === b || Math.abs(a.length - b.length) > 1) return null;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) {
    if (a.slice(i + 1) === b.slice(i + 1)) {
      // letterDigit: a letter typed as a digit (`5ecret`), no version: only internal names count it (a near copy of one is refused).
      const letterDigit = /[a-z]/.test(a[i] + b[i]) && /\d/.test(a[i] + b[i]);
      return { what: `'${a[i]}' where ${quote(b)} has '${b[i]}'`, digit: /\d/.test(a[i] + b[i]), at: i, letterDigit };
    }
    if (a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2))
      return { what: `'${b[i]}${b[i + 1]}' swapped`, digit: /\d/.test(a[i] + a[i + 1]), at: i };
    return null;
  }
  const [long, short] = a.length > b.length ? [a, b] : [b, a];
  if (long.slice(i + 1) !== short.slice(i)) return null;
  const c = long[i];
  const doubled = long[i - 1] === c || long[i + 1] === c;
  const digit = /\d/.test(c);
  if (long === a) return { what: doubled ? `'${c}' repeated` : `an extra '${c}'`, digit, at: i };
  return { what: doubled ? `one '${c}' of two left out` : `'${c}' left out`, digit, at: i };
}

const quote = (s: string) => `"${s}"`;
/** The word (between separators) holding position `at`. */
const wordAt = (s: string, at: number) => {
  const from = Math.max(s.lastIndexOf('-', at - 1), s.lastIndexOf('/', at - 1)) + 1;
  const rest = s.slice(from).search(/[-/]/);
  return rest < 0 ? s.slice(from) : s.slice(from, from + rest);
};

interface Entry {
  name: string;
  source: KnownSource;
  /** Position in the popular list (lower is more popular); -1 for the others. */
  rank: number;
  owner: string | null;
  /** The name without its owner (the whole name for PyPI). */
  base: string;
}

/**
 * Does `name` begin (or end) with a look-alike of an internal glob's literal part? The words at
 * that end are compared with the part (folded, or one keystroke, from 4 characters), and the
 * name with separators dropped must not simply start with it (`acmeutils` for `acme-*`).
 */
function nearPart(name: string, part: string, at: 'head' | 'tail'): { kind: LookalikeKind; why: string } | null {
  const l = loose(name);
  const n = words(part).length;
  const w = words(l);
  if (w.length <= n && at === 'tail') return null;
  const piece = (at === 'head' ? w.slice(0, n) : w.slice(w.length - n)).join('-');
  const where = at === 'head' ? 'begins' : 'ends';
  if (l === part) return { kind: 'affix', why: `is the literal ${at} alone` };
  if (piece !== part && ultra(piece) === ultra(part)) return { kind: 'ultranormalised', why: `${where} with ${quote(piece)}, which reads as ${quote(part)}` };
  const ed = piece.length >= 4 && part.length >= 4 ? oneEdit(piece, part) : null;
  if (ed && (!ed.digit || ed.letterDigit)) return { kind: 'edit', why: `${where} with ${quote(piece)}, one keystroke from ${quote(part)} (${ed.what})` };
  const u = ultra(name);
  const up = ultra(part);
  if (piece !== part && u.length > up.length && (at === 'head' ? u.startsWith(up) : u.endsWith(up)))
    return { kind: 'ultranormalised', why: `${where} with ${quote(part)} once separators are dropped` };
  return null;
}

/** Owner and base name (a dataset and a model of one owner share it): Hugging Face `[datasets/]owner/name`, OCI `registry/namespace/name`; PyPI names have no owner. */
function split(eco: LookalikeEcosystem, name: string): { owner: string | null; base: string } {
  if (eco === 'pypi') return { owner: null, base: name };
  const n = eco === 'hf' ? name.replace(/^datasets\//, '') : name;
  const cut = n.lastIndexOf('/');
  return cut < 0 ? { owner: null, base: n } : { owner: n.slice(0, cut), base: n.slice(cut + 1) };
}

/** Maps from each key of a string to the entries having it: loose, ultra, words, affix core, ends. */
class KeyIndex {
  private readonly maps = {
    loose: new Map<string, Entry[]>(),
    ultra: new Map<string, Entry[]>(),
    words: new Map<string, Entry[]>(),
    affix: new Map<string, Entry[]>(),
    ends: new Map<string, Entry[]>(),
  };
  /** The loose form of each string added (computed once: the edit test compares many). */
  private readonly looseOf = new Map<string, string>();

  add(s: string, e: Entry): void {
    const l = loose(s);
    this.looseOf.set(s, l);
    const put = (m: Map<string, Entry[]>, k: string | null) => {
      if (k === null) return;
      const list = m.get(k);
      if (!list) m.set(k, [e]);
      else if (!list.includes(e)) list.push(e);
    };
    put(this.maps.loose, l);
    put(this.maps.ultra, ultra(s));
    put(this.maps.words, wordKey(l));
    put(this.maps.affix, affixCore(l));
    for (const k of ends(l)) put(this.maps.ends, k);
  }

  /** Each entry whose key string looks like `s`, with the first test that holds. */
  match(s: string, keyOf: (e: Entry) => string, minEdit: (e: Entry) => number): Map<Entry, { kind: LookalikeKind; why: string }> {
    const l = loose(s);
    const out = new Map<Entry, { kind: LookalikeKind; why: string }>();
    const add = (es: Entry[] | undefined, kind: LookalikeKind, why: (e: Entry) => string | null) => {
      for (const e of es ?? []) {
        if (out.has(e)) continue;
        const w = why(e);
        if (w !== null) out.set(e, { kind, why: w });
      }
    };
    // Equal strings are the same name (the caller decides what that means), not a look-alike.
    add(this.maps.loose.get(l), 'normalised', (e) => (keyOf(e) === s ? '' : `differs from ${quote(keyOf(e))} only in letter case or separators`));
    add(this.maps.ultra.get(ultra(s)), 'ultranormalised', (e) =>
      keyOf(e) === s ? '' : `reads as ${quote(keyOf(e))} once separators are dropped and look-alike characters (l/i/1, o/0, rn/m) are folded`,
    );
    const wk = wordKey(l);
    if (wk) add(this.maps.words.get(wk), 'words', (e) => `has the words of ${quote(keyOf(e))} repeated or in another order`);
    const core = affixCore(l);
    if (core)
      add(this.maps.affix.get(core), 'affix', (e) => `is ${quote(keyOf(e))} with a prefix or suffix changed (python-, py-, -py, -dev, a version digit...)`);
    const seen = new Set<Entry>();
    for (const k of ends(l, [l.length - 1, l.length, l.length + 1]))
      add(
        this.maps.ends.get(k)?.filter((e) => !seen.has(e) && seen.add(e)),
        'edit',
        (e) => {
          const k = this.looseOf.get(keyOf(e)) ?? loose(keyOf(e));
          if (Math.min(k.length, l.length) < minEdit(e)) return null;
          const ed = oneEdit(l, k);
          // A digit is a version or a size, and a short word is another word (mypy-boto3-sqs and -sns): neither is a typo.
          const digit = ed?.digit && !(ed.letterDigit && e.source === 'internal');
          if (!ed || digit || wordAt(l.length >= k.length ? l : k, ed.at).length < minEdit(e)) return null;
          return `is one keystroke from ${quote(keyOf(e))}: ${ed.what}`;
        },
      );
    for (const [e, m] of out) if (m.why === '') out.delete(e);
    return out;
  }
}

/** The known names of one ecosystem, indexed: build once, check many candidates. */
export class LookalikeIndex {
  private readonly exact = new Map<string, Entry>();
  private readonly whole = new KeyIndex();
  private readonly owners = new KeyIndex();
  /** Owner entries: one per known owner, pointing at its first known name. */
  private readonly ownerOf = new Map<string, Entry>();
  private readonly ownerByLoose = new Map<string, Entry>();
  private readonly bases = new Map<string, Entry[]>();

  /** Literal heads and tails of internal globs (`acme` of `acme-*`, `internal` of `*-internal`). */
  private readonly internalParts: { glob: string; part: string; at: 'head' | 'tail' }[] = [];

  /**
   * `internal`: the internal names' globs (PyPI's policy.pypi.internal) and the matcher that says a
   * name is internal. A glob without a wildcard is a known internal name; one with a wildcard is
   * compared by its literal head or tail: `acrne-utils` and `acmeutils` look like `acme-*`.
   */
  constructor(
    private readonly eco: LookalikeEcosystem,
    known: Iterable<KnownName>,
    private readonly internal: { globs: string[]; isInternal: (name: string) => boolean } = { globs: [], isInternal: () => false },
  ) {
    const globs = internal.globs.map((g) => this.canon(g));
    known = [...globs.filter((g) => !/[*?]/.test(g)).map((name) => ({ name, source: 'internal' as const })), ...known];
    for (const g of globs.filter((x) => /[*?]/.test(x))) {
      const head = /^[^*?]*/.exec(g)![0].replace(/[-_.]+$/, '');
      const tail = /[^*?]*$/.exec(g)![0].replace(/^[-_.]+/, '');
      if (head.length >= 3) this.internalParts.push({ glob: g, part: head, at: 'head' });
      if (tail.length >= 3) this.internalParts.push({ glob: g, part: tail, at: 'tail' });
    }
    let rank = 0;
    for (const k of known) {
      const name = this.canon(k.name);
      const prev = this.exact.get(name);
      const r = k.source === 'popular' ? rank++ : -1;
      if (prev && SOURCE_ORDER.indexOf(prev.source) <= SOURCE_ORDER.indexOf(k.source)) continue;
      const { owner, base } = split(eco, name);
      const e: Entry = { name, source: k.source, rank: prev ? Math.min(prev.rank, r) : r, owner, base };
      this.exact.set(name, e);
      if (owner === null) this.whole.add(base, e);
      else {
        const lb = loose(base);
        this.bases.set(lb, [...(this.bases.get(lb) ?? []), e]);
        if (!this.ownerOf.has(owner) || SOURCE_ORDER.indexOf(this.ownerOf.get(owner)!.source) > SOURCE_ORDER.indexOf(k.source)) {
          this.ownerOf.set(owner, e);
          this.ownerByLoose.set(loose(owner), e);
          this.owners.add(owner, { ...e, base: owner });
        }
        this.whole.add(base, e);
      }
    }
  }

  /** How names are compared: PyPI names PEP 503 normalised (as PyPI itself does); the others as written. */
  private canon(name: string): string {
    return this.eco === 'pypi' ? normalizeName(name.trim()) : name.trim();
  }

  get size(): number {
    return this.exact.size;
  }

  /**
   * The warnings for `candidate`, most serious first (internal, then policy, record, popular by
   * popularity), at most `limit`. Empty when it is itself in the policy or internal, or looks
   * like nothing known.
   */
  check(candidate: string, limit = 5): LookalikeWarning[] {
    const name = this.canon(candidate);
    const self = this.exact.get(name);
    if ((self && self.source !== 'popular' && self.source !== 'record') || this.internal.isInternal(name)) return [];
    const found = new Map<Entry, { kind: LookalikeKind; why: string }>();
    for (const { glob, part, at } of this.internalParts) {
      const why = nearPart(name, part, at);
      const e: Entry = { name: glob, source: 'internal', rank: -1, owner: null, base: glob };
      if (why) found.set(e, { kind: why.kind, why: `${why.why} of the internal names ${quote(glob)}` });
    }
    const { owner, base } = split(this.eco, name);
    const minEdit = (e: Entry) => (e.source === 'internal' ? 4 : 5);
    const keep = (e: Entry) => e.name !== name && !(self && self.rank >= 0 && e.source === 'popular' && e.rank > self.rank);
    if (owner === null) {
      for (const [e, m] of this.whole.match(base, (x) => x.base, minEdit)) if (keep(e) && e.owner === null) found.set(e, m);
    } else this.owned(owner, base, minEdit, keep, found);
    const out: (LookalikeWarning & { e: Entry })[] = [...found].map(([e, m]) => ({
      e,
      like: e.name,
      source: e.source,
      kind: m.kind,
      reason: `${quote(candidate)} ${m.why} (${SOURCE_TEXT[e.source]})`,
    }));
    out.sort((a, b) => SOURCE_ORDER.indexOf(a.e.source) - SOURCE_ORDER.indexOf(b.e.source) || a.e.rank - b.e.rank);
    // A name known from two sources is indexed twice: keep its most serious warning.
    const warnings: LookalikeWarning[] = out
      .filter((w, i) => out.findIndex((x) => x.like === w.like) === i)
      .slice(0, limit)
      .map(({ e: _e, ...w }) => w);
    const odd = [...candidate].filter((c) => c.charCodeAt(0) > 0x7e);
    if (odd.length) {
      const cps = [...new Set(odd)].map((c) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} '${c}'`).join(', ');
      const near = warnings[0]?.like;
      warnings.unshift({
        like: near,
        source: warnings[0]?.source,
        kind: 'non-ascii',
        reason: `${quote(candidate)} has non-ASCII characters (${cps}) that read as ${quote(skeleton(candidate))}${near ? `, like ${quote(near)}` : ''}`,
      });
    }
    return warnings;
  }

  /** Hugging Face and OCI: an owner that looks like a known one, or a known repository name under another owner. */
  private owned(
    owner: string,
    base: string,
    minEdit: (e: Entry) => number,
    keep: (e: Entry) => boolean,
    found: Map<Entry, { kind: LookalikeKind; why: string }>,
  ) {
    const known = this.ownerOf.has(owner);
    // The owner: look-alikes of known owners (only when the owner is not itself known), and owners built on a known one ("facebook-llama").
    const ownerMatches = known ? new Map<Entry, { kind: LookalikeKind; why: string }>() : this.owners.match(owner, (x) => x.owner!, minEdit);
    if (!known) {
      const lw = words(loose(owner));
      for (let n = 1; n < lw.length; n++) {
        for (const part of [lw.slice(0, n).join('-'), lw.slice(lw.length - n).join('-')]) {
          const e = part.length >= 4 ? this.ownerByLoose.get(part) : undefined;
          if (e && ![...ownerMatches.keys()].some((x) => x.owner === e.owner))
            ownerMatches.set(e, { kind: 'owner', why: `is built on the name of ${quote(e.owner!)}` });
        }
      }
    }
    // OCI: a name under another owner counts on the same registry (a team's own mirror of python elsewhere is not a squat), unless the owner itself looks like the known one.
    const registry = (o: string | null) => (this.eco === 'oci' ? (o ?? '').split('/')[0] : '');
    const sameBase = (this.bases.get(loose(base)) ?? []).filter((e) => e.owner !== owner && keep(e));
    for (const e of sameBase) {
      const om = [...ownerMatches].find(([x]) => x.owner === e.owner)?.[1];
      if (!om && registry(e.owner) !== registry(owner)) continue;
      const why = om
        ? `has the repository name of ${quote(e.name)} under an owner, ${quote(owner)}, that ${om.why}`
        : `has the repository name of ${quote(e.name)} under another owner (${quote(owner)})`;
      found.set(e, { kind: 'owner', why });
    }
    for (const [oe, m] of ownerMatches) {
      const e = this.ownerOf.get(oe.owner!)!;
      if (keep(e) && ![...found.keys()].some((f) => f.owner === oe.owner)) found.set(e, { kind: 'owner', why: `has an owner, ${quote(owner)}, that ${m.why}` });
    }
    // A near repository name under another owner (a name of 6 characters or more changed by one keystroke, or folded).
    for (const [e, m] of this.whole.match(
      base,
      (x) => x.base,
      () => 6,
    ))
      if (e.owner !== owner && registry(e.owner) === registry(owner) && keep(e) && !found.has(e) && ['edit', 'ultranormalised', 'normalised'].includes(m.kind))
        found.set(e, { kind: m.kind, why: `${m.why.replace(/"([^"]*)"/, `"${e.name}"`)}, under another owner` });
  }
}
