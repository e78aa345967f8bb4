import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { AirlockError } from './errors.js';
import type { UpstreamBody } from './fill-spec.js';

/**
 * Replicas stream a fill under way to each other (issue 29). A replica whose client asks for a
 * blob another replica is filling (the lease row names the filler's address, lease.ts) asks that
 * replica for the fill's bytes as they arrive, and feeds them to a fill of its own as if they came
 * from upstream: its own spool, its own SHA-256, its own hold-back of the last bytes, and no commit
 * (the filler commits to the shared store). A peer is trusted for nothing but speed: what it sends
 * is verified here like any upstream body. Requests and answers are authenticated by the fleet's
 * shared secret (HMAC-SHA256): a request without it is refused, an answer without it is not read.
 *
 * If the filler goes away mid-stream, the feed resumes at the byte it reached, from the committed
 * object, from whichever replica holds the lease now, or from upstream once this replica takes
 * the lease itself (the first bytes skipped): never a byte twice, never one missing; anything
 * else fails the fill, and its clients are cut before the held-back tail.
 */

/** The internal route a filling replica answers on (http/peer.ts): GET PEER_PATH<sha256>?from=<offset>. */
export const PEER_PATH = '/-/fleet/fills/';
/** How far a request's clock may be from the answering replica's (replays are bounded by it). */
const CLOCK_SKEW_MS = 60_000;

const hmac = (secret: Buffer, text: string): string => createHmac('sha256', secret).update(text).digest('hex');

const same = (a: string, b: string): boolean => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** The request header: a time, a nonce, and the HMAC of both with the method and path. */
export function signPeerRequest(secret: Buffer, path: string, now = Date.now()): { header: string; nonce: string } {
  const nonce = randomBytes(16).toString('hex');
  return { header: `t=${now},n=${nonce},s=${hmac(secret, `GET\n${path}\n${now}\n${nonce}`)}`, nonce };
}

/** Check a request header: its nonce, or why it is refused. */
export function checkPeerRequest(secret: Buffer, path: string, header: string | undefined, now = Date.now()): { nonce: string } | { refused: string } {
  const m = header ? /^t=(\d{1,15}),n=([0-9a-f]{32}),s=([0-9a-f]{64})$/.exec(header) : null;
  if (!m) return { refused: 'no fleet signature (x-airlock-fleet)' };
  if (Math.abs(now - Number(m[1])) > CLOCK_SKEW_MS) return { refused: 'the fleet signature is too old or from the future (clocks more than 60 s apart?)' };
  if (!same(hmac(secret, `GET\n${path}\n${m[1]}\n${m[2]}`), m[3])) return { refused: 'the fleet signature does not match (a different storage.peers secret?)' };
  return { nonce: m[2] };
}

/** The answer's proof that its replica holds the secret too, bound to the request and to what it declares. */
export function peerProof(secret: Buffer, nonce: string, sha256: string, from: number, size: number | undefined): string {
  return hmac(secret, `fill\n${nonce}\n${sha256}\n${from}\n${size ?? ''}`);
}

/** A filling replica's answer: its body from `from`, and the blob's whole size when known. */
export interface PeerAnswer {
  res: IncomingMessage;
  size: number | undefined;
}

