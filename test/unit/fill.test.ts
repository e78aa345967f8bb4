import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HOLD_BACK, type FileBytes, type FillSpec } from '../../src/core/fill.js';
import { BlobCache } from '../../src/core/cache.js';
import { AirlockError } from '../../src/core/errors.js';
import { HashPool } from '../../src/core/hasher.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

const hashes = new HashPool(2);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-fill-'));
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  return { dir, store, meta, cache: new BlobCache(store, meta, hashes) };
}

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

describe('verified fill', () => {
  it('holds back the tail until the digest checks, then releases it', async () => {
    const { cache } = await setup();
    const bytes = randomBytes(1024 * 1024);
    const up = controlled(bytes.length);
    const served = await cache.fetch({ sha256: sha(bytes), size: bytes.length, open: up.open });
    const got = collect(served.body);
    up.body.write(bytes.subarray(0, bytes.length - 10));
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
    expect(await store.stat(sha(bytes))).toEqual({ size: bytes.length });
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
    const cache = new BlobCache(store, meta, hashes, undefined, (d, got) => corrupt.push(`${d} ${got}`));
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
});

