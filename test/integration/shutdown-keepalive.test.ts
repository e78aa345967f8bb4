import { randomBytes } from 'node:crypto';
import { Agent, get } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeIndex } from '../helpers/fake-index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';

/**
 * Shutdown from the side: a keep-alive connection that was busy when the listener closed. Node's
 * server.close() closes only the connections idle at that moment; one busy then went on taking
 * requests through the whole grace (seen as a flaky fault-suite test: a health check answered
 * after SIGTERM). Now no request is handled once the stop began, and connections close as they go idle.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** A GET through `agent`: its status, or the error's code when it could not be sent. */
function fetchVia(agent: Agent, url: string, headers: Record<string, string> = {}): Promise<{ status?: number; err?: string; body: Buffer; header?: string }> {
  return new Promise((resolve) => {
    get(url, { agent, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts), header: res.headers.connection }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ err: e.code ?? e.message, body: Buffer.concat(parts) }));
    }).on('error', (e: NodeJS.ErrnoException) => resolve({ err: e.code ?? e.message, body: Buffer.alloc(0) }));
  });
}

describe('shutdown with keep-alive clients', () => {
  it('a connection busy when the stop began finishes its transfer, then takes no new request during the grace', async () => {
    const bytes = randomBytes(2 << 20);
    const idx = new FakeIndex();
    idx.add('slow', { filename: 'slow-1.0-py3-none-any.whl', bytes });
    await idx.start();
    cleanup.push(() => idx.stop());
    const a: TestAirlock = await startAirlock(`
pypi:
  upstream: ${idx.simpleUrl}
  file_hosts: ["127.0.0.1:${idx.port}"]
policy:
  pypi:
    allow: [{ name: slow }]
`);
    let stopped = false;
    cleanup.push(async () => void (stopped || (await a.stop())));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(async () => agent.destroy());
    const page = await fetchVia(agent, `${a.url}/pypi/simple/slow/`, { accept: 'application/vnd.pypi.simple.v1+json' });
    expect(page.status).toBe(200);
    const doc = JSON.parse(page.body.toString()) as { files: { url: string }[] };
    const fileUrl = new URL(doc.files[0].url, `${a.url}/pypi/simple/slow/`).toString();
    idx.throttle = 2 << 20; // about 1 s
    const transfer = fetchVia(agent, fileUrl);
    await new Promise((r) => setTimeout(r, 300));
    const stopping = (a.stop as (graceMs?: number) => Promise<void>)(10_000).then(() => (stopped = true));
    const t = await transfer;
    expect(t.status).toBe(200);
    expect(t.body.equals(bytes)).toBe(true);
    // The same agent would reuse that connection if it were kept: the next request finds no listener.
    const late = await fetchVia(agent, `${a.url}/-/healthz`);
    expect(late.status).toBeUndefined();
    expect(late.err).toMatch(/ECONNREFUSED|ECONNRESET/);
    await stopping;
  }, 30_000);
});
