import { openEmbeddedMeta, openMeta } from '../backends.js';
import { verifyChain } from '../core/chain.js';
import { AirlockError } from '../core/errors.js';
import type { LoadedConfig } from '../config/load.js';
import type { ChainLink, MetaStore, PullRecord, StoredPullRecord } from '../storage/meta-store.js';

export interface MoveReport {
  pulls: number;
  tokens: number;
  advisories: number;
  head: string | null;
}

/**
 * `airlock migrate --from sqlite --to postgres`: copy what cannot be fetched again from the
 * embedded SQLite database (data_dir/airlock.db) into the configured PostgreSQL: the pull record
 * row for row with its own hashes (so the chain verifies there, and its head is unchanged),
 * tokens (revoked ones stay revoked) and imported advisories. Caches (blob descriptors, pages,
 * manifests, scans, inventories) are not copied: they refill, verified, on the next pulls. The
 * target must hold no pull record yet (the chain must start where the copied one starts).
 */
export async function moveSqliteToPostgres(loaded: LoadedConfig): Promise<MoveReport> {
  if (loaded.config.storage.meta !== 'postgres')
    throw new AirlockError('BAD_REQUEST', 'the configuration must name the target: storage.meta: postgres (and its connection string variable)');
  const from = openEmbeddedMeta(loaded);
  const to: MetaStore = await openMeta(loaded);
  try {
    const source = await verifyChain(from);
    if (source.problem)
      throw new AirlockError(
        'BAD_REQUEST',
        `the SQLite record does not verify (row ${source.problem.id}: ${source.problem.message}); fix or keep it before moving it`,
      );
    if ((await to.listPulls({ limit: 1 })).length > 0) throw new AirlockError('BAD_REQUEST', 'the PostgreSQL record is not empty; move into an empty database');
    // Rows keep the hashes they were written with: the link just hands them back.
    const keep: ChainLink = (_head, rec) => {
      const r = rec as StoredPullRecord;
      return { prevHash: r.prevHash as string, hash: r.hash as string };
    };
    let batch: PullRecord[] = [];
    let pulls = 0;
    for await (const r of from.scanPulls()) {
      batch.push(r);
      if (batch.length === 500) {
        await to.appendPulls(batch, keep);
        pulls += batch.length;
        batch = [];
      }
    }
    if (batch.length) await to.appendPulls(batch, keep);
    pulls += batch.length;
    let tokens = 0;
    for (const t of await from.listTokens()) {
      await to.createToken({ name: t.name, hash: t.hash, admin: t.admin });
      if (t.revokedAt !== null) await to.revokeToken(t.name);
      tokens++;
    }
    // Stored as an import stores it: '' for a record with no `modified` (or a null one); PostgreSQL refused the NULL.
    const adv = (await from.listAdvisories()).map((record) => {
      const o = JSON.parse(record) as { id: string; modified?: unknown };
      return { id: o.id, modified: typeof o.modified === 'string' ? o.modified : '', record };
    });
    await to.putAdvisories(adv);
    const target = await verifyChain(to);
    if (target.problem || target.head !== source.head)
      throw new AirlockError('INTERNAL', `the moved record does not verify in PostgreSQL (${target.problem?.message ?? 'its head differs'})`);
    return { pulls, tokens, advisories: adv.length, head: target.head };
  } finally {
    await from.close();
    await to.close();
  }
}
