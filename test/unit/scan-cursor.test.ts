import { describe, expect, it } from 'vitest';
import { decodePickle } from '../../src/scan/pickle.js';
import { bufferSource, Cursor, ScanError } from '../../src/scan/source.js';

/**
 * The cursor's synchronous read (u8Buffered), which the pickle loop uses for opcode bytes: it
 * answers only from the read-ahead buffer and never moves on a miss, so the awaited read after it
 * sees exactly what it would have seen alone.
 */
describe('Cursor.u8Buffered', () => {
  it('answers -1 and does not move until bytes are buffered, then reads them in order', async () => {
    const cur = new Cursor(bufferSource(Buffer.from([1, 2, 3])));
    expect(cur.u8Buffered()).toBe(-1);
    expect(cur.pos).toBe(0);
    expect(await cur.u8()).toBe(1);
    expect(cur.u8Buffered()).toBe(2);
    expect(cur.u8Buffered()).toBe(3);
    expect(cur.pos).toBe(3);
    expect(cur.u8Buffered()).toBe(-1);
    expect(cur.pos).toBe(3);
    await expect(cur.u8()).rejects.toThrow(ScanError);
  });

  it('stops at the end the cursor was given, not at the end of the buffer', async () => {
    // A source that answers with more than was asked for: the buffer then runs past the cursor's end.
    const bytes = Buffer.from([1, 2, 3, 4]);
    const cur = new Cursor({ size: 4, read: async (pos) => bytes.subarray(pos) }, 0, 2);
    expect(await cur.u8()).toBe(1);
    expect(cur.u8Buffered()).toBe(2);
    expect(cur.u8Buffered()).toBe(-1);
    expect(cur.pos).toBe(2);
  });

  it('lets a pickle larger than the 1 MiB read-ahead decode across buffer refills', async () => {
    // PROTO 2, then 600,000 x (BININT1 n, BINPUT n, POP): 3 MB, so the buffer is refilled twice, mid-opcode too.
    const ops = Buffer.alloc(600_000 * 5);
    for (let i = 0; i < 600_000; i++) ops.set([0x4b, i & 0xff, 0x71, i & 0xff, 0x30], i * 5);
    const pickle = Buffer.concat([Buffer.from([0x80, 0x02]), ops, Buffer.from([0x4e, 0x2e])]);
    expect(pickle.length).toBeGreaterThan(2 * (1 << 20));
    const r = await decodePickle(new Cursor(bufferSource(pickle)));
    expect(r.end).toBe(pickle.length);
    expect(r.opcodes).toBe(1 + 600_000 * 3 + 2);
    expect(r.protocol).toBe(2);
    // Truncated one byte short of STOP: the awaited read after a buffer miss still refuses.
    await expect(decodePickle(new Cursor(bufferSource(pickle.subarray(0, pickle.length - 1))))).rejects.toThrow(/truncated/);
  });
});
