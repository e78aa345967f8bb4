import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFollower } from '../../src/image/follow.js';

/**
 * The layer reader follows a spool file as it is written; a gzip'd one is decompressed from a few
 * reused buffers (issue 29). Whatever the order of writes and reads, the bytes are the file's.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-follow-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function all(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Write `bytes` to a new file in steps of `step` (the first of `first`), telling the follower after each (a tick apart). */
async function writeFollowed(bytes: Buffer, step: number, f: (path: string) => FileFollower, read: (ff: FileFollower) => Promise<Buffer>, first = step) {
  const path = join(dir, `f${Math.random()}`);
  const fd = openSync(path, 'w');
  const ff = f(path);
  const got = read(ff);
  for (let off = 0; off < bytes.length;) {
    const n = Math.min(off === 0 ? first : step, bytes.length - off);
    writeSync(fd, bytes, off, n, off);
    ff.progress((off += n));
    await new Promise((r) => setImmediate(r));
  }
  closeSync(fd);
  return got;
}

describe('following a file as it is written', () => {
  const plain = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20, 'text that compresses '), randomBytes(123457)]);
  const gz = gzipSync(plain, { level: 1 });

  it('decompresses a gzip file through reused buffers, whatever the write steps, to the same bytes', async () => {
    // The first write of one byte: the gzip magic arrives in two writes.
    for (const [first, step] of [
      [1, 4096],
      [777_777, 777_777],
      [gz.length, gz.length],
    ]) {
      const got = await writeFollowed(
        gz,
        step,
        (p) => new FileFollower(p, gz.length),
        async (ff) => {
          const d = await ff.decompressed(64 << 10);
          expect(d.gunzipped).toBe(true);
          return all(d.body);
        },
        first,
      );
      expect(got.equals(plain)).toBe(true);
    }
  });

  it('hands a file that is not gzip over as it is', async () => {
    const got = await writeFollowed(
      plain,
      500_000,
      (p) => new FileFollower(p, plain.length),
      async (ff) => {
        const d = await ff.decompressed();
        expect(d.gunzipped).toBe(false);
        return all(d.body);
      },
    );
    expect(got.equals(plain)).toBe(true);
  });

  it('fails the decompressed stream when the fill fails midway, and when the gzip is corrupt', async () => {
    const path = join(dir, 'aborted');
    const fd = openSync(path, 'w');
    writeSync(fd, gz, 0, 100_000, 0);
    closeSync(fd);
    const ff = new FileFollower(path, gz.length);
    ff.progress(100_000);
    const d = await ff.decompressed(16 << 10);
    const read = all(d.body);
    setTimeout(() => ff.abort(new Error('the fill failed')), 20);
    await expect(read).rejects.toThrow('the fill failed');

    const bad = Buffer.from(gz);
    bad.fill(0x55, 5000, 9000);
    const p2 = join(dir, 'corrupt');
    const fd2 = openSync(p2, 'w');
    writeSync(fd2, bad);
    closeSync(fd2);
    const ff2 = new FileFollower(p2, bad.length);
    ff2.progress(bad.length);
    await expect(all((await ff2.decompressed()).body)).rejects.toThrow();
  });
});
