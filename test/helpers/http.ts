import { randomUUID } from 'node:crypto';
import { get, request } from 'node:http';
import type { TestAirlock } from './airlock.js';

/** GET with the raw Node client: tells a clean end from a cut transfer. */
export function rawGet(
  url: string,
  headers: Record<string, string> = {},
  opts: { localAddress?: string; hangUpAfterMs?: number } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    // Another loopback address is another client, as far as per-client limits go.
    const req = get(url, { headers, localAddress: opts.localAddress }, (res) => {
      const chunks: Buffer[] = [];
      let done = false;
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        done = true;
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete });
      });
      res.on('error', () => {
        if (!done) resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete: false });
      });
      res.on('aborted', () => {
        if (!done) resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete: false });
      });
    });
    req.on('error', (e) => (opts.hangUpAfterMs !== undefined ? resolve({ status: 0, headers: {}, body: Buffer.alloc(0), complete: false }) : reject(e)));
    if (opts.hangUpAfterMs !== undefined) setTimeout(() => req.destroy(), opts.hangUpAfterMs);
  });
}

export async function records(a: TestAirlock, q = ''): Promise<any[]> {
  // Refusals and cut transfers are recorded just after their response ends: let that turn run, then wait for the writes.
  await new Promise((r) => setImmediate(r));
  await a.airlock.recorder.flush();
  return (await (await fetch(`${a.url}/-/records?${q}`)).json()).records;
}

/** Send a path exactly as written (fetch and URL would normalise "..", "%2F" and friends). */
export function rawPath(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Send a request exactly as written (the raw Node client: absolute-form targets, odd Host headers,
 * repeated headers, no path normalisation) with its own request id, to find the row it left.
 */
export function sendWithId(
  port: number,
  path: string,
  opts: { method?: string; headers?: Record<string, string | string[]> } = {},
): Promise<{ status: number; id: string; body: string; complete: boolean }> {
  const id = randomUUID();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { 'x-request-id': id, ...opts.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      // A transfer cut before its end (a digest that disagrees) ends in 'close' without 'end'.
      res.on('close', () => resolve({ status: res.statusCode!, id, body: Buffer.concat(chunks).toString('utf8'), complete: res.complete }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The rows a request left, found by its request id. */
export async function rowsOf(a: TestAirlock, id: string): Promise<any[]> {
  return (await records(a, 'limit=10000')).filter((r: { requestId?: string }) => r.requestId === id);
}
