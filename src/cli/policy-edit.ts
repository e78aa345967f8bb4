import { isDeepStrictEqual } from 'node:util';
import jsYaml from 'js-yaml';
import { ConfigError } from '../config/load.js';
import { isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair, type Scalar, type YAMLMap, type YAMLSeq } from 'yaml';
import { blockItem, blockPair, flowText, notesIn, quoteOf, scalarText, type Style, type Val } from './policy-render.js';

export { scalarText, withComment, type Val } from './policy-render.js';

/**
 * Edits of a hand-written policy that touch only the bytes they add or change: `airlock pin`
 * writes into a file its reviewers own, so comments, order, flow or block style, quoting and
 * blank lines elsewhere stay byte-identical and the Git diff is the approval and nothing else.
 *
 * Why a text splice rather than re-serialising a `yaml` Document: the Document keeps comments but
 * re-flows what it prints (every `{ … }`, `[a]`, quote and blank line is printed its own way), so
 * the only way to leave the rest alone is never to print it. The file is parsed with `yaml` for the
 * source range of every node; an edit is an insertion (or the replacement of one scalar, or of an
 * empty `[]`) at a position computed from those ranges, written in the style of its neighbours, and
 * the file is parsed again before the next edit. After all edits, the result is read with the
 * loader's own parser (js-yaml) and must equal the old policy with exactly the intended changes
 * applied to it: anything else (a construct this editor does not understand) is an error, and
 * nothing is written.
 */

/** A ConfigError, so the CLI says it in one line. */
export class PolicyEditError extends ConfigError {}

type Path = (string | number)[];
type Op = { kind: 'append'; path: Path; items: Val[] } | { kind: 'set'; path: Path; key: string; value: string };

/** Quoting of new scalars when nothing in the list shows one (the style of docs/configuration.md). */
const DEFAULT_QUOTE: Record<string, Scalar.Type> = {
  versions: 'QUOTE_DOUBLE',
  'tags{k}': 'QUOTE_DOUBLE',
  'tags{v}': 'QUOTE_DOUBLE',
  'refs{v}': 'QUOTE_DOUBLE',
  'digests[]': 'QUOTE_DOUBLE',
  'commits[]': 'QUOTE_DOUBLE',
};

export class PolicyEditor {
  private parsed?: Document.Parsed;
  private readonly ops: Op[] = [];
  private readonly original: string;
  private readonly crlf: boolean;
  private readonly styles = new Map<string, Style>();
  private js?: { value: unknown };
  private pending?: { eco: string; items: Record<string, Val>[] };
  private commented = false;

  constructor(
    public text: string,
    private readonly base: string[],
    private readonly file = 'policy',
  ) {
    this.original = text;
    this.crlf = text.includes('\r\n');
    if (this.doc.errors.length) throw new PolicyEditError(`${file}: invalid YAML: ${this.doc.errors[0].message.split('\n')[0]}`);
  }

  private get doc(): Document.Parsed {
    return (this.parsed ??= parseDocument(this.text));
  }

  /** The allow list of one ecosystem as the loader reads it (for matching), [] when absent; entries added and not yet written included. */
  entries(eco: string): Record<string, unknown>[] {
    const v = this.jsAt([...this.base, eco, 'allow']);
    const written = Array.isArray(v) ? (v as Record<string, unknown>[]) : [];
    return this.pending?.eco === eco ? [...written, ...this.pending.items] : written;
  }

  /**
   * Append entries (maps) to `<base>.<eco>.allow`, creating the list (and its parents) when absent.
   * Consecutive additions are written as one edit (a lock file of 100 releases is one splice).
   */
  addEntries(eco: string, entries: Record<string, Val>[]): void {
    if (this.pending && this.pending.eco !== eco) this.flush();
    (this.pending ??= { eco, items: [] }).items.push(...entries);
  }

  /** Append values to a list field of entry `index` (created when absent). */
  addToList(eco: string, index: number, field: string, values: string[]): void {
    this.flush();
    if (values.length) this.apply({ kind: 'append', path: [...this.base, eco, 'allow', index, field], items: values });
  }

