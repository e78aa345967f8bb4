import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { recordAttacks } from '../contract/record-attacks.js';

/** The batched-prune attacks (test/contract/record-attacks.ts) on SQLite. */
const dir = mkdtempSync(join(tmpdir(), 'airlock-record-attacks-'));
const opened: SqliteMetaStore[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

recordAttacks('SQLite', async () => {
  const s = new SqliteMetaStore(join(dir, `meta-${opened.length}.db`));
  opened.push(s);
  return s;
});
