// Section 9. Bulk approval (issue 27): `airlock pin pypi -r` on a 100-release lock file, local index.
import { join } from 'node:path';

export async function run(ctx) {
  const { ROOT, S, work, row } = ctx;
  const { pinBulkTimes } = await import(join(ROOT, 'bench', 'pin-bulk.mjs'));
  const t = await pinBulkTimes(ROOT, work, 100, S.reps);
  row('pin -r, 100-file lock file (local index)', 'first pin: 100 added, one policy write', t.first);
  row('pin -r, 100-file lock file (local index)', 'again: 100 already allowed, nothing written', t.again);
  row('pin -r, 100-file lock file (local index)', 'beside it: one pin pypi NAME==VERSION', t.single);
}
