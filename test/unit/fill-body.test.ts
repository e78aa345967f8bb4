import { afterAll, describe, expect, it } from 'vitest';
import { HOLD_BACK } from '../../src/core/fill.js';
import { FillBody, STALL_MS, tapStats } from '../../src/core/fill-body.js';
import { FillShare } from '../../src/core/spool.js';
import { fillOf, removeFillDirs, slowSink, tick, until } from '../helpers/fill-rig.js';

/**
 * A cold fill's whole-file clients (core/fill-body.ts): written from the fill's memory as bytes
 * arrive, moved to the spool once when they fall behind, the tail held for the digest and for the
 * caller's hook, the upstream paced by a lagging leader but never held by a stuck one.
 */

afterAll(removeFillDirs);

describe('a cold fill written to its clients from memory (FillBody)', () => {
  it('writes the leader from memory as bytes arrive, holds the tail for the digest and for the hook, exact bytes, never moved to the spool', async () => {
    const size = 8 << 20;
    const { fill, send, bytes } = await fillOf(size);
    const body = fill.reader() as FillBody;
    expect(body).toBeInstanceOf(FillBody);
    const sink = slowSink();
    let hooked = false;
    let release!: () => void;
    const hook = new Promise<void>((r) => (release = r));
    let passed = 0;
    const moved = tapStats.toSpool;
    const sent = body
      .holdLast(
        () => ((hooked = true), hook),
        (n) => (passed += n),
      )
      .sendTo(sink.w);
    await send(0, size);
    // Everything but the held-back tail went out before the digest; then the hook, before the last bytes.
    await until(() => hooked);
    expect(hooked).toBe(true);
    expect(sink.length()).toBeLessThanOrEqual(size - 1);
    expect(sink.length()).toBeGreaterThanOrEqual(size - HOLD_BACK - (64 << 10));
    release();
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(passed).toBe(size);
    expect(tapStats.toSpool).toBe(moved);
    expect(await fill.committed).toBe(true);
  });

  it('a burst larger than the window within one turn (a fast upstream) keeps a lone client in memory, exact bytes', async () => {
    // Clients are fed once per turn, or as soon as half a window arrived unfed: a fed-late client
    // whose next byte the burst pushed out of the window would be moved to the spool (more CPU per byte).
    const size = 8 << 20;
    const { fill, up, bytes } = await fillOf(size);
    const sink = slowSink();
    const moved = tapStats.toSpool;
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    // Pieces that do not divide the window (as a socket's reads do not): a turn's burst overshoots it.
    for (let at = 0; at < size; at += 60_000) up.write(bytes.subarray(at, at + 60_000));
    up.end();
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(tapStats.toSpool).toBe(moved);
    expect(await fill.committed).toBe(true);
  });

  it('on a digest mismatch cuts the leader before its last bytes, without calling the hook', async () => {
    const size = 4 << 20;
    const { fill, send } = await fillOf(size, { sha256: 'f'.repeat(64) });
    const sink = slowSink();
    let hooked = false;
    const sent = (fill.reader() as FillBody).holdLast(
      async () => void (hooked = true),
      () => {},
    );
    const result = sent.sendTo(sink.w).then(
      () => null,
      (e: Error) => e,
    );
    await send(0, size);
    const err = await result;
    expect((err as { code?: string } | null)?.code).toBe('DIGEST_MISMATCH');
    expect(hooked).toBe(false);
    expect(sink.length()).toBeLessThanOrEqual(size - HOLD_BACK);
    expect(await fill.committed).toBe(false);
  });

  it('one large upstream read arriving while the lone leader lags under half a window does not push its next bytes out (it stays in memory)', async () => {
    // Plain-HTTP upstream reads are up to 1 MiB (upstream/large-reads.ts), the window of a lone fill 1 MiB.
    const size = 4 << 20;
    const { fill, up, bytes } = await fillOf(size);
    const sink = slowSink();
    const moved = tapStats.toSpool;
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    const piece = (from: number, to: number) => (up.write(bytes.subarray(from, to)), tick(50));
    await piece(0, 100 << 10);
    await until(() => sink.length() === 100 << 10);
    sink.stop();
    // The leader writes this one and blocks on its socket; the next it cannot take (it lags 300 KiB, under half the window)...
    await piece(100 << 10, 300 << 10);
    await piece(300 << 10, 600 << 10);
    // ...and then a whole 1 MiB read arrives.
    await piece(600 << 10, (600 << 10) + (1 << 20));
    sink.go();
    for (let at = (600 << 10) + (1 << 20); at < size; at += 1 << 20) await piece(at, Math.min(size, at + (1 << 20)));
    up.end();
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(tapStats.toSpool).toBe(moved);
    expect(await fill.committed).toBe(true);
  });

  it('a small last read after a large one does not push out the held-back bytes a client waits at (it stays in memory to the end)', async () => {
    const size = (2 << 20) + (10 << 10);
    const { fill, up, bytes } = await fillOf(size);
    const sink = slowSink();
    const moved = tapStats.toSpool;
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    const piece = (from: number, to: number) => (up.write(bytes.subarray(from, to)), tick(50));
    await piece(0, 1 << 20);
    // A 1 MiB read ending 10 KiB before the end: the client sends all but the last HOLD_BACK bytes and waits...
    await piece(1 << 20, size - (10 << 10));
    await until(() => sink.length() === size - HOLD_BACK);
    // ...then the last 10 KiB arrive (the window's bound would keep only them).
    await piece(size - (10 << 10), size);
    up.end();
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(tapStats.toSpool).toBe(moved);
    expect(await fill.committed).toBe(true);
  });

  it('paces the upstream by a leader that lags (the window is not outrun), then goes on once it drains', async () => {
    const size = 8 << 20;
    const share = new FillShare();
    const { fill, send, bytes } = await fillOf(size, { share });
    const sink = slowSink();
    const moved = tapStats.toSpool;
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    const sending = send(0, size);
    await until(() => sink.length() > 1 << 20);
    sink.stop();
    // Blocked: the fill stops reading its upstream within about a window of the leader's position.
    await tick(300);
    const held = fill.received;
    await tick(300);
    expect(fill.received).toBe(held);
    expect(fill.received - sink.length()).toBeLessThanOrEqual(share.perFill() + (256 << 10));
    sink.go();
    await sending;
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(tapStats.toSpool).toBe(moved);
  });

  it('a leader stuck past the stall is moved to the spool: the upstream goes on to its digest without it, and it still gets exact bytes', async () => {
    const size = 8 << 20;
    const { fill, send, bytes } = await fillOf(size);
    const sink = slowSink();
    const moved = tapStats.toSpool;
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    const sending = send(0, size);
    await until(() => sink.length() > 1 << 20);
    sink.stop();
    await sending;
    await fill.settled;
    expect(fill.state).toBe('verified');
    expect(tapStats.toSpool).toBe(moved + 1);
    expect(sink.length()).toBeLessThan(size);
    sink.go();
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
  });

  it('a stuck follower does not hold the upstream or the leader; moved to the spool once, it still gets exact bytes', async () => {
    const size = 8 << 20;
    const { fill, send, bytes } = await fillOf(size);
    const lead = slowSink();
    const stuck = slowSink();
    const moved = tapStats.toSpool;
    const a = (fill.reader() as FillBody).sendTo(lead.w);
    const b = (fill.reader() as FillBody).sendTo(stuck.w);
    stuck.stop();
    const t0 = Date.now();
    await send(0, size);
    await a;
    // The leader finished while the stuck client held nothing: it waited at most the stall.
    expect(Date.now() - t0).toBeLessThan(STALL_MS + 6000);
    expect(lead.bytes().equals(bytes)).toBe(true);
    expect(stuck.length()).toBeLessThan(size);
    stuck.go();
    await b;
    expect(stuck.bytes().equals(bytes)).toBe(true);
    expect(tapStats.toSpool).toBe(moved + 1);
  });

  it('many slow readers (plain Readables that stop reading) each buffer at most about a window, and all get exact bytes', async () => {
    const size = 8 << 20;
    const { fill, send, bytes } = await fillOf(size);
    const readers = Array.from({ length: 16 }, () => fill.reader());
    const chunks = readers.map(() => [] as Buffer[]);
    // Each reads one chunk and then stops (a client that stalls).
    readers.forEach((r, i) => r.once('data', (c: Buffer) => (chunks[i].push(c), r.pause())));
    await send(0, size);
    await fill.settled;
    for (const r of readers) expect(r.readableLength).toBeLessThanOrEqual((1 << 20) + (64 << 10));
    const all = await Promise.all(
      readers.map(
        (r, i) =>
          new Promise<Buffer>((res, rej) => {
            r.on('data', (c: Buffer) => chunks[i].push(c));
            r.once('end', () => res(Buffer.concat(chunks[i])));
            r.once('error', rej);
            r.resume();
          }),
      ),
    );
    for (const got of all) expect(got.equals(bytes)).toBe(true);
  });

  it('a client that joins after the window moved on starts from the spool, and still streams ahead of the digest', async () => {
    const size = 8 << 20;
    const { fill, send, bytes } = await fillOf(size);
    const lead = slowSink();
    const a = (fill.reader() as FillBody).sendTo(lead.w);
    await send(0, 4 << 20);
    await until(() => fill.written >= 4 << 20);
    const moved = tapStats.toSpool;
    const late = slowSink();
    const b = (fill.reader() as FillBody).sendTo(late.w);
    await until(() => late.length() >= 3 << 20);
    expect(late.length()).toBeGreaterThanOrEqual(3 << 20);
    expect(fill.state).toBe('running');
    expect(tapStats.toSpool).toBe(moved + 1);
    await send(4 << 20, size);
    await Promise.all([a, b]);
    expect(late.bytes().equals(bytes)).toBe(true);
    expect(lead.bytes().equals(bytes)).toBe(true);
  });
});
