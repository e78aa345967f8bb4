import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { inventoryStoreContract } from '../contract/inventory-store.js';
import { blobStoreContract } from '../contract/blob-store.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import {
  advisoryStoreContract,
  aliasStoreContract,
  trustRootStoreContract,
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
advisoryStoreContract('SQLite', fresh);
aliasStoreContract('SQLite', fresh);
trustRootStoreContract('SQLite', fresh);
leaseStoreContract('SQLite', fresh);
inventoryStoreContract('SQLite', async () => (await fresh()).inventories);

blobStoreContract('filesystem', (opts) => FsBlobStore.create(mkdtempSync(join(tmpdir(), 'airlock-blobs-')), opts));
