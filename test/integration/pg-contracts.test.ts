import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPulls, verifyChain } from '../../src/core/chain.js';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { inventoryStoreContract } from '../contract/inventory-store.js';
import {
  advisoryStoreContract,
  aliasStoreContract,
  blobIndexContract,
  leaseStoreContract,
  ociStoreContract,
  pageCacheContract,
  pullLogContract,
  scanStoreContract,
  tokenStoreContract,
} from '../contract/meta-store.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * The PostgreSQL backend held to every metadata contract the SQLite backend passes (the same
 * suites, test/contract/), on a real PostgreSQL 15 the test starts; each fresh store is its own
 * schema in that database.
 */
let pgsrv: TestPostgres;
const opened: PgMetaStore[] = [];
let seq = 0;
beforeAll(async () => {
  pgsrv = await startPostgres();
}, 60_000);
afterAll(async () => {
  for (const s of opened) await s.close();
  await pgsrv?.stop();
});
const fresh = async () => {
  const s = await PgMetaStore.open(pgsrv.url, { schema: `contract_${process.pid}_${seq++}` });
  opened.push(s);
  return s;
};

blobIndexContract('PostgreSQL', fresh);
pageCacheContract('PostgreSQL', fresh);
pullLogContract('PostgreSQL', fresh);
ociStoreContract('PostgreSQL', fresh);
scanStoreContract('PostgreSQL', fresh);
tokenStoreContract('PostgreSQL', fresh);
advisoryStoreContract('PostgreSQL', fresh);
aliasStoreContract('PostgreSQL', fresh);
leaseStoreContract('PostgreSQL', fresh);
inventoryStoreContract('PostgreSQL', async () => (await fresh()).inventories);

describe('PostgreSQL: what SQLite cannot show', () => {
  it('keeps one verifiable chain when several stores (replicas) append at once', async () => {
    const schema = `replicas_${process.pid}`;
    const replicas = await Promise.all([0, 1, 2].map(() => PgMetaStore.open(pgsrv.url, { schema, max: 4 })));
    opened.push(...replicas);
    const row = (i: number, r: number) => ({
      ts: 1_000 + i,
      client: `replica-${r}`,
      ecosystem: 'pypi' as const,
      name: 'x',
      cache: 'hit' as const,
      decision: 'allow' as const,
    });
    // 3 replicas x 40 batches of 5 rows, all at once.
    await Promise.all(
      replicas.flatMap((s, r) =>
        Array.from({ length: 40 }, (_, b) =>
          appendPulls(
            s,
            Array.from({ length: 5 }, (_, i) => row(b * 5 + i, r)),
          ),
        ),
      ),
    );
    const report = await verifyChain(replicas[0]);
    expect(report.rows).toBe(600);
    expect(report.problem).toBeUndefined();
  });

  it('migrates once when replicas start together, and again is a no-op', async () => {
    const schema = `migrate_${process.pid}`;
    const stores = await Promise.all([0, 1, 2, 3].map(() => PgMetaStore.open(pgsrv.url, { schema, max: 2 })));
    opened.push(...stores);
    // Every store reached the same version, and migrating again changes nothing.
    const versions = await Promise.all(stores.map((st) => st.migrate()));
    expect(new Set(versions).size).toBe(1);
    expect(versions[0]).toBeGreaterThan(0);
    expect(await stores[0].migrate()).toBe(versions[0]);
  });
});
