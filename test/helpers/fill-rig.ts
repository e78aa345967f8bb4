import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { Fill, type FillBudget, type Inspector } from '../../src/core/fill.js';
import { FillShare } from '../../src/core/spool.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/** A Fill fed by hand from a PassThrough, and socket-like slow sinks: the rig of the fill-body tests. */

/** No rate, deadline or abandon limits: the tests pace the upstream themselves. */
export const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };
export const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
export async function until(cond: () => boolean, ms = 8000): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await tick(10);
}
export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const hashes = new HashPool(2);
const dirs: string[] = [];

/** Remove the fills' directories (afterAll). */
export function removeFillDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A running fill of `size` random bytes whose upstream is `up`; `unsized`: the upstream declares no size. */
export async function fillOf(size: number, opts: { sha256?: string; share?: FillShare; inspect?: Inspector; unsized?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-fill-rig-'));
  dirs.push(dir);
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  const up = new PassThrough({ highWaterMark: 64 << 10 });
  const bytes = randomBytes(size);
  const declared = opts.unsized ? undefined : size;
  const fill = new Fill(
    { sha256: opts.sha256 ?? sha(bytes), size: declared, open: async () => ({ body: up as Readable, size: declared }), inspect: opts.inspect },
    store,
    meta,
    hashes,
    NO_LIMITS,
    undefined,
    opts.share ?? new FillShare(),
  );
  void fill.run();
  await fill.ready;
  /** Feed the upstream in `piece`-byte chunks as fast as the fill takes them (a paused fill stops it: the writes wait). */
  const send = async (from = 0, to = size, piece = 64 << 10) => {
    for (let at = from; at < to; at += piece) {
      if (!up.write(bytes.subarray(at, Math.min(to, at + piece)))) await new Promise((r) => up.once('drain', r));
    }
    if (to === size) up.end();
  };
  return { fill, up, bytes, send, meta };
}

/**
 * A socket-like Writable that collects what it is given, and takes it only when open (else its
 * buffer fills); `slow(ms)`: takes ms per 64 KiB.
 */
export function slowSink(hwm = 64 << 10) {
  const got: Buffer[] = [];
  let open = true;
  let delay = 0;
  let pending: (() => void) | null = null;
  const w = new Writable({
    highWaterMark: hwm,
    write(chunk: Buffer, _enc, cb) {
      got.push(Buffer.from(chunk));
      if (!open) pending = cb;
      else if (delay > 0) setTimeout(cb, Math.ceil((delay * chunk.length) / (64 << 10)));
      else cb();
    },
  });
  return {
    w,
    bytes: () => Buffer.concat(got),
    length: () => got.reduce((n, b) => n + b.length, 0),
    stop: () => (open = false),
    slow: (ms: number) => (delay = ms),
    go: () => {
      open = true;
      const p = pending;
      pending = null;
      p?.();
    },
  };
}
