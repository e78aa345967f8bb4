import { Readable, Writable, pipeline } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { lastChunkAfter } from '../../src/http/serve-blob.js';

describe('the last chunk waits for the pull record', () => {
  it('holds the final chunk until the record is committed, then releases it', async () => {
    let commit!: () => void;
    const committed = new Promise<void>((r) => (commit = r));
    let called = false;
    const got: string[] = [];
    let finished = false;
    const sink = new Writable({
      write(chunk, _e, cb) {
        got.push(String(chunk));
        cb();
      },
    });
    pipeline(
      Readable.from([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]),
      lastChunkAfter(() => {
        called = true;
        return committed;
      }),
      sink,
      () => (finished = true),
    );
    await new Promise((r) => setTimeout(r, 30));
    expect(called).toBe(true);
    expect(got).toEqual(['a', 'b']);
    expect(finished).toBe(false);
    commit();
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual(['a', 'b', 'c']);
    expect(finished).toBe(true);
  });
  it('never releases the last chunk when the source fails', async () => {
    const got: string[] = [];
    const err = await new Promise<Error | undefined>((resolve) => {
      const src = new Readable({ read() {} });
      pipeline(
        src,
        lastChunkAfter(async () => {}),
        new Writable({
          write(c, _e, cb) {
            got.push(String(c));
            cb();
          },
        }),
        (e) => resolve(e ?? undefined),
      );
      src.push(Buffer.from('a'));
      src.push(Buffer.from('b'));
      setTimeout(() => src.destroy(new Error('digest mismatch')), 10);
    });
    expect(err?.message).toBe('digest mismatch');
    expect(got).toEqual(['a']);
  });
});