  /** Set key -> value in a map field of entry `index` (tags, refs; created when absent). */
  setInMap(eco: string, index: number, field: string, key: string, value: string): void {
    this.flush();
    this.apply({ kind: 'set', path: [...this.base, eco, 'allow', index, field], key, value });
  }

  /** Whether entry `index` may be edited in place: a map written here, not an alias, not an anchor others refer to. */
  editable(eco: string, index: number): boolean {
    this.flush();
    const n = this.doc.getIn([...this.base, eco, 'allow', index], true) as Node | undefined;
    return isMap(n) && !n.anchor;
  }

  /** The text the edits were made on. */
  get source(): string {
    return this.original;
  }

  get changed(): boolean {
    return this.ops.length > 0 || !!this.pending || this.commented;
  }

  /**
   * A comment line just above entry `index` (e.g. the signer `airlock pin` verified): one new line at
   * the entry's dash column, nothing else touched. Only where the entry starts its own line in a
   * block list (`- key: ...`); false otherwise (a flow list), and then nothing is written.
   */
  commentAbove(eco: string, index: number, comment: string): boolean {
    this.flush();
    const n = this.doc.getIn([...this.base, eco, 'allow', index], true) as Node | undefined;
    const list = this.doc.getIn([...this.base, eco, 'allow'], true) as Node | undefined;
    if (!n?.range || !isSeq(list) || list.flow) return false;
    const start = n.range[0];
    const lineStart = this.text.lastIndexOf('\n', start - 1) + 1;
    const m = /^([ \t]*)-[ \t]+(?:\{[ \t]*)?$/.exec(this.text.slice(lineStart, start));
    if (!m) return false;
    this.splice(lineStart, 0, `${m[1]}# ${comment.replace(/\s+/g, ' ')}\n`);
    this.commented = true;
    return true;
  }

  private flush(): void {
    const p = this.pending;
    this.pending = undefined;
    if (p && p.items.length) this.apply({ kind: 'append', path: [...this.base, p.eco, 'allow'], items: p.items });
  }

  /** The edited text, checked: the loader reads exactly the old policy with the intended edits. */
  result(): string {
    this.flush();
    const expected = structuredClone(loadJs(this.original)) as Record<string, unknown>;
    for (const op of this.ops) applyJs(expected, op);
    let edited: unknown;
    try {
      edited = loadJs(this.text);
    } catch {
      edited = undefined; // the edit does not even parse: the same error as one that reads back wrong
    }
    if (!isDeepStrictEqual(edited, expected)) {
      throw new PolicyEditError(
        `${this.file}: the edit would not read back as the intended policy (an unusual construct near the allow list?); nothing written`,
      );
    }
    return this.text;
  }

  private jsAt(path: Path): unknown {
    if (!this.js) {
      try {
        this.js = { value: loadJs(this.text) };
      } catch {
        throw new PolicyEditError(`${this.file}: an edit would not read back as YAML (an unusual construct near the allow list?); nothing written`);
      }
    }
    let v: unknown = this.js.value;
    for (const k of path) v = v && typeof v === 'object' ? (v as Record<string | number, unknown>)[k] : undefined;
    return v;
  }

  private apply(op: Op): void {
    this.ops.push(op);
    if (op.kind === 'append') this.append(op.path, op.items);
    else this.set(op.path, op.key, op.value);
  }

  // ---- positions ----

  private col(pos: number): number {
    const start = this.text.lastIndexOf('\n', pos - 1) + 1;
    // A byte order mark (a policy saved by a Windows editor) is no column.
    return pos - start - (start === 0 && this.text.startsWith('\uFEFF') && pos > 0 ? 1 : 0);
  }

  /**
   * The start of the line after the one holding the content that ends at `end` (a newline is added
   * at the end of the file), past the comment lines that follow it indented deeper than `col`
   * (they belong to the item or pair that ends there).
   */
  private afterLine(end: number, col = Infinity): number {
    let p = end;
    while (p > 0 && /\s/.test(this.text[p - 1])) p--;
    if (p === 0) return 0;
    const nl = this.text.indexOf('\n', p);
    if (nl < 0) {
      this.splice(this.text.length, 0, '\n');
      return this.text.length;
    }
    let at = nl + 1;
    for (let m = /^([ \t]*)#[^\n]*(\n|$)/.exec(this.text.slice(at)); m && m[1].length > col; m = /^([ \t]*)#[^\n]*(\n|$)/.exec(this.text.slice(at))) {
      if (!m[2]) {
        this.splice(this.text.length, 0, '\n');
        return this.text.length;
      }
      at += m[0].length;
    }
    return at;
  }

  private splice(at: number, del: number, ins: string): void {
    // New lines end the way the file's lines do.
    if (this.crlf) ins = ins.replace(/\r?\n/g, '\r\n');
    this.text = this.text.slice(0, at) + ins + this.text.slice(at + del);
    this.parsed = undefined;
    this.js = undefined;
  }

  /**
   * Walk `path` from the document root: the deepest node that exists, the pair holding it (for
   * its key's column), how much of the path is left, and whether a flow collection encloses it.
   */
  private walk(path: Path): { node: Node | null; pair?: Pair; rest: Path; inFlow: boolean } {
    let node = this.doc.contents as Node | null;
    let pair: Pair | undefined;
    let inFlow = false;
    for (let i = 0; i < path.length; i++) {
      if (isAlias(node)) throw new PolicyEditError(`${this.file}: ${pathText(path.slice(0, i))} is an alias (*${node.source}); edit it by hand`);
      if (isMap(node) || isSeq(node)) inFlow ||= !!node.flow;
      if (isScalar(node) && node.value === null) return { node, pair, rest: path.slice(i), inFlow };
      let next: Pair | undefined;
      if (isMap(node)) next = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : undefined) === String(path[i]));
      else if (isSeq(node) && typeof path[i] === 'number') {
        const item = node.items[path[i] as number] as Node | undefined;
        if (!item) throw new PolicyEditError(`${this.file}: ${pathText(path.slice(0, i + 1))}: no such entry`);
        node = item;
        continue;
      } else if (node !== null) throw new PolicyEditError(`${this.file}: ${pathText(path.slice(0, i))} is not a map`);
      if (!next) return { node, pair, rest: path.slice(i), inFlow };
      pair = next;
      node = (next.value as Node | null) ?? null;
    }
    if (isAlias(node)) throw new PolicyEditError(`${this.file}: ${pathText(path)} is an alias (*${node.source}); edit it by hand`);
    return { node, pair, rest: [], inFlow };
  }

  /** The comments of entries written in flow style on one line: comment lines above the line holding `pos`, in its indentation. */
  private noteAbove(pos: number, items: Val[]): void {
    const notes = items.flatMap(notesIn);
    if (!notes.length) return;
    let start = this.text.lastIndexOf('\n', pos - 1) + 1;
    if (start === 0 && this.text.startsWith('\uFEFF')) start = 1;
    const indent = /^[ \t]*/.exec(this.text.slice(start))![0];
    this.splice(start, 0, notes.map((n) => `${indent}# ${n}\n`).join(''));
  }

  // ---- the two edits ----

  private append(path: Path, items: Val[]): void {
    const w = this.walk(path);
    const style = this.styleOf(path);
    const leaf = String(path[path.length - 1]);
    const field = leaf === 'allow' ? '' : leaf;
    if (w.rest.length > 0) {
      // Parents missing: write them, with the list, as new keys of the deepest map that exists.
      let value: Val | Val[] = items as Val[];
      for (const k of w.rest.slice(1).reverse()) value = { [String(k)]: value as Val };
      return this.addPair(w, String(w.rest[0]), value, style, '');
    }
    const seq = w.node;
    if (isScalar(seq) && seq.value === null) return this.fillEmpty(seq, w.pair, items, style, field, !w.inFlow);
    if (!isSeq(seq)) throw new PolicyEditError(`${this.file}: ${pathText(path)} is not a list`);
    // An empty allow list becomes a block list (the shipped config's `allow: []`); an entry's empty `[]` stays flow.
    if (seq.items.length === 0) return this.fillEmpty(seq, w.pair, items, style, field, !w.inFlow && field === '');
    const last = seq.items[seq.items.length - 1] as Node;
    if (seq.flow) {
      const multiline = this.text.slice(seq.range![0], last.range![1]).includes('\n');
      const pad = ' '.repeat(this.col(last.range![0]));
      const sep = multiline ? `,\n${pad}` : ', ';
      // An entry's comment: on its own line before the entry in a list written over lines, else above the list's line.
      const note = (v: Val) => (multiline ? notesIn(v).map((n) => `# ${n}\n${pad}`) : []).join('');
      this.splice(last.range![1], 0, items.map((v) => sep + note(v) + flowText(v, style, field && `${field}[]`)).join(''));
      if (!multiline) this.noteAbove(last.range![1], items);
      return;
    }
    const dash = this.col(seq.range![0]);
    const at = this.afterLine(last.range![1], dash);
    this.splice(at, 0, items.map((v) => blockItem(v, dash, style, field)).join(''));
  }

  private set(path: Path, key: string, value: string): void {
    const w = this.walk(path);
    const style = this.styleOf(path);
    const field = String(path[path.length - 1]);
    if (w.rest.length > 0) return this.addPair(w, String(w.rest[0]), { [key]: value }, style, '');
    if (!isMap(w.node)) throw new PolicyEditError(`${this.file}: ${pathText(path)} is not a map`);
    const pair = w.node.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
    const old = pair?.value as Node | undefined;
    if (isScalar(old) && old.range) {
      // Replace the one scalar, in its own quoting.
      return this.splice(old.range[0], old.range[1] - old.range[0], scalarText(value, old.type ?? 'PLAIN'));
    }
    if (pair) throw new PolicyEditError(`${this.file}: ${pathText([...path, key])} is not a single value`);
    this.addPair(w, key, value, style, field);
  }

  /** Add `key: value` to the map that `w` ends at (or, when that is an empty value, under its key); `ctx`: the map field it is in. */
  private addPair(w: ReturnType<PolicyEditor['walk']>, key: string, value: Val | Val[], style: Style, ctx: string): void {
    const map = w.node;
    const kq = ctx ? quoteOf(style, `${ctx}{k}`) : 'PLAIN';
    if (map === null || (isScalar(map) && map.value === null)) {
      // An empty document, or `key:` with nothing under it.
      const keyNode = w.pair?.key as Node | undefined;
      const indent = keyNode ? this.col(keyNode.range![0]) + 2 : 0;
      if (isScalar(map) && map.range && map.range[1] > map.range[0]) this.deleteValue(map.range[0], map.range[1]);
      const at = keyNode ? this.afterLine(keyNode.range![1]) : this.afterLine(this.text.length);
      return this.splice(at, 0, blockPair(key, value, indent, style, ctx));
    }
    if (!isMap(map)) throw new PolicyEditError(`${this.file}: cannot add "${key}": its parent is not a map`);
    const pairs = map.items;
    if (map.flow || w.inFlow) {
      const v = typeof value === 'string' ? flowText(value, style, ctx ? `${ctx}{v}` : key) : flowText(value, style, key);
      const text = `${scalarText(key, kq)}: ${v}`;
      if (pairs.length === 0) this.splice(map.range![0], map.range![1] - map.range![0], `{ ${text} }`);
      else {
        const last = pairs[pairs.length - 1];
        const end = ((last.value as Node | null)?.range ?? (last.key as Node).range)![1];
        this.splice(end, 0, `, ${text}`);
      }
      return this.noteAbove(map.range![0], [value as Val]);
    }
    const last = pairs[pairs.length - 1];
    const end = ((last.value as Node | null)?.range ?? (last.key as Node).range)![1];
    const keyCol = this.col((pairs[0].key as Node).range![0]);
    const at = this.afterLine(end, keyCol);
    this.splice(at, 0, blockPair(key, value, keyCol, style, ctx));
  }

  /** Fill an empty list (`[]`, or nothing after the key): block items under the key, or `[ … ]` inside a flow collection. */
  private fillEmpty(node: Node, pair: Pair | undefined, items: Val[], style: Style, field: string, block: boolean): void {
    const [s, e] = node.range!;
    if (!block || !pair || !isScalar(pair.key) || this.text.slice(s, e).replace(/\s/g, '') !== (isSeq(node) ? '[]' : this.text.slice(s, e).trim())) {
      this.splice(s, e - s, `[${items.map((v) => flowText(v, style, field && `${field}[]`)).join(', ')}]`);
      return this.noteAbove(s, items);
    }
    const keyCol = this.col(pair.key.range![0]);
    if (e > s) this.deleteValue(s, e);
    const at = this.afterLine(pair.key.range![1]);
    this.splice(at, 0, items.map((v) => blockItem(v, keyCol + 2, style, field)).join(''));
  }

  /** Remove a value written on its key's line (`[]`, `null`, `~`) and the blanks before it, keeping what follows (a comment). */
  private deleteValue(s: number, e: number): void {
    let start = s;
    while (start > 0 && (this.text[start - 1] === ' ' || this.text[start - 1] === '\t')) start--;
    this.splice(start, e - start, '');
  }

  /** The style of the list (or entry) at `path`, read from the allow list it belongs to. */
  private styleOf(path: Path): Style {
    const i = path.lastIndexOf('allow');
    // Read once, from the file as it was: the entries this editor adds do not vote.
    const key = path.slice(0, i + 1).join('\0');
    const known = this.styles.get(key);
    if (known) return known;
    const style = this.readStyle(this.doc.getIn(path.slice(0, i + 1), true));
    this.styles.set(key, style);
    return style;
  }

  private readStyle(list: unknown): Style {
    const style: Style = { quote: new Map(Object.entries(DEFAULT_QUOTE)), flow: new Map(), entryFlow: false };
    if (!isSeq(list)) return style;
    const seen = new Set<string>();
    let flowMaps = 0;
    let maps = 0;
    const note = (k: string, t: Scalar.Type | undefined) => {
      if (t && !seen.has(k)) (seen.add(k), style.quote.set(k, t));
    };
    for (const it of list.items) {
      if (!isMap(it)) continue;
      maps++;
      if (it.flow) flowMaps++;
      for (const p of it.items) {
        if (!isScalar(p.key)) continue;
        const k = String(p.key.value);
        const v = p.value;
        if (isScalar(v)) note(k, v.type);
        if (isSeq(v) || isMap(v)) if (!style.flow.has(k)) style.flow.set(k, !!v.flow);
        if (isSeq(v) && isScalar(v.items[0])) note(`${k}[]`, v.items[0].type);
        if (isMap(v) && v.items[0] && isScalar(v.items[0].key)) note(`${k}{k}`, v.items[0].key.type);
        if (isMap(v) && v.items[0] && isScalar(v.items[0].value)) note(`${k}{v}`, (v.items[0].value as Scalar).type);
      }
    }
    style.entryFlow = maps > 0 && flowMaps * 2 >= maps;
    return style;
  }
}

function loadJs(text: string): unknown {
  return jsYaml.load(text) ?? {};
}

function pathText(p: Path): string {
  return p.map((k, i) => (typeof k === 'number' ? `[${k}]` : i ? `.${k}` : k)).join('') || '(the document)';
}

function applyJs(root: Record<string, unknown>, op: Op): void {
  let v: Record<string | number, unknown> = root;
  const path = op.kind === 'append' ? op.path.slice(0, -1) : op.path;
  const leaf = op.kind === 'append' ? op.path[op.path.length - 1] : op.key;
  for (const k of path) {
    if (v[k] === null || v[k] === undefined) v[k] = {};
    v = v[k] as Record<string | number, unknown>;
  }
  if (op.kind === 'append') v[leaf] = [...((v[leaf] as unknown[] | null) ?? []), ...op.items];
  else v[leaf] = op.value;
}
