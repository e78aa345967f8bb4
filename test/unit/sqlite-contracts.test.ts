import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { inventoryStoreContract } from '../contract/inventory-store.js';

/** The embedded SQLite backend held to the storage contracts (test/contract/). */
const opened: SqliteMetaStore[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});
const fresh = () => {
  const s = new SqliteMetaStore(join(mkdtempSync(join(tmpdir(), 'airlock-contract-')), 'meta.db'));
  opened.push(s);
  return s;
};

inventoryStoreContract('SQLite', async () => fresh().inventories);
