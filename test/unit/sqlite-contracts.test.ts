import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { consoleSessionStoreContract } from '../contract/console-sessions.js';
import { alertStoreContract } from '../contract/alert-store.js';
import { advisorySourcesContract } from '../contract/advisory-sources.js';
import { inventoryStoreContract } from '../contract/inventory-store.js';
import { blobStoreContract } from '../contract/blob-store.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import {
  advisoryStoreContract,
  aliasStoreContract,
  trustRootStoreContract,
  signerStoreContract,
  blobIndexContract,
  leaseStoreContract,
  ociStoreContract,
  pageCacheContract,
  pullLogContract,
  scanStoreContract,
  tokenStoreContract,
} from '../contract/meta-store.js';

/** The embedded SQLite backend held to every storage contract (test/contract/). */
const opened: SqliteMetaStore[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});
const fresh = async () => {
  const s = new SqliteMetaStore(join(mkdtempSync(join(tmpdir(), 'airlock-contract-')), 'meta.db'));
  opened.push(s);
  return s;
};

blobIndexContract('SQLite', fresh);
pageCacheContract('SQLite', fresh);
pullLogContract('SQLite', fresh);
ociStoreContract('SQLite', fresh);
scanStoreContract('SQLite', fresh);
tokenStoreContract('SQLite', fresh);
consoleSessionStoreContract('SQLite', fresh);
advisoryStoreContract('SQLite', fresh);
aliasStoreContract('SQLite', fresh);
trustRootStoreContract('SQLite', fresh);
signerStoreContract('SQLite', fresh);
leaseStoreContract('SQLite', fresh);
inventoryStoreContract('SQLite', async () => (await fresh()).inventories);
alertStoreContract('SQLite', async () => (await fresh()).alerts);
advisorySourcesContract('SQLite', async () => {
  const store = await fresh();
  const db = (store as unknown as { db: { prepare(sql: string): { all(): Record<string, unknown>[] }; exec(sql: string): void } }).db;
  return {
    store,
    rows: async (sql) => db.prepare(sql).all(),
    keepEverySource: async () => db.exec('CREATE TRIGGER keep_sources BEFORE DELETE ON advisory_generation_sources BEGIN SELECT RAISE(IGNORE); END'),
  };
});

blobStoreContract('filesystem', (opts) => FsBlobStore.create(mkdtempSync(join(tmpdir(), 'airlock-blobs-')), opts));

describe('filesystem store: the version of a stored file (what the nginx offload trusts between hashes, core/handover.ts)', () => {
  it('changes when the file is written in place or replaced, and not when it is only read', async () => {
    const s = await FsBlobStore.create(mkdtempSync(join(tmpdir(), 'airlock-blobs-')));
    const bytes = randomBytes(10_000);
    const h = createHash('sha256').update(bytes).digest('hex');
    const tmp = join(s.spoolDir, `${h}.part`);
    writeFileSync(tmp, bytes);
    await s.putFile(h, tmp);
    const v1 = (await s.stat(h))!.version;
    for await (const _ of await s.open(h));
    expect((await s.stat(h))!.version).toBe(v1);
    const rotted = Buffer.from(bytes);
    rotted[5] ^= 1;
    writeFileSync(s.pathOf(h), rotted);
    const v2 = (await s.stat(h))!.version;
    expect(v2).not.toBe(v1);
    const other = join(s.spoolDir, 'other');
    writeFileSync(other, bytes);
    renameSync(other, s.pathOf(h));
    expect((await s.stat(h))!.version).not.toBe(v2);
  });
});
