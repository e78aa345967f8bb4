import { AirlockError } from './errors.js';
import type { CacheOptions } from './cache-types.js';
import type { FillLease, FillSpec } from './fill.js';
import { openPeer, peerBody, type PeerAnswer } from './peer-stream.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { BlobIndex } from '../storage/meta-store.js';

/** Each fleet's releases on the wire (the store answers over the network): shutdown waits for them. */
const releasing = new WeakMap<object, Set<Promise<void>>>();

/** Resolves once every lease this fleet let go is released in the store (cache.shutdown: closing the store next must not lose one). */
export async function leasesReleased(fleet: CacheOptions['fleet']): Promise<void> {
  const pending = fleet && releasing.get(fleet);
  while (pending && pending.size > 0) await Promise.all(pending);
}

function onTheWire(fleet: object, release: Promise<void>): void {
  const pending = releasing.get(fleet) ?? new Set();
  releasing.set(fleet, pending.add(release));
  void release.then(() => pending.delete(release));
}

/**
 * The fleet lease of a new fill (none for a single process: the cache's inflight map is its single
 * flight): taken before the upstream transfer, renewed while it runs, released at its end; while
 * another replica holds it, this one streams that replica's fill (fleet.peer, peer-stream.ts) or
 * waits for its release and then finds the blob in the shared store.
 */
export function fleetLease(
  fleet: CacheOptions['fleet'],
  meta: BlobIndex,
  store: BlobStore,
  warn: (fields: object, msg: string) => (e: unknown) => void,
  spec: FillSpec,
): FillLease | undefined {
  if (!fleet) return undefined;
  const { sha256 } = spec;
  const stale = fleet.staleMs ?? 15_000;
  const peer = fleet.peer;
  let renew: NodeJS.Timeout | undefined;
  let held = false;
  /** The filler's first answer, when this fill streams another replica's. */
  let streamed: PeerAnswer | undefined;
  let refused = false;
  /**
   * Aborted at the release (the fill ended, or was cancelled while it waited): a lease taken after
   * it is let go at once, and a request to the filling replica or a wait under way ends.
   */
  const ended = new AbortController();
  const over = () => ended.signal.aborted;
  const cancelled = () => new AirlockError('CANCELLED', `the fill of sha256:${sha256} ended while it waited for the fleet's lease`);
  const until = Date.now() + (fleet.waitMs ?? 3_600_000);
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
  const release = (): void => {
    ended.abort();
    if (renew) clearInterval(renew);
    const failed = warn(who, 'fill lease could not be released: other replicas wait for it to go stale before fetching this blob');
    if (held) onTheWire(fleet, fleet.leases.releaseLease(sha256, fleet.owner).catch(failed));
    held = false;
  };
  const take = async (): Promise<boolean> => {
    if (!(await fleet.leases.takeLease(sha256, fleet.owner, stale, peer?.addr))) return false;
    held = true;
    if (over()) {
      release();
      throw cancelled();
    }
    renew = setInterval(() => void renewLease(), Math.floor(stale / 3));
    renew.unref();
    return true;
  };
  /** The address of the replica holding the lease now, when it streams its fills and is not this one. */
  const holder = async (): Promise<string | undefined> => {
    const h = peer ? await fleet.leases.leaseHolder(sha256) : null;
    return h && h.owner !== fleet.owner && h.addr ? h.addr : undefined;
  };
  return {
    acquire: async () => {
      for (;;) {
        if (await take()) return 'held';
        // Another replica is filling it: stream its fill, or wait for its release, then it is in the
        // shared store (or, if that fill failed or its replica died, this one takes the lease and fills).
        const addr = await holder();
        if (over()) throw cancelled();
        if (addr && peer) {
          const a = await openPeer(addr, sha256, 0, peer.secret, ended.signal, stale);
          if (over()) {
            if ('res' in a) a.res.destroy();
            throw cancelled();
          }
          if ('res' in a) {
            streamed = a;
            return 'peer';
          }
          // Once per fill (it asks again every second while the lease is held).
          if (!refused) warn({ ...who, filler: addr }, 'could not stream the fill of the replica filling this blob: waiting for its commit instead')(a.refused);
          refused = true;
        }
        await fleet.leases.awaitRelease(sha256, Math.min(addr ? 1000 : stale, Math.max(1, until - Date.now())), ended.signal);
        if (over()) throw cancelled();
        if (await meta.getBlob(sha256)) return 'elsewhere';
        if (Date.now() >= until) throw new AirlockError('UPSTREAM_UNAVAILABLE', `another replica has been filling sha256:${sha256} for too long`);
      }
    },
    peer: (signal) => {
      if (!streamed || !peer) throw new AirlockError('INTERNAL', 'no filling replica to stream from');
      return peerBody(
        streamed,
        {
          sha256,
          secret: peer.secret,
          idleMs: stale,
          deadline: until,
          stored: async () => (await meta.getBlob(sha256))?.size,
          openStored: (start, end) => store.open(sha256, { start, end }),
          take,
          openUpstream: (s) => spec.open(s),
          holder,
          waitRelease: (ms, signal) => fleet.leases.awaitRelease(sha256, ms, signal),
          warn: (fields, msg, why) => warn(fields, msg)(why),
        },
        signal,
      );
    },
    committedElsewhere: (signal) => {
      // Streamed from the filler and never taken over: the filler commits the blob. Resolves once it
      // has (or its lease went stale), saying whether the blob is in the store.
      if (!streamed || held) return undefined;
      return (async () => {
        await fleet.leases.awaitRelease(sha256, 2 * stale, signal);
        return Boolean(await meta.getBlob(sha256));
      })();
    },
    fromPeer: () => streamed !== undefined,
    release,
  };
}
