import type { ByteRange } from '../storage/blob-store.js';

/** A parsed single-range `Range: bytes=...` header, not yet resolved against a size. */
export type RangeSpec = { kind: 'from'; start: number; end?: number } | { kind: 'suffix'; length: number };

/**
 * Parse a Range header. Only one `bytes=` range is supported (what pip, uv, huggingface_hub and
 * container runtimes send); anything else returns undefined and the full body is served, as
 * RFC 9110 allows.
 */
export function parseRange(header: string | undefined | null): RangeSpec | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, a, b] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') return { kind: 'suffix', length: Number(b) };
  const start = Number(a);
  if (b === '') return { kind: 'from', start };
  const end = Number(b);
  if (end < start) return undefined;
  return { kind: 'from', start, end };
}

/** Resolve against a known size: a range, 'unsatisfiable' (416), or undefined (serve it all). */
export function resolveRange(spec: RangeSpec | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!spec) return undefined;
  if (spec.kind === 'suffix') {
    if (spec.length === 0) return 'unsatisfiable';
    if (size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - spec.length), end: size - 1 };
  }
  if (spec.start >= size) return 'unsatisfiable';
  return { start: spec.start, end: Math.min(spec.end ?? size - 1, size - 1) };
}
