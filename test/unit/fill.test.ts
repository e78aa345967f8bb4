import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HOLD_BACK, type FileBytes, type FillBudget, type FillSpec } from '../../src/core/fill.js';
import { BlobCache, type CacheOptions } from '../../src/core/cache.js';
import { FillShare, SpoolWindow } from '../../src/core/spool.js';
import { ClientSlots } from '../../src/core/slots.js';
import { AirlockError } from '../../src/core/errors.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

const hashes = new HashPool(2);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup(opts: CacheOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-fill-'));
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  return { dir, store, meta, cache: new BlobCache(store, meta, hashes, opts) };
}

const NO_LIMITS: FillBudget = { minRate: 0, windowMs: 1000, deadlineMs: 0, abandonMs: 0, finishBytes: 0 };

/** An upstream whose bytes the test releases by hand. */
function controlled(size?: number) {
  const body = new PassThrough();
  let opens = 0;
  const open = async (): Promise<{ body: Readable; size?: number }> => {
    opens++;
    return { body, size };
  };
  return { body, open, opens: () => opens };
}

function collect(r: Readable): { data: () => Buffer; done: Promise<Error | null> } {
  const chunks: Buffer[] = [];
  r.on('data', (c) => chunks.push(c));
  const done = new Promise<Error | null>((res) => {
    r.on('end', () => res(null));
    r.on('error', (e) => res(e));
  });
  return { data: () => Buffer.concat(chunks), done };
}

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));
/** Wait until `cond` holds (a loaded machine may take longer than a tick to spool and serve), at most 5 s. */
async function until(cond: () => boolean): Promise<void> {
  for (const end = Date.now() + 5000; !cond() && Date.now() < end;) await tick(10);
}

