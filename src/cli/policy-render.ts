import { isDeepStrictEqual } from 'node:util';
import jsYaml from 'js-yaml';
import type { Scalar } from 'yaml';

/**
 * How the policy editor (./policy-edit.ts) writes what it adds, in the style of the neighbours:
 * scalars plain or quoted as the list quotes them, entries in flow or block style, and the comment
 * an entry may carry (an accepted look-alike). Pure text out.
 */

const COMMENT = Symbol('comment');

/**
 * An entry with a comment line written above it (in a flow list written on one line: above that line), e.g.
 * why a look-alike name was accepted. The comment is no part of the value (not enumerable).
 */
export function withComment<T extends Record<string, Val>>(entry: T, comment: string): T {
  return Object.defineProperty({ ...entry }, COMMENT, { value: comment, enumerable: false });
}

/** What a pin writes: strings, lists of strings and maps of these. */
export type Val = string | string[] | { [k: string]: Val };

/** How the entries of one list write their fields: quoting per field, flow or block per field and for the entries. */
export interface Style {
  quote: Map<string, Scalar.Type>;
  flow: Map<string, boolean>;
  entryFlow: boolean;
}

// ---- rendering, in the style of the neighbours ----

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_./=<>~!+@-]*$/;

/** A string as a YAML scalar: plain when that reads back as the same string in any context, else quoted. */
export function scalarText(v: string, type: Scalar.Type | string): string {
  if (type === 'QUOTE_SINGLE') return `'${v.replace(/'/g, "''")}'`;
  if (type === 'PLAIN' && PLAIN.test(v) && jsYaml.load(v) === v && isDeepStrictEqual(jsYaml.load(`[${v}]`), [v])) return v;
  return JSON.stringify(v);
}

export function quoteOf(style: Style, key: string): Scalar.Type {
  return style.quote.get(key) ?? 'PLAIN';
}

/**
 * A value in flow style, written under `field`: a string takes the quoting of that field (`f`,
 * `f[]` for list items, `f{k}`/`f{v}` for the keys and values of a map field); an object in a list
 * is an entry (its values quoted per key), an object under a field is a map of that field.
 */
export function flowText(v: Val | Val[], style: Style, field = ''): string {
  if (typeof v === 'string') return scalarText(v, quoteOf(style, field));
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === 'string' ? flowText(x, style, `${field}[]`) : flowText(x, style, ''))).join(', ')}]`;
  const parts = Object.entries(v).map(([k, x]) =>
    field === ''
      ? `${scalarText(k, 'PLAIN')}: ${flowText(x, style, k)}`
      : `${scalarText(k, quoteOf(style, `${field}{k}`))}: ${typeof x === 'string' ? flowText(x, style, `${field}{v}`) : flowText(x, style, k)}`,
  );
  return `{ ${parts.join(', ')} }`;
}

/** The comments (withComment) of the entries in a value, in order, each on one line. */
export function notesIn(v: Val | Val[]): string[] {
  if (typeof v === 'string') return [];
  if (Array.isArray(v)) return v.flatMap(notesIn);
  const own = (v as { [COMMENT]?: string })[COMMENT];
  return [...(own ? [own.replace(/\s+/g, ' ')] : []), ...Object.values(v).flatMap(notesIn)];
}

const FLOW_WIDTH = 160;

/** One list item at column `dash`: a flow entry when its neighbours are (and it fits on a line), else a block. */
export function blockItem(v: Val, dash: number, style: Style, field: string): string {
  const pad = ' '.repeat(dash);
  const note = typeof v === 'object' && !Array.isArray(v) ? (v as { [COMMENT]?: string })[COMMENT] : undefined;
  if (note) return `${pad}# ${note.replace(/\s+/g, ' ')}\n${blockItem({ ...(v as Record<string, Val>) }, dash, style, field)}`;
  if (typeof v === 'string') return `${pad}- ${scalarText(v, quoteOf(style, `${field}[]`))}\n`;
  if (Array.isArray(v)) return `${pad}- ${flowText(v, style, field)}\n`;
  const flow = `${pad}- ${flowText(v, style)}`;
  if (style.entryFlow && flow.length <= FLOW_WIDTH) return flow + '\n';
  const lines = Object.entries(v).map(([k, x]) => blockPair(k, x, dash + 2, style));
  return pad + '- ' + lines.join('').slice(dash + 2);
}

/** `key: value` at column `indent` (inside map field `ctx`, if any); nested values in block style unless the neighbours write that field in flow. */
export function blockPair(key: string, v: Val | Val[], indent: number, style: Style, ctx = ''): string {
  const pad = ' '.repeat(indent);
  const k = scalarText(key, ctx ? quoteOf(style, `${ctx}{k}`) : 'PLAIN');
  if (typeof v === 'string') return `${pad}${k}: ${scalarText(v, quoteOf(style, ctx ? `${ctx}{v}` : key))}\n`;
  const strings = Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (style.flow.get(key) && (strings || !Array.isArray(v))) return `${pad}${k}: ${flowText(v, style, key)}\n`;
  if (Array.isArray(v)) return `${pad}${k}:\n${v.map((x) => blockItem(x, indent + 2, style, key)).join('')}`;
  return `${pad}${k}:\n${Object.entries(v)
    .map(([kk, x]) => blockPair(kk, x, indent + 2, style, key))
    .join('')}`;
}
