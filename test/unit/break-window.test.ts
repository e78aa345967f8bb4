import { type Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { HOLD_BACK, type Fill, type Inspector } from '../../src/core/fill.js';
import { FillBody, STALL_MS, tapStats } from '../../src/core/fill-body.js';
import { FillShare } from '../../src/core/spool.js';
import { fillOf as rigFill, removeFillDirs, slowSink, tick, until as untilMs } from '../helpers/fill-rig.js';

/**
 * Attacks on the fill's window keeping the bytes its clients still need (SpoolWindow.add's
 * keepFrom, TapSet.keepFrom/pacer): the window must stay bounded whatever the clients do (about
 * half its bound and one upstream read past it), every client must get exact bytes (the tail only
 * after the digest and the hook), and no gone or stuck client may hold the upstream forever.
 * The window's bytes are measured after every add (its private field).
 */

const until = (cond: () => boolean, ms = 15000) => untilMs(cond, ms);
afterAll(removeFillDirs);

interface WindowPeek {
  bytes: number;
  add: (pos: number, bufs: Buffer[], bound: number, keepFrom?: number) => void;
}

/** The largest the fill's window ever was right after an add (and the bound then). */
function watchWindow(fill: Fill): { max: () => number; now: () => number; overBy: () => number } {
  const w = (fill as unknown as { window: WindowPeek }).window;
  const add = w.add.bind(w);
  let max = 0;
  let over = -Infinity;
  w.add = (pos, bufs, bound, keepFrom) => {
    add(pos, bufs, bound, keepFrom);
    max = Math.max(max, w.bytes);
    over = Math.max(over, w.bytes - bound);
  };
  return { max: () => max, now: () => w.bytes, overBy: () => over };
}

/** The rig's fill (helpers/fill-rig.ts) with its window watched from its first add. */
async function fillOf(size: number, opts: { share?: FillShare; inspect?: Inspector; unsized?: boolean } = {}) {
  const f = await rigFill(size, opts);
  return { ...f, win: watchWindow(f.fill) };
}

/** A plain Readable consumer (as cache.fetch's callers and tests read a body): collects until its end or error. */
function collect(r: Readable) {
  const got: Buffer[] = [];
  r.on('data', (c: Buffer) => got.push(c));
  const done = new Promise<Error | null>((res) => {
    r.once('end', () => res(null));
    r.once('error', res);
  });
  return { data: () => Buffer.concat(got), done };
}

describe('the fill window keeping what its clients need stays bounded', () => {
  it('a client reading an inspected file before the inspector releases it (it waits at byte 0) does not keep the whole file in memory', async () => {
    // An inspector that releases only once it has read the end (code-bearing formats judge before any byte):
    // every client waits at 0 until then, so "keep from where a client waits" would keep every byte received.
    const size = 24 << 20;
    let released = false;
    const inspect: Inspector = {
      judge: async (file, release) => {
        await file.read(size - 8, 8);
        release();
        released = true;
      },
    };
    const { fill, send, bytes, win } = await fillOf(size, { inspect });
    // Read as cache.fetch's body is read before the gate (test/unit/fill.test.ts does so): a Readable.
    const got = collect(fill.reader());
    await send(0, size);
    expect(await got.done).toBeNull();
    expect(released).toBe(true);
    expect(got.data().equals(bytes)).toBe(true);
    // A lone fill's bound is 1 MiB: at most about that plus a read, never the file.
    expect(win.max()).toBeLessThanOrEqual((1 << 20) + HOLD_BACK + (64 << 10));
    expect(await fill.committed).toBe(true);
  });

  it('a leader that drains just before the stall each time paces the upstream within half a window and one read, never moved, exact bytes', async () => {
    const size = 12 << 20;
    const { fill, send, bytes, win } = await fillOf(size);
    const sink = slowSink();
    const moved = tapStats.toSpool;
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    // 1 MiB reads, as a lone plain-HTTP upstream reads (upstream/large-reads.ts).
    const sending = send(0, size, 1 << 20);
    await until(() => sink.length() > 1 << 20);
    for (let i = 0; i < 3; i++) {
      sink.stop();
      await tick(STALL_MS - 300);
      expect(win.now()).toBeLessThanOrEqual((1 << 19) + 2 * (1 << 20));
      sink.go();
      await tick(60);
    }
    await sending;
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(tapStats.toSpool).toBe(moved);
    // Half the 1 MiB bound plus one 1 MiB read (the leader always stops at a chunk's end).
    expect(win.max()).toBeLessThanOrEqual((1 << 19) + (1 << 20) + (64 << 10));
    expect(await fill.committed).toBe(true);
  }, 30000);

  it('a leader that drains a little at a time (slow socket, 1 MiB reads) keeps the window within half a window and one read, exact bytes', async () => {
    const size = 6 << 20;
    const { fill, send, bytes, win } = await fillOf(size);
    const sink = slowSink(16 << 10);
    sink.slow(3);
    const sent = (fill.reader() as FillBody).sendTo(sink.w);
    await send(0, size, 1 << 20);
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    expect(win.max()).toBeLessThanOrEqual((1 << 19) + (1 << 20) + (64 << 10));
    expect(await fill.committed).toBe(true);
  }, 30000);

  it('a client waiting at the front beside a slow client and a range reader: the window stays bounded, all exact', async () => {
    const size = 12 << 20;
    const { fill, send, bytes, win } = await fillOf(size);
    const fast = slowSink();
    const slow = slowSink(16 << 10);
    slow.slow(2);
    const a = (fill.reader() as FillBody).sendTo(fast.w);
    const b = (fill.reader() as FillBody).sendTo(slow.w);
    const range = collect(fill.reader({ start: 1000, end: size - 1000 }));
    await send(0, size, 256 << 10);
    await Promise.all([a, b]);
    expect(await range.done).toBeNull();
    expect(fast.bytes().equals(bytes)).toBe(true);
    expect(slow.bytes().equals(bytes)).toBe(true);
    expect(range.data().equals(bytes.subarray(1000, size - 999))).toBe(true);
    expect(win.max()).toBeLessThanOrEqual((1 << 20) + (256 << 10));
  }, 30000);

  it('clients joining and leaving while a slow leader paces: bounded window, the survivors exact, the upstream never stuck', async () => {
    const size = 12 << 20;
    const { fill, send, bytes, win } = await fillOf(size);
    const lead = slowSink();
    lead.slow(1);
    const a = (fill.reader() as FillBody).sendTo(lead.w);
    const sending = send(0, size, 512 << 10);
    const others: Promise<void>[] = [];
    for (let i = 0; i < 6; i++) {
      await tick(80);
      const s = slowSink();
      if (i % 2) s.stop();
      const body = fill.reader() as FillBody;
      others.push(body.sendTo(s.w).catch(() => {}));
      // Half of them hang up (some stuck on a full socket, never drained).
      if (i % 3 === 0) setTimeout(() => s.w.destroy(), 150);
      else if (i % 2) setTimeout(() => s.go(), 300);
    }
    await sending;
    await a;
    await Promise.all(others);
    expect(lead.bytes().equals(bytes)).toBe(true);
    expect(win.max()).toBeLessThanOrEqual((1 << 20) + (512 << 10));
    expect(await fill.committed).toBe(true);
  }, 30000);

  it('50 fills at once with slow and stuck clients keep their windows within the fills memory and one read each', async () => {
    const share = new FillShare();
    const n = 50;
    const size = 2 << 20;
    const fills = await Promise.all(Array.from({ length: n }, () => fillOf(size, { share })));
    const sinks = fills.map((_, i) => {
      const s = slowSink(16 << 10);
      if (i % 3 === 0) s.stop();
      else s.slow(i % 5);
      return s;
    });
    const sent = fills.map((f, i) => (f.fill.reader() as FillBody).sendTo(sinks[i].w));
    let peak = 0;
    const sample = setInterval(() => {
      peak = Math.max(
        peak,
        fills.reduce((n, f) => n + f.win.now(), 0),
      );
    }, 5);
    // 128 KiB reads (large-reads.ts gives 50 busy connections at most that).
    const sending = fills.map((f) => f.send(0, size, 128 << 10));
    await tick(STALL_MS + 500);
    sinks.forEach((s) => s.go());
    await Promise.all(sending);
    await Promise.all(sent);
    clearInterval(sample);
    fills.forEach((f, i) => expect(sinks[i].bytes().equals(f.bytes)).toBe(true));
    for (const f of fills) expect(f.win.overBy()).toBeLessThanOrEqual(128 << 10);
    expect(peak).toBeLessThanOrEqual((8 << 20) + n * (128 << 10));
  }, 60000);
});

describe('the window still keeps what a waiting client needs, and nobody holds the upstream forever', () => {
  it('a file of unknown size (the hold-back counted from what arrived): small reads after large ones keep the lone client in memory, exact bytes, bounded', async () => {
    const size = (3 << 20) + (10 << 10);
    const { fill, up, bytes, win } = await fillOf(size, { unsized: true });
    const sink = slowSink();
    const moved = tapStats.toSpool;
    let hooked = -1;
    const sent = (fill.reader() as FillBody)
      .holdLast(
        async () => void (hooked = sink.length()),
        () => {},
      )
      .sendTo(sink.w);
    const piece = (from: number, to: number) => (up.write(bytes.subarray(from, to)), tick(30));
    // 1 MiB reads, then small ones (the client is HOLD_BACK behind what arrived each time: the leader pacing), then large, then a small last one.
    const cuts = [0, 1 << 20, 2 << 20, (2 << 20) + (7 << 10), (2 << 20) + (14 << 10), (2 << 20) + (21 << 10), (3 << 20) - (40 << 10), size - (10 << 10), size];
    for (let k = 1; k < cuts.length; k++) await piece(cuts[k - 1], cuts[k]);
    up.end();
    await sent;
    expect(sink.bytes().equals(bytes)).toBe(true);
    // The hook ran before the last HOLD_BACK bytes went out.
    expect(hooked).toBeLessThanOrEqual(size - HOLD_BACK);
    expect(tapStats.toSpool).toBe(moved);
    expect(win.max()).toBeLessThanOrEqual((1 << 20) + (1 << 20) + HOLD_BACK);
    expect(await fill.committed).toBe(true);
  });

  it('a pacing leader that hangs up while it holds the upstream paused frees it at once (not after the stall)', async () => {
    const size = 8 << 20;
    const { fill, send, bytes, win } = await fillOf(size);
    const lead = slowSink();
    const other = slowSink();
    const a = (fill.reader() as FillBody).sendTo(lead.w).catch((e: Error) => e);
    // The first 2 MiB taken, then the leader stops before the rest is sent (sent all at once, a fast
    // leader could take the whole file before it was stopped: no pause left to free).
    await send(0, 2 << 20, 256 << 10);
    await until(() => lead.length() === 2 << 20);
    lead.stop();
    const sending = send(2 << 20, size, 256 << 10);
    await tick(200);
    const held = fill.received;
    await tick(200);
    expect(fill.received).toBe(held);
    expect(fill.received).toBeLessThan(size);
    // A second client joins (it waits for bytes: the slow leader must no longer pace), then the leader goes.
    const b = (fill.reader() as FillBody).sendTo(other.w);
    const t0 = Date.now();
    lead.w.destroy();
    await sending;
    await b;
    expect(Date.now() - t0).toBeLessThan(STALL_MS);
    expect(((await a) as { code?: string }).code).toBe('CANCELLED');
    expect(other.bytes().equals(bytes)).toBe(true);
    expect(win.max()).toBeLessThanOrEqual((1 << 20) + (256 << 10));
    expect(await fill.committed).toBe(true);
  });

  it('a range reader (no client of the set) and a stuck whole-file client: the upstream is not held, the window stays bounded', async () => {
    const size = 8 << 20;
    const { fill, send, bytes, win } = await fillOf(size);
    const stuck = slowSink();
    stuck.stop();
    const a = (fill.reader() as FillBody).sendTo(stuck.w);
    const range = collect(fill.reader({ start: 0, end: size - 1 }));
    const t0 = Date.now();
    await send(0, size, 1 << 20);
    await fill.settled;
    // Nobody paced it: the range reader waits for bytes, so the stuck client is outrun, not waited for.
    expect(Date.now() - t0).toBeLessThan(STALL_MS);
    expect(await range.done).toBeNull();
    expect(range.data().equals(bytes)).toBe(true);
    stuck.go();
    await a;
    expect(stuck.bytes().equals(bytes)).toBe(true);
    expect(win.max()).toBeLessThanOrEqual(2 << 20);
  });
});
