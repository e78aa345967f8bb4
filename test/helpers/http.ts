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
