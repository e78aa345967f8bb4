/** A bundle nests a few levels; V8 takes seconds on megabytes of "[[[[" (measured: ~4 s for 4 MB), so depth is checked first. */
export const MAX_JSON_DEPTH = 64;

/**
 * Why JSON text is beyond bounds (nests deeper than `maxDepth`, or holds more than `maxValues`
 * arrays, objects and separated values), or null: one linear pass over the bytes, outside
 * strings, before JSON.parse is given them.
 */
export function jsonBeyond(buf: Buffer, maxValues: number, maxDepth = MAX_JSON_DEPTH): string | null {
  let depth = 0;
  let values = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `nests deeper than ${maxDepth} levels`;
      if (++values > maxValues) return `holds more than ${maxValues} JSON values`;
    } else if (c === 0x5d || c === 0x7d) depth--;
    else if (c === 0x2c || c === 0x3a) {
      if (++values > maxValues) return `holds more than ${maxValues} JSON values`;
    }
  }
  return null;
}

/** Whether JSON text nests deeper than `limit` (arrays and objects, outside strings). */
export function jsonTooDeep(buf: Buffer, limit = MAX_JSON_DEPTH): boolean {
  return jsonBeyond(buf, Infinity, limit) !== null;
}
