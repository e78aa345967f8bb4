import { afterAll, beforeAll } from 'vitest';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { recordAttacks } from '../contract/record-attacks.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/** The batched-prune attacks (test/contract/record-attacks.ts) on a real PostgreSQL 15, each store a schema of its own. */
let pgsrv: TestPostgres;
const opened: PgMetaStore[] = [];
beforeAll(async () => {
  pgsrv = await startPostgres();
}, 60_000);
afterAll(async () => {
  for (const s of opened) await s.close();
  await pgsrv?.stop();
});

recordAttacks('PostgreSQL', async () => {
  const s = await PgMetaStore.open(pgsrv.url, { schema: `record_attacks_${process.pid}_${opened.length}` });
  opened.push(s);
  return s;
});
