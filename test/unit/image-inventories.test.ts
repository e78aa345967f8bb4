import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/core/cache.js';
import { HashPool } from '../../src/core/hasher.js';
import { FACTS_VERSION } from '../../src/image/facts.js';
import { LayerReaderPool } from '../../src/image/reader-pool.js';
import { ImageInventories } from '../../src/oci/inventory.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { debianBase, layerOf, rootfs } from '../helpers/layers.js';

/** Layer facts are kept only for bytes whose digest matched, and read once per layer. */
const hashes = new HashPool(1);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-inv-'));
  const store = await FsBlobStore.create(dir);
  const meta = new SqliteMetaStore(':memory:');
  const cache = new BlobCache(store, meta, hashes);
  const inv = new ImageInventories(cache, meta.inventories, pino({ level: 'silent' }));
  opened.push(inv);
  return { meta, cache, inv, store };
}
const opened: ImageInventories[] = [];
afterAll(() => opened.forEach((i) => i.close()));

/** An upstream that sends `bytes` (in 64 KiB chunks) and counts how often it was asked. */
function upstream(bytes: Buffer) {
  let opens = 0;
  const open = async () => {
    opens++;
    const chunks = [];
    for (let i = 0; i < bytes.length; i += 65536) chunks.push(bytes.subarray(i, i + 65536));
    return { body: Readable.from(chunks), size: bytes.length };
  };
  return { open, opens: () => opens };
}

describe('image inventories', () => {
  const layer = layerOf(debianBase());
  const digest = `sha256:${sha(layer)}`;

  it("reads a layer while a client's fill streams it, and never fetches it again to judge the image", async () => {
    const { cache, inv, meta } = await setup();
    const up = upstream(layer);
    const served = await cache.fetch({ sha256: sha(layer), size: layer.length, open: up.open, observe: inv.observer(sha(layer)) });
    const got: Buffer[] = [];
    for await (const c of served.body) got.push(c as Buffer);
    expect(Buffer.concat(got).equals(layer)).toBe(true);
    const i = await inv.inventory(`sha256:${'a'.repeat(64)}`, [{ digest, size: layer.length }], () => up.open);
    expect(up.opens()).toBe(1);
    expect(i.packages.filter((p) => p.type === 'deb').length).toBeGreaterThan(50);
    expect(await meta.inventories.getLayerFacts(sha(layer))).not.toBeNull();
    // Stored: a second image with the same layer reads nothing.
    await inv.inventory(`sha256:${'b'.repeat(64)}`, [{ digest, size: layer.length }], () => up.open);
    expect(up.opens()).toBe(1);
  });

  it('keeps no facts for a layer whose bytes do not match its digest, and the image is not judged', async () => {
    const { inv, meta } = await setup();
    const tampered = layerOf(debianBase({ 'etc/motd': 'tampered\n' }));
    const up = upstream(tampered);
    await expect(inv.inventory(`sha256:${'c'.repeat(64)}`, [{ digest, size: tampered.length }], () => up.open)).rejects.toThrow(
      /upstream bytes have sha256:[0-9a-f]{64}, expected sha256:/,
    );
    expect(await meta.inventories.getLayerFacts(sha(layer))).toBeNull();
    expect(await meta.inventories.getInventory(`sha256:${'c'.repeat(64)}`)).toBeNull();
  });

  it('reads a layer cached before inventories existed from the store, once', async () => {
    const { cache, inv, meta } = await setup();
    const small = layerOf(rootfs({ 'lib/apk/db/installed': 'P:musl\nV:1.2.5-r0\no:musl\n\n' }));
    const up = upstream(small);
    const served = await cache.fetch({ sha256: sha(small), size: small.length, open: up.open });
    for await (const _ of served.body) void _;
    await served.committed;
    const i = await inv.inventory(`sha256:${'d'.repeat(64)}`, [{ digest: `sha256:${sha(small)}`, size: small.length }], () => up.open);
    expect(up.opens()).toBe(1);
    expect(i.packages.map((p) => `${p.type}:${p.name}`)).toEqual(['apk:musl']);
    expect((await meta.inventories.getLayerFacts(sha(small)))!.version).toBe(FACTS_VERSION);
  });

  it("reads the layers the gate fetches in the reader at normal priority, a client's pull's in the background one", async () => {
    const asked: string[] = [];
    class Recording extends LayerReaderPool {
      override read(...a: Parameters<LayerReaderPool['read']>) {
        asked.push(a[3] ?? 'background');
        return super.read(...a);
      }
    }
    const dir = mkdtempSync(join(tmpdir(), 'airlock-inv-'));
    const meta = new SqliteMetaStore(':memory:');
    const cache = new BlobCache(await FsBlobStore.create(dir), meta, hashes);
    const inv = new ImageInventories(cache, meta.inventories, pino({ level: 'silent' }), new Recording());
    opened.push(inv);
    const up = upstream(layer);
    await inv.inventory(`sha256:${'e'.repeat(64)}`, [{ digest, size: layer.length }], () => up.open);
    const other = layerOf(rootfs({ 'lib/apk/db/installed': 'P:musl\nV:1.2.5-r0\no:musl\n\n' }));
    const served = await cache.fetch({ sha256: sha(other), size: other.length, open: upstream(other).open, observe: inv.observer(sha(other)) });
    for await (const _ of served.body) void _;
    await served.committed;
    expect(asked).toEqual(['urgent', 'background']);
  });

  it("answers the gate once the layer is verified, before its commit is over; the client's layer request then joins the committing fill and gets the verified bytes", async () => {
    const { meta, store } = await setup();
    // The commit's rename into the store is held until the test lets it go (as a long fsync would hold it).
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    let renamed = false;
    const slow = Object.assign(Object.create(store) as FsBlobStore, {
      putFile: async (sha256: string, path: string) => {
        await held;
        await store.putFile(sha256, path);
        renamed = true;
      },
    });
    const cache = new BlobCache(slow, meta, hashes);
    const inv = new ImageInventories(cache, meta.inventories, pino({ level: 'silent' }));
    opened.push(inv);
    const up = upstream(layer);
    const i = await inv.inventory(`sha256:${'d'.repeat(64)}`, [{ digest, size: layer.length }], () => up.open);
    expect(i.packages.filter((p) => p.type === 'deb').length).toBeGreaterThan(50);
    expect(renamed).toBe(false);
    expect(await meta.getBlob(sha(layer))).toBeNull();
    const served = await cache.fetch({ sha256: sha(layer), size: layer.length, open: up.open });
    expect(served.cache).toBe('join');
    const got: Buffer[] = [];
    for await (const c of served.body) got.push(c as Buffer);
    // Every byte, verified, while the commit still waits.
    expect(Buffer.concat(got).equals(layer)).toBe(true);
    expect(renamed).toBe(false);
    letGo();
    expect(await served.committed).toBe(true);
    expect(renamed).toBe(true);
    expect(up.opens()).toBe(1);
  });
});
