import { AirlockError } from './errors.js';
import type { CacheOptions } from './cache-types.js';
import type { FillLease } from './fill.js';
import type { BlobIndex } from '../storage/meta-store.js';

/**
 * The fleet lease of a new fill (none for a single process: the cache's inflight map is its single
 * flight): taken before the upstream transfer, renewed while it runs, released at its end; while
 * another replica holds it, this one waits for its release and then finds the blob in the shared store.
 */
export function fleetLease(
  fleet: CacheOptions['fleet'],
  meta: BlobIndex,
  warn: (fields: object, msg: string) => (e: unknown) => void,
  sha256: string,
): FillLease | undefined {
  if (!fleet) return undefined;
  const stale = fleet.staleMs ?? 15_000;
  let renew: NodeJS.Timeout | undefined;
  let held = false;
  const who = { digest: sha256, owner: fleet.owner };
  const renewFailed = warn(who, 'fill lease could not be renewed: another replica may take it over and fetch the same blob');
  // One warning per run of failed renewals (they come every staleMs / 3), not one per attempt.
  let failing = false;
  const renewLease = () =>
    fleet.leases.renewLease(sha256, fleet.owner).then(
      () => (failing = false),
      (e) => {
        if (!failing) renewFailed(e);
        failing = true;
      },
    );
  return {
    acquire: async () => {
      const until = Date.now() + (fleet.waitMs ?? 3_600_000);
      for (;;) {
        if (await fleet.leases.takeLease(sha256, fleet.owner, stale)) {
          held = true;
          renew = setInterval(() => void renewLease(), Math.floor(stale / 3));
          renew.unref();
          return 'held';
        }
        // Another replica is filling it: wait for its release, then it is in the shared store
        // (or, if that fill failed or its replica died, this one takes the lease and fills).
        await fleet.leases.awaitRelease(sha256, Math.min(stale, Math.max(1, until - Date.now())));
        if (await meta.getBlob(sha256)) return 'elsewhere';
        if (Date.now() >= until) throw new AirlockError('UPSTREAM_UNAVAILABLE', `another replica has been filling sha256:${sha256} for too long`);
      }
    },
    release: () => {
      if (renew) clearInterval(renew);
      const failed = warn(who, 'fill lease could not be released: other replicas wait for it to go stale before fetching this blob');
      if (held) void fleet.leases.releaseLease(sha256, fleet.owner).catch(failed);
      held = false;
    },
  };
}