/** Ask the replica at `addr` for its fill of `sha256` from byte `from`; why not, when it does not answer with a proven 200. */
export function openPeer(
  addr: string,
  sha256: string,
  from: number,
  secret: Buffer,
  signal: AbortSignal | undefined,
  idleMs: number,
): Promise<PeerAnswer | { refused: string }> {
  const path = `${PEER_PATH}${sha256}?from=${from}`;
  const { header, nonce } = signPeerRequest(secret, path);
  let url: URL;
  try {
    url = new URL(path, addr);
  } catch {
    return Promise.resolve({ refused: `the lease names no usable address (${addr})` });
  }
  return new Promise((resolve) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { headers: { 'x-airlock-fleet': header }, signal, timeout: idleMs }, (res) => {
      const sizeHeader = res.headers['x-airlock-size'];
      const size = typeof sizeHeader === 'string' && /^\d{1,15}$/.test(sizeHeader) ? Number(sizeHeader) : undefined;
      const proof = res.headers['x-airlock-fleet-proof'];
      if (res.statusCode !== 200) {
        res.resume();
        resolve({ refused: `the replica at ${addr} answered ${res.statusCode}` });
      } else if (typeof proof !== 'string' || !same(proof, peerProof(secret, nonce, sha256, from, size))) {
        res.destroy();
        resolve({ refused: `the replica at ${addr} did not prove the fleet secret: its answer is not read` });
      } else resolve({ res, size });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${idleMs} ms`)));
    req.on('error', (e) => resolve({ refused: `the replica at ${addr}: ${e.message}` }));
    req.end();
  });
}

/** What a feed falls back on when its filler goes away (lease.ts provides it). */
export interface PeerFallback {
  sha256: string;
  secret: Buffer;
  /** Idle time after which a silent peer connection is dropped (and the feed resumes). */
  idleMs: number;
  /** When to give up resuming. */
  deadline: number;
  /** The blob's size in the shared store once committed there, or undefined. */
  stored(): Promise<number | undefined>;
  /** Bytes [start, end] of the committed blob. */
  openStored(start: number, end: number): Promise<Readable>;
  /** Take the fill's lease (its holder is gone): true when this replica now fills from upstream. */
  take(): Promise<boolean>;
  openUpstream(signal: AbortSignal): Promise<UpstreamBody>;
  /** The address of the replica holding the lease now (not this one), or undefined. */
  holder(): Promise<string | undefined>;
  /** Wait (at most `ms`) for the lease to be released, or until `signal` aborts (the fill was cancelled). */
  waitRelease(ms: number, signal?: AbortSignal): Promise<void>;
  warn(fields: object, msg: string, why: string): void;
}

interface Source {
  it: AsyncIterable<Buffer>;
  close(): void;
  /** Did it end because every byte was sent (not because its replica went away)? */
  whole(): boolean;
  /** A peer's stream resumes elsewhere when it breaks; the store's or upstream's fails the fill. */
  peer: boolean;
}

const peerSource = (a: PeerAnswer): Source => ({ it: a.res, close: () => a.res.destroy(), whole: () => a.res.complete, peer: true });
const plainSource = (r: Readable): Source => ({ it: r, close: () => r.destroy(), whole: () => true, peer: false });

/** The first `n` bytes of `body` dropped (a takeover refetches from upstream's first byte). */
async function* skipped(body: AsyncIterable<Buffer>, n: number): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    if (n >= chunk.length) n -= chunk.length;
    else {
      yield n > 0 ? chunk.subarray(n) : chunk;
      n = 0;
    }
  }
}

/**
 * The fill's upstream body, read from a peer (`first`, opened by the lease), resuming at the same
 * byte elsewhere when that peer goes away. Aborting `signal` (the fill failed or was cancelled)
 * closes whatever it reads.
 */
export function peerBody(first: PeerAnswer, f: PeerFallback, signal: AbortSignal): UpstreamBody {
  const size = first.size;
  let src = peerSource(first);
  const stop = () => src.close();
  signal.addEventListener('abort', stop, { once: true });

  const resume = async (pos: number): Promise<Source> => {
    for (;;) {
      if (signal.aborted) throw new AirlockError('CANCELLED', 'the fill was cancelled');
      if (Date.now() > f.deadline)
        throw new AirlockError('UPSTREAM_UNAVAILABLE', `the replica filling sha256:${f.sha256} went away and it could not be resumed`);
      const stored = await f.stored();
      if (stored !== undefined) {
        if (size !== undefined && stored !== size)
          throw new AirlockError('SIZE_MISMATCH', `the stored sha256:${f.sha256} has ${stored} bytes, the filling replica declared ${size}`);
        return plainSource(pos < stored ? await f.openStored(pos, stored - 1) : Readable.from([]));
      }
      if (await f.take()) {
        const up = await f.openUpstream(signal);
        if (size !== undefined && up.size !== undefined && up.size !== size) {
          up.body.destroy();
          throw new AirlockError('SIZE_MISMATCH', `upstream declares ${up.size} bytes for sha256:${f.sha256}, the filling replica declared ${size}`);
        }
        return plainSource(Readable.from(skipped(up.body, pos)));
      }
      const addr = await f.holder();
      if (addr) {
        const a = await openPeer(addr, f.sha256, pos, f.secret, signal, f.idleMs);
        if ('res' in a && a.size === size) return peerSource(a);
        if ('res' in a) a.res.destroy();
      }
      await f.waitRelease(1000, signal);
    }
  };

  async function* feed(): AsyncGenerator<Buffer> {
    let pos = 0;
    try {
      for (;;) {
        let broke: string | undefined;
        try {
          for await (const chunk of src.it) {
            pos += chunk.length;
            yield chunk;
          }
        } catch (e) {
          if (!src.peer || signal.aborted) throw e;
          broke = (e as Error).message;
        }
        if (src.whole() && !broke) return;
        f.warn({ digest: f.sha256, at: pos }, "the filling replica's stream broke: resuming at the same byte", broke ?? 'closed early');
        src.close();
        src = await resume(pos);
      }
    } finally {
      signal.removeEventListener('abort', stop);
      src.close();
    }
  }
  return { body: Readable.from(feed(), { objectMode: false, highWaterMark: 256 << 10 }), size };
}
