import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable, finished, pipeline } from 'node:stream';
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { HitBody } from '../core/hit-body.js';
import { FillBody } from '../core/fill-body.js';
import { sendTimedOut } from './send-watch.js';

/** Hono environment when running under @hono/node-server: the raw Node objects are reachable. */
export interface AppEnv {
  Bindings: { incoming?: IncomingMessage; outgoing?: ServerResponse };
  /** `client`: the client's address, set once per request (trusted_proxies, http/client-address.ts). */
  Variables: { requestId: string; identity?: { name: string; admin: boolean }; client?: string };
}

export type SendResult = { error?: Error };

/**
 * Send a Node stream as the response body.
 *
 * Under @hono/node-server the body is piped straight into the Node response (the "bypass"):
 * bench/ measured a Hono web-stream response at 0.6-0.7x a plain Node pipe for a 1 GiB body, so
 * artefact bodies never go through a web ReadableStream. Under `app.request()` (tests without a
 * socket) it falls back to a web stream. If the body fails mid-way (digest mismatch, upstream
 * cut), the socket is destroyed: the client sees a broken transfer, never a clean end.
 */
export function sendStream(
  c: Context<AppEnv>,
  status: number,
  headers: Record<string, string>,
  body: Readable | null,
  done?: (r: SendResult) => void,
): Response {
  const outgoing = c.env?.outgoing;
  if (c.req.method === 'HEAD') {
    // Hono answers HEAD by running the GET route and re-wrapping its Response, which would
    // write the head a second time after a bypass: HEAD answers always go back through Hono.
    body?.destroy();
    done?.({});
    return new Response(null, { status, headers });
  }
  if (outgoing && typeof outgoing.writeHead === 'function') {
    closeWithConnection(outgoing, c.env?.incoming?.socket);
    outgoing.writeHead(status, headers);
    if (!body) {
      outgoing.end();
      done?.({});
      return RESPONSE_ALREADY_SENT;
    }
    // Send the status line and headers now: the client's time to first byte is the upstream's
    // answer, not the first held-back-checked body chunk.
    outgoing.flushHeaders();
    if (body instanceof HitBody || body instanceof FillBody) {
      // A verified warm hit writes its chunks into the socket from reused buffers (core/hit-body.ts);
      // a cold fill's client is written from the fill's own memory as bytes arrive (core/fill-body.ts).
      const send = () =>
        body.sendTo(outgoing).then(
          () => {
            outgoing.end();
            finished(outgoing, (err) => {
              if (err) outgoing.destroy();
              done?.({ error: err ? (sendTimedOut(outgoing.socket) ?? err) : undefined });
            });
          },
          (error: Error) => {
            outgoing.destroy();
            done?.({ error: sendTimedOut(outgoing.socket) ?? error });
          },
        );
      if (outgoing.socket || outgoing.destroyed) send();
      else {
        // A pipelined request's turn: its body starts once its response has the socket (what it
        // would write before sits in Node's memory, the chunk buffers with it), or ends when the
        // connection closes first.
        const go = () => {
          outgoing.off('socket', go);
          outgoing.off('close', go);
          send();
        };
        outgoing.once('socket', go);
        outgoing.once('close', go);
      }
      return RESPONSE_ALREADY_SENT;
    }
    pipeline(body, outgoing, (err) => {
      if (err) outgoing.destroy();
      done?.({ error: err ? (sendTimedOut(outgoing.socket) ?? err) : undefined });
    });
    return RESPONSE_ALREADY_SENT;
  }
  if (!body) {
    done?.({});
    return new Response(null, { status, headers });
  }
  body.once('end', () => done?.({}));
  body.once('error', (error) => done?.({ error }));
  return new Response(Readable.toWeb(body) as ReadableStream, { status, headers });
}

/**
 * A pipelined request's response waits behind the ones before it on no socket yet, and Node never
 * closes it if the connection goes first: its body would wait for 'drain' or 'close' for ever (a
 * warm hit holding its chunk buffers and open file), and its pull row would never be written.
 * Such a response is closed with its connection.
 */
function closeWithConnection(outgoing: ServerResponse, socket: Socket | undefined): void {
  if (!socket || outgoing.socket === socket) return;
  const onClose = () => {
    // Given the socket since: Node closes it with the socket.
    if (outgoing.socket) return;
    outgoing.destroy();
    outgoing.emit('close');
  };
  if (socket.destroyed) return onClose();
  socket.once('close', onClose);
  outgoing.once('close', () => socket.off('close', onClose));
}

/**
 * The path of a raw request target, as the request line gave it (no URL normalisation, so "/../"
 * stays visible): the query cut off, and for an absolute-form target (`GET http://user:secret@host/path`,
 * as proxies send) the scheme, userinfo and host too, so neither a routing decision nor a record
 * ever sees them.
 */
export function rawTargetPath(target: string): string {
  return target.split('?', 1)[0].replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
}

/**
 * Who is pulling, for records: the token's name and the address (`ci-runner@10.0.0.7`), or the
 * address alone for anonymous pulls (no proxy headers are trusted by default: trusted_proxies).
 */
export function clientAddress(c: Context<AppEnv>): string {
  const addr = peerAddress(c);
  const id = c.get('identity');
  return id ? `${id.name}@${addr}` : addr;
}

/** The client's address: X-Forwarded-For's as far as trusted_proxies allows (set by app.ts), else the socket's peer. */
export function peerAddress(c: Context<AppEnv>): string {
  return c.get('client') ?? c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

/**
 * Send a small in-memory body. Under @hono/node-server it is written straight to the Node
 * response: building a web Response and Headers per request cost ~20% of the warm page rate in
 * the benchmark's small-request row (7.8k -> 9.2k req/s; profile: undici Headers.set,
 * buildOutgoingHttpHeaders). Sets Content-Length itself.
 */
export function sendBytes(c: Context<AppEnv>, status: number, headers: Record<string, string>, body: Uint8Array): Response {
  const outgoing = c.env?.outgoing;
  headers['content-length'] = String(body.length);
  if (c.req.method === 'HEAD') return new Response(null, { status, headers });
  if (outgoing && typeof outgoing.writeHead === 'function') {
    closeWithConnection(outgoing, c.env?.incoming?.socket);
    outgoing.writeHead(status, headers);
    outgoing.end(body);
    return RESPONSE_ALREADY_SENT;
  }
  return new Response(body as Uint8Array<ArrayBuffer>, { status, headers });
}
