import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { BlobCache } from '../core/cache.js';
import type { Fill } from '../core/fill.js';
import { checkPeerRequest, PEER_PATH, peerProof } from '../core/peer-stream.js';

const ROUTE = /^\/-\/fleet\/fills\/([0-9a-f]{64})\?from=(\d{1,15})$/;
const READ_CHUNK = 256 << 10;

/**
 * The fleet's internal route (core/peer-stream.ts): another replica asks for this replica's fill
 * under way, and gets its bytes as they arrive, held back as a client's are (inspection, and the
 * last bytes until this replica's digest matched; the asking replica verifies every byte again).
 * Outside the router: it is no protocol's, and needs no client token but the fleet's signature.
 * Without storage.peers the path goes to the router like any other (and is not found).
 */
export function withPeerRoute(
  peer: { secret: Buffer } | undefined,
  cache: BlobCache,
  log: Pick<Logger, 'warn'>,
  next: (req: IncomingMessage, res: ServerResponse) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  if (!peer) return next;
  return (req, res) => {
    if (!req.url?.startsWith(PEER_PATH)) return next(req, res);
    servePeer(peer.secret, cache, log, req, res).catch((e) => {
      log.warn({ path: req.url, err: (e as Error).message }, 'a fill streamed to another replica failed');
      res.destroy();
    });
  };
}

function refuse(res: ServerResponse, status: number, error: string, message: string): void {
  const body = JSON.stringify({ error, message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

async function servePeer(secret: Buffer, cache: BlobCache, log: Pick<Logger, 'warn'>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url!;
  const auth = checkPeerRequest(secret, url, req.headers['x-airlock-fleet'] as string | undefined);
  if ('refused' in auth) {
    log.warn({ client: req.socket.remoteAddress, path: url.split('?', 1)[0] }, `a request to the fleet's internal route was refused: ${auth.refused}`);
    return refuse(res, 401, 'UNAUTHORIZED', `fleet route: ${auth.refused}`);
  }
  const m = req.method === 'GET' ? ROUTE.exec(url) : null;
  if (!m) return refuse(res, 400, 'BAD_REQUEST', `fleet route: expected GET ${PEER_PATH}<sha256>?from=<offset>`);
  const [sha256, from] = [m[1], Number(m[2])];
  const fill = cache.inflight.get(sha256);
  const ready = fill
    ? await fill.ready.then(
        () => fill.state !== 'failed',
        () => false,
      )
    : false;
  if (!fill || !ready) return refuse(res, 404, 'NOT_FOUND', `this replica is not filling sha256:${sha256}`);
  if (fill.size !== undefined && from > fill.size) return refuse(res, 400, 'BAD_REQUEST', `fleet route: offset ${from} is past the ${fill.size} bytes`);
  const headers: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    'cache-control': 'no-store',
    'x-airlock-fleet-proof': peerProof(secret, auth.nonce, sha256, from, fill.size),
  };
  if (fill.size !== undefined) headers['x-airlock-size'] = fill.size;
  if (fill.size !== undefined) headers['content-length'] = fill.size - from;
  res.writeHead(200, headers);
  await sendFill(fill, from, res);
}

/** The fill's bytes from `from` as readers may have them, then its end once verified; cut (destroyed) if the fill fails. */
async function sendFill(fill: Fill, from: number, res: ServerResponse): Promise<void> {
  const release = fill.attachReader();
  // Woken by the fill's progress, or by the asking replica going away.
  const next = (event: 'progress' | 'drain') =>
    new Promise<void>((resolve) => {
      const done = () => (fill.off('progress', done), res.off('drain', done), res.off('close', done), resolve());
      if (event === 'progress') fill.once('progress', done);
      else res.once('drain', done);
      res.once('close', done);
    });
  let pos = from;
  try {
    for (;;) {
      if (res.destroyed) return;
      if (fill.cut()) {
        res.destroy();
        return;
      }
      const limit = fill.state === 'verified' ? fill.written : fill.available();
      if (pos < limit) {
        let chunk = fill.inMemory(pos, limit);
        if (!chunk) {
          const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, limit - pos));
          const { bytesRead } = await fill.readAt(buf, pos);
          if (bytesRead === 0) throw new Error('spool file shorter than written');
          chunk = buf.subarray(0, bytesRead);
        }
        pos += chunk.length;
        if (!res.write(chunk)) await next('drain');
      } else if (fill.state === 'verified') {
        res.end();
        return;
      } else await next('progress');
    }
  } finally {
    release();
  }
}
