import { describe, expect, it } from 'vitest';
import { ifRangeHolds, requestedRange } from '../../src/core/range.js';

describe('If-Range (RFC 9110 13.1.5)', () => {
  const etag = '"sha256:abc"';
  const lastModified = 'Tue, 01 Dec 2026 10:00:00 GMT';

  it('keeps the Range only for the strong ETag or the exact Last-Modified date', () => {
    expect(ifRangeHolds(undefined, { etag })).toBe(true);
    expect(ifRangeHolds(etag, { etag })).toBe(true);
    expect(ifRangeHolds(' "sha256:abc" ', { etag })).toBe(true);
    expect(ifRangeHolds('"sha256:abd"', { etag })).toBe(false);
    expect(ifRangeHolds(`W/${etag}`, { etag })).toBe(false);
    expect(ifRangeHolds(etag, { etag: `W/${etag}` })).toBe(false);
    expect(ifRangeHolds(etag, {})).toBe(false);
    expect(ifRangeHolds(lastModified, { etag, lastModified })).toBe(true);
    expect(ifRangeHolds('Tue, 01 Dec 2026 10:00:01 GMT', { etag, lastModified })).toBe(false);
    expect(ifRangeHolds(lastModified, { etag })).toBe(false);
    expect(ifRangeHolds('not a date', { etag, lastModified })).toBe(false);
  });

  it('drops the Range when the If-Range does not hold', () => {
    expect(requestedRange('bytes=0-9', etag, { etag })).toEqual({ kind: 'from', start: 0, end: 9 });
    expect(requestedRange('bytes=0-9', '"other"', { etag })).toBeUndefined();
    expect(requestedRange('bytes=0-9', undefined, { etag })).toEqual({ kind: 'from', start: 0, end: 9 });
  });
});