describe('verified fill', () => {
  it('holds back the tail until the digest checks, then releases it', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(1024 * 1024);
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open });
    const got = collect(served.body);
    up.body.write(bytes.subarray(0, bytes.length - 10));
    await until(() => got.data().length > 0);
    await tick();
    // Everything but the held-back tail may flow; never the end of the file.
    expect(got.data().length).toBeLessThanOrEqual(bytes.length - HOLD_BACK);
    expect(got.data().length).toBeGreaterThan(0);
    up.body.end(bytes.subarray(bytes.length - 10));
    expect(await got.done).toBeNull();
    expect(got.data().equals(bytes)).toBe(true);
    expect(served.cache).toBe('miss');
    await cache.idle();
    expect(await cache.cachedSize(sha(bytes))).toBe(bytes.length);
    const hit = await cache.fetch({ sha256: sha(bytes), open: up.open });
    expect(hit.cache).toBe('hit');
    hit.body.destroy();
  });

  it('on a mismatch errors every reader before the last bytes, and stores nothing', async () => {
    const { cache, store, dir } = await setup();
    const bytes = randomBytes(512 * 1024);
    const up = controlled();
    const spec: FillSpec = { sha256: sha(bytes), open: up.open };
    const a = await cache.fetch(spec);
    const b = await cache.fetch(spec);
    expect([a.cache, b.cache]).toEqual(['miss', 'join']);
    const ra = collect(a.body);
    const rb = collect(b.body);
    const tampered = Buffer.from(bytes);
    tampered[tampered.length - 1] ^= 1;
    up.body.end(tampered);
    const [ea, eb] = await Promise.all([ra.done, rb.done]);
    expect(ea?.message).toMatch(/expected sha256:/);
    expect(eb?.message).toMatch(/expected sha256:/);
    expect(ra.data().length).toBeLessThanOrEqual(bytes.length - HOLD_BACK);
    expect(rb.data().length).toBeLessThanOrEqual(bytes.length - HOLD_BACK);
    expect(up.opens()).toBe(1);
    expect(await store.stat(sha(bytes))).toBeNull();
    await tick();
    expect(readdirSync(join(dir, 'spool'))).toEqual([]);
    await expect(a.settled).rejects.toThrow(/DIGEST|expected sha256/);
  });

  it('refuses a body longer than declared, and a declared size that disagrees with the index', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(1000);
    const up = controlled(500);
    const s = await cache.fetch({ sha256: sha(bytes), open: up.open });
    const r = collect(s.body);
    up.body.end(bytes);
    expect((await r.done)?.message).toMatch(/more than the 500 bytes/);
    const up2 = controlled(999);
    await expect(cache.fetch({ sha256: sha(bytes), size: 1000, open: up2.open })).rejects.toThrow(/declares 999 bytes/);
  });

  it('shares one upstream transfer among concurrent readers that each stream as bytes arrive', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(4 * 1024 * 1024);
    const up = controlled(bytes.length);
    const spec: FillSpec = { sha256: sha(bytes), size: bytes.length, open: up.open };
    const readers = await Promise.all(Array.from({ length: 16 }, () => cache.fetch(spec)));
    const got = readers.map((s) => collect(s.body));
    up.body.write(bytes.subarray(0, 2 * 1024 * 1024));
    await tick(100);
    for (const g of got) expect(g.data().length).toBeGreaterThan(1024 * 1024);
    up.body.end(bytes.subarray(2 * 1024 * 1024));
    await Promise.all(got.map((g) => g.done));
    for (const g of got) expect(g.data().equals(bytes)).toBe(true);
    expect(up.opens()).toBe(1);
    await cache.idle();
    expect(cache.inflightCount()).toBe(0);
  });

  it('serves a range of an in-flight fill', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(300_000);
    const up = controlled(bytes.length);
    const s = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open }, { kind: 'from', start: 1000, end: 1999 });
    const r = collect(s.body);
    up.body.end(bytes);
    expect(await r.done).toBeNull();
    expect(s.range).toEqual({ start: 1000, end: 1999 });
    expect(r.data().equals(bytes.subarray(1000, 2000))).toBe(true);
  });

  it('releases the tail on verification, before the commit (fsync, rename) completes', async () => {
    const { store, meta } = await setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A store whose commit waits for the test: the reader must finish regardless.
    const slow = Object.assign(Object.create(Object.getPrototypeOf(store)), store, {
      putFile: async (sha256: string, path: string) => {
        await gate;
        return store.putFile(sha256, path);
      },
    });
    const cache = new BlobCache(slow, meta, hashes);
    const bytes = randomBytes(200_000);
    const up = controlled(bytes.length);
    const s = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open });
    const r = collect(s.body);
    up.body.end(bytes);
    expect(await r.done).toBeNull();
    expect(r.data().equals(bytes)).toBe(true);
    // Not yet in the store: a request now joins the fill and is served from its spool file.
    expect(await store.stat(sha(bytes))).toBeNull();
    const joined = await cache.fetch({ sha256: sha(bytes), open: up.open });
    expect(joined.cache).toBe('join');
    const j = collect(joined.body);
    expect(await j.done).toBeNull();
    expect(j.data().equals(bytes)).toBe(true);
    release();
    await cache.idle();
    expect(await store.stat(sha(bytes))).toMatchObject({ size: bytes.length });
    const hit = await cache.fetch({ sha256: sha(bytes), open: up.open });
    expect(hit.cache).toBe('hit');
    hit.body.destroy();
  });

  it('refills when a blob file vanished behind its descriptor', async () => {
    const { cache, store } = await setup();
    const bytes = randomBytes(1000);
    const up = controlled(bytes.length);
    const s = await cache.fetch({ sha256: sha(bytes), open: up.open });
    up.body.end(bytes);
    await collect(s.body).done;
    await cache.idle();
    await store.delete(sha(bytes));
    const up2 = controlled(bytes.length);
    const again = await cache.fetch({ sha256: sha(bytes), open: up2.open });
    expect(again.cache).toBe('miss');
    up2.body.end(bytes);
    const r = collect(again.body);
    await r.done;
    expect(r.data().equals(bytes)).toBe(true);
  });

  it('an inspector follows the download: nothing before its release, then the stream, its verdict before the tail', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(1024 * 1024);
    const up = controlled(bytes.length);
    let released = false;
    let endSeen = -1;
    const inspect = {
      judge: async (file: FileBytes, release: () => void) => {
        // Reads wait for the bytes: the head first, then the end of the file.
        expect((await file.read(0, 4)).equals(bytes.subarray(0, 4))).toBe(true);
        release();
        released = true;
        endSeen = (await file.read(bytes.length - 8, 8)).length;
      },
    };
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open, inspect });
    const got = collect(served.body);
    up.body.write(bytes.subarray(0, 3));
    await tick();
    expect(released).toBe(false);
    expect(got.data().length).toBe(0);
    up.body.write(bytes.subarray(3, bytes.length - 10));
    await served.gate;
    await until(() => got.data().length > 0);
    await tick();
    expect(released).toBe(true);
    expect(got.data().length).toBeGreaterThan(0);
    expect(got.data().length).toBeLessThanOrEqual(bytes.length - HOLD_BACK);
    up.body.end(bytes.subarray(bytes.length - 10));
    expect(await got.done).toBeNull();
    expect(endSeen).toBe(8);
    expect(got.data().equals(bytes)).toBe(true);
  });

  it('an inspector refusal before release rejects the gate (no byte); after release it cuts before the end', async () => {
    const { cache } = await setup();
    const early = randomBytes(256 * 1024);
    const up1 = controlled(early.length);
    let kept1 = 0;
    const refuse = {
      judge: async (file: FileBytes) => {
        await file.read(0, 16);
        throw new AirlockError('CONTENT_REFUSED', 'bad head');
      },
      refusedVerified: async () => void kept1++,
    };
    const s1 = await cache.fetch({ sha256: sha(early), size: early.length, open: up1.open, inspect: refuse });
    up1.body.write(early.subarray(0, 100));
    await expect(s1.gate).rejects.toThrow(/bad head/);
    s1.body.destroy();
    // The download goes on to its digest; only then is the refusal kept (and nothing is cached).
    expect(kept1).toBe(0);
    up1.body.end(early.subarray(100));
    await cache.idle();
    expect(kept1).toBe(1);
    expect(await cache.cachedSize(sha(early))).toBeUndefined();

    const late = randomBytes(1024 * 1024);
    const up2 = controlled(late.length);
    let kept2 = 0;
    const lateRefuse = {
      judge: async (file: FileBytes, release: () => void) => {
        release();
        await file.read(late.length - 2000, 1);
        throw new AirlockError('CONTENT_REFUSED', 'bad tail');
      },
      refusedVerified: async () => void kept2++,
    };
    // The upstream sends other bytes than the expected ones: the refusal was not about the file, and is not kept.
    const s2 = await cache.fetch({ sha256: sha(late), size: late.length, open: up2.open, inspect: lateRefuse });
    const got = collect(s2.body);
    const tampered = Buffer.from(late);
    tampered[10] ^= 1;
    // All but the last 1,000 bytes: the refusal comes near the end, before the digest can be known.
    up2.body.write(tampered.subarray(0, late.length - 1000));
    expect(String(await got.done)).toMatch(/bad tail/);
    expect(got.data().length).toBeLessThan(late.length);
    up2.body.end(tampered.subarray(late.length - 1000));
    await cache.idle();
    expect(kept2).toBe(0);
    expect(await cache.cachedSize(sha(late))).toBeUndefined();
  });

  it('checks a small blob on every read from the store: a rotted one is forgotten (and fetched again by its caller), never returned', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-fill-'));
    const store = await FsBlobStore.create(dir);
    const meta = new SqliteMetaStore(':memory:');
    const corrupt: string[] = [];
    const cache = new BlobCache(store, meta, hashes, { onCorrupt: (d, got) => corrupt.push(`${d} ${got}`) });
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] }));
    const hex = await cache.putSmall(manifest);
    expect((await cache.readSmall(hex, 1 << 20))!.equals(manifest)).toBe(true);
    const rotted = Buffer.from(manifest);
    rotted[3] ^= 0x20;
    writeFileSync(store.pathOf(hex), rotted);
    expect(await cache.readSmall(hex, 1 << 20)).toBeNull();
    expect(corrupt).toEqual([`${hex} ${sha(rotted)}`]);
    expect(await cache.cachedSize(hex)).toBeUndefined();
    expect(existsSync(store.pathOf(hex))).toBe(false);
  });

  it('cuts an upstream that drips below the minimum rate, and one past its deadline; nothing is cached', async () => {
    const { cache, meta } = await setup({ budget: { ...NO_LIMITS, minRate: 64 * 1024, windowMs: 300 } });
    const bytes = randomBytes(1 << 20);
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open });
    const got = collect(served.body);
    // 1 KiB every 50 ms: 20 KiB/s, a chunk far more often than any between-chunks timeout.
    const drip = setInterval(() => up.body.write(randomBytes(1024)), 50);
    const t0 = Date.now();
    const err = await got.done;
    clearInterval(drip);
    expect(err?.message).toMatch(/upstream too slow .* below the minimum of 65536 \(transfers\.min_rate\)/);
    expect(Date.now() - t0).toBeLessThan(2000);
    await expect(served.settled).rejects.toThrow(/too slow/);
    expect(await meta.getBlob(sha(bytes))).toBeNull();

    const { cache: c2 } = await setup({ budget: { ...NO_LIMITS, deadlineMs: 300 } });
    const up2 = controlled(bytes.length);
    const s2 = await c2.fetch({ sha256: sha(bytes), size: bytes.length, open: up2.open });
    const g2 = collect(s2.body);
    const fast = setInterval(() => up2.body.write(randomBytes(4096)), 10);
    const e2 = await g2.done;
    clearInterval(fast);
    expect(e2?.message).toMatch(/still running after 0 s \(transfers\.deadline\)/);
  });

  it('cancels a download nobody reads after the grace, finishes one nearly done, keeps one that is kept, and a retry within the grace rejoins', async () => {
    const { cache, meta } = await setup({ budget: { ...NO_LIMITS, abandonMs: 200, finishBytes: 100 * 1024 } });
    const bytes = randomBytes(1 << 20);
    // A client reads a little, then hangs up: the download is cancelled, nothing is cached.
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open });
    up.body.write(bytes.subarray(0, 200 * 1024));
    await tick();
    served.body.destroy();
    await expect(served.settled).rejects.toThrow(/cancelled after \d+ bytes: no client was waiting for it/);
    expect(cache.inflightCount()).toBe(0);
    expect(await meta.getBlob(sha(bytes))).toBeNull();

    // A retry within the grace joins the same download, which then completes.
    const upR = controlled(bytes.length);
    const first = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: upR.open });
    upR.body.write(bytes.subarray(0, 300 * 1024));
    first.body.destroy();
    await tick(50);
    const retry = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: upR.open });
    expect(retry.cache).toBe('join');
    const got = collect(retry.body);
    await tick(300);
    upR.body.end(bytes.subarray(300 * 1024));
    expect(await got.done).toBeNull();
    expect(got.data().equals(bytes)).toBe(true);
    expect(upR.opens()).toBe(1);

    // Nearly done when abandoned: finished and cached (cheaper than a retry's refetch).
    const small = randomBytes(300 * 1024);
    const upN = controlled(small.length);
    const near = await cache.fetch({ sha256: sha(small), size: small.length, open: upN.open });
    upN.body.write(small.subarray(0, 250 * 1024));
    await tick();
    near.body.destroy();
    await tick(300);
    upN.body.end(small.subarray(250 * 1024));
    expect(await near.committed).toBe(true);

    // Kept (the image gate reads a layer no client asked for): not cancelled.
    const kept = randomBytes(1 << 20);
    const upK = controlled(kept.length);
    const k = await cache.fetch({ sha256: sha(kept), size: kept.length, open: upK.open, keep: true });
    k.body.destroy();
    upK.body.write(kept.subarray(0, 1000));
    await tick(300);
    upK.body.end(kept.subarray(1000));
    expect(await k.committed).toBe(true);
  });

  it('answers a range of a cold file only once the file has verified; a whole read gets all but the tail before the digest', async () => {
    const { cache } = await setup({ budget: NO_LIMITS });
    const bytes = randomBytes(1 << 20);
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open }, { kind: 'from', start: 0, end: 0 });
    const got = collect(served.body);
    up.body.write(bytes.subarray(0, 1024));
    await tick();
    // The range's byte has arrived, but the file has not verified: nothing yet.
    expect(got.data().length).toBe(0);
    // A whole-file reader gets all but the last HOLD_BACK bytes of the file before the digest.
    const whole = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open });
    const all = collect(whole.body);
    up.body.write(bytes.subarray(1024, bytes.length - 1));
    await until(() => all.data().length === bytes.length - HOLD_BACK);
    expect(all.data().length).toBe(bytes.length - HOLD_BACK);
    expect(got.data().length).toBe(0);
    up.body.end(bytes.subarray(bytes.length - 1));
    expect(await all.done).toBeNull();
    expect(all.data().equals(bytes)).toBe(true);
    expect(await got.done).toBeNull();
    expect(got.data().equals(bytes.subarray(0, 1))).toBe(true);
  });

  it('cuts a range of a cold file whose digest fails, having sent none of its bytes', async () => {
    const { cache } = await setup({ budget: NO_LIMITS });
    const bytes = randomBytes(1 << 20);
    const bad = Buffer.from(bytes);
    bad[10] ^= 0xff;
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open }, { kind: 'from', start: 0, end: 99 });
    const got = collect(served.body);
    up.body.end(bad);
    expect(await got.done).toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(got.data().length).toBe(0);
  });

  it('keeps a fill that a range waits for to its end, though the range client gives up (its retry finds the blob)', async () => {
    const { cache, meta } = await setup({ budget: { ...NO_LIMITS, abandonMs: 100, finishBytes: 0 } });
    const bytes = randomBytes(1 << 20);
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open }, { kind: 'from', start: 0, end: 99 });
    up.body.write(bytes.subarray(0, 1000));
    await tick();
    served.body.destroy();
    await tick(300);
    expect(cache.inflightCount()).toBe(1);
    up.body.end(bytes.subarray(1000));
    expect(await served.committed).toBe(true);
    expect(await meta.getBlob(sha(bytes))).not.toBeNull();
  });

  it('bounds new upstream downloads per client: the next waits for one of its own, others are not held, a long wait is a 429', async () => {
    const slots = new ClientSlots(2, 300);
    const { cache } = await setup({ budget: NO_LIMITS, slots });
    const files = [0, 1, 2, 3].map(() => randomBytes(200 * 1024));
    const ups = files.map((f) => controlled(f.length));
    const fetchFor = (i: number, client: string) => cache.fetch({ sha256: sha(files[i]), size: files[i].length, open: ups[i].open }, undefined, { client });
    const a = await fetchFor(0, 'ci-bot');
    await fetchFor(1, 'ci-bot');
    expect(slots.inUse('ci-bot')).toBe(2);
    // Another client is not held by ci-bot's share.
    const other = await fetchFor(2, 'alice');
    expect(other.cache).toBe('miss');
    // ci-bot's third waits for one of its own to end, then starts.
    let started = false;
    const third = fetchFor(3, 'ci-bot').then((s) => ((started = true), s));
    await tick(50);
    expect(started).toBe(false);
    const ga = collect(a.body);
    ups[0].body.end(files[0]);
    await ga.done;
    expect((await third).cache).toBe('miss');
    // A fourth that waits longer than queue_wait is refused.
    const fourth = randomBytes(1000);
    await expect(cache.fetch({ sha256: sha(fourth), size: 1000, open: controlled(1000).open }, undefined, { client: 'ci-bot' })).rejects.toMatchObject({
      code: 'TOO_MANY_REQUESTS',
      status: 429,
    });
    // Joining a download under way takes no slot.
    expect((await fetchFor(1, 'ci-bot')).cache).toBe('join');
  });
});

