import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Who sent a request the fast path answers, as the router's middleware would set it (app.ts): for
 * answers that write a pull record. Computed only when asked.
 */
export interface FastClient {
  /** The record's client: the token's name and the address, or the address alone (http/send.ts clientAddress). */
  client(): string;
  /** The request id: the client's X-Request-Id when well-formed, else a new one. */
  requestId(): string;
}

/**
 * A front-end's answer to a GET it can make at once, from memory, outside the router: true when
 * it wrote the whole response, false to leave the request to the router with nothing written (a
 * promise of either for an answer that waits for its pull record to be committed first). It writes only plain
 * successes: every refusal, redirect and error is the router's, made in one place.
 */
export type FastAnswer = ((req: IncomingMessage, res: ServerResponse, who: FastClient) => boolean | Promise<boolean>) & {
  /**
   * The request URLs (path and query, as sent) it may answer at all: the fast path's candidate
   * test, so a request it can never serve (a file download, a page with a query) costs no
   * identity check on the fast path before the router's.
   */
  path: RegExp;
};

/**
 * The root app's fast path: which requests may try it, and the attempt (after the identity check).
 * A request it leaves to the router carries the identity found here (app.ts): one lookup per request.
 */
export interface FastPath {
  candidate(req: IncomingMessage): boolean;
  /** Whether it answered; at once when nothing was looked up or waited for. */
  serve(req: IncomingMessage, res: ServerResponse): boolean | Promise<boolean>;
}

/**
 * Why a fast path at all (issue 17): a warm PyPI project page, the request pip makes most, cost
 * ~43 µs of CPU through Hono and its Node adapter against ~28 µs for a plain Node server sending
 * the same bytes (bench/, wrk, CPU per request from /proc). A Hono app that does nothing but send
 * those bytes already cost ~+14 µs over plain Node (request and context objects, the composed
 * middleware and router, the Response the adapter inspects); Airlock's own work is the rest.
 *
 * Wraps the router's request listener: a candidate (a GET whose URL a front-end's fast answer may serve)
 * is tried first; anything it does not answer goes to the router unchanged.
 */
export function withFastPath(
  fast: FastPath,
  router: (req: IncomingMessage, res: ServerResponse) => unknown,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (!fast.candidate(req)) {
      void router(req, res);
      return;
    }
    // A throw before anything was written leaves the request to the router; after, the client
    // must not wait for an answer that will not come.
    const failed = () => {
      if (!res.headersSent) void router(req, res);
      else res.destroy();
    };
    let served: boolean | Promise<boolean>;
    try {
      served = fast.serve(req, res);
    } catch {
      failed();
      return;
    }
    if (typeof served === 'boolean') {
      if (!served) void router(req, res);
      return;
    }
    served.then((done) => {
      if (!done) void router(req, res);
    }, failed);
  };
}
