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

/**
 * Does a Range stand under this If-Range (RFC 9110 13.1.5)? With no If-Range, yes; with one, only
 * when it is the representation's strong ETag (a weak tag never matches) or its exact Last-Modified
 * date. Otherwise the Range is ignored and the whole representation sent (200): a client resuming
 * a download of something else must not splice a part of this one into it.
 */
export function ifRangeHolds(ifRange: string | undefined | null, v: { etag?: string; lastModified?: string }): boolean {
  if (ifRange === undefined || ifRange === null) return true;
  const tag = ifRange.trim();
  if (tag.startsWith('W/')) return false;
  if (tag.startsWith('"')) return v.etag !== undefined && !v.etag.startsWith('W/') && v.etag === tag;
  if (!v.lastModified) return false;
  const a = Date.parse(tag);
  return !Number.isNaN(a) && a === Date.parse(v.lastModified);
}

/** The Range a request asks for, if its If-Range (if any) still holds for these response headers. */
export function requestedRange(range: string | undefined | null, ifRange: string | undefined | null, headers: Record<string, string>): RangeSpec | undefined {
  return ifRangeHolds(ifRange, { etag: headers.etag, lastModified: headers['last-modified'] }) ? parseRange(range) : undefined;
}