describe('fill memory (spool.ts)', () => {
  it("splits one cache's memory among its running fills (1 MiB alone, never under 128 KiB), each owner counting its own", () => {
    const a = new FillShare();
    const b = new FillShare();
    expect(a.perFill()).toBe(1 << 20);
    for (let i = 0; i < 16; i++) a.started();
    expect(a.perFill()).toBe(512 << 10);
    for (let i = 0; i < 84; i++) a.started();
    expect(a.perFill()).toBe(128 << 10);
    // Another owner's fills do not count against this one (the count was module-wide before).
    expect(b.perFill()).toBe(1 << 20);
    for (let i = 0; i < 100; i++) a.stopped();
    expect(a.perFill()).toBe(1 << 20);
  });

  it('keeps the chunks last written, at most the bound (at least the last chunk), and slices them by position', () => {
    const w = new SpoolWindow();
    const c = (n: number, fill: number) => Buffer.alloc(n, fill);
    w.add(0, [c(10, 1), c(10, 2)], 100);
    w.add(20, [c(10, 3)], 25);
    // Trimmed to the 25-byte bound from the oldest: 10..30 kept, one chunk's slice at a time.
    expect(w.slice(0, 30)).toBeNull();
    expect(w.slice(10, 30)).toEqual(c(10, 2));
    expect(w.slice(22, 30)).toEqual(c(8, 3));
    expect(w.slice(22, 25)).toEqual(c(3, 3));
    expect(w.slice(30, 40)).toBeNull();
    w.add(30, [c(50, 4)], 10);
    expect(w.slice(30, 80)).toEqual(c(50, 4));
    w.clear();
    expect(w.slice(30, 80)).toBeNull();
  });
});
