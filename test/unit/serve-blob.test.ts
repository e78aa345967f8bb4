import { Readable, Writable, pipeline } from 'node:stream';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import type { Recorder, RecordRow } from '../../src/core/records.js';
import type { AppEnv } from '../../src/http/send.js';
import type { Logger } from 'pino';
import { Refusal, errorHandler } from '../../src/http/refusal.js';
import { lastChunkAfter, serveBlob, serveSmall } from '../../src/http/serve-blob.js';
import type { BlobCache } from '../../src/core/cache.js';
import { HOLD_BACK, type FillSpec } from '../../src/core/fill.js';

/** A chunk of HOLD_BACK bytes: the transform holds back the last HOLD_BACK bytes (at least the last chunk). */
const block = (ch: string) => Buffer.alloc(HOLD_BACK, ch);

describe('the last chunk waits for the pull record', () => {
  it('holds the final chunk until the record is committed, then releases it', async () => {
    let commit!: () => void;
    const committed = new Promise<void>((r) => (commit = r));
    let called = false;
    const got: string[] = [];
    let finished = false;
    const sink = new Writable({
      write(chunk, _e, cb) {
        got.push(String(chunk).slice(0, 1));
        cb();
      },
    });
    pipeline(
      Readable.from([block('a'), block('b'), block('c')]),
      lastChunkAfter(() => {
        called = true;
        return committed;
      }),
      sink,
      () => (finished = true),
    );
    await new Promise((r) => setTimeout(r, 30));
    expect(called).toBe(true);
    expect(got).toEqual(['a', 'b']);
    expect(finished).toBe(false);
    commit();
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toEqual(['a', 'b', 'c']);
    expect(finished).toBe(true);
  });
  it('never releases the last chunk when the source fails', async () => {
    const got: string[] = [];
    const err = await new Promise<Error | undefined>((resolve) => {
      const src = new Readable({ read() {} });
      pipeline(
        src,
        lastChunkAfter(async () => {}),
        new Writable({
          write(c, _e, cb) {
            got.push(String(c).slice(0, 1));
            cb();
          },
        }),
        (e) => resolve(e ?? undefined),
      );
      src.push(block('a'));
      src.push(block('b'));
      setTimeout(() => src.destroy(new Error('digest mismatch')), 10);
    });
    expect(err?.message).toBe('digest mismatch');
    expect(got).toEqual(['a']);
  });
});

describe('serveSmall: an in-memory verified body and its row', () => {
  const row: RecordRow = { ts: 1, client: 'c', ecosystem: 'oci', name: 'reg/x', cache: 'hit', decision: 'allow', rule: 'r' };
  const app = (fail = false) => {
    const rows: RecordRow[] = [];
    const recorder = {
      recordServed: async (r: RecordRow) => {
        if (fail) throw new Error('disk full');
        rows.push(r);
      },
    } as unknown as Recorder;
    const a = new Hono<AppEnv>();
    a.on(['GET', 'HEAD'], '/x', (c) =>
      serveSmall(c, Buffer.from('0123456789'), { 'content-type': 'text/plain' }, { recorder, row, ranges: c.req.query('r') === '1' }),
    );
    a.onError((e, c) => c.text(e.message, 503));
    return { a, rows };
  };

  it('records a GET before answering, a HEAD not at all, and honours ranges only where offered', async () => {
    const { a, rows } = app();
    const get = await a.request('/x');
    expect([get.status, await get.text(), get.headers.get('content-length')]).toEqual([200, '0123456789', '10']);
    expect(rows).toHaveLength(1);
    const head = await a.request('/x', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(rows).toHaveLength(1);
    const part = await a.request('/x?r=1', { headers: { range: 'bytes=2-4' } });
    expect([part.status, await part.text(), part.headers.get('content-range')]).toEqual([206, '234', 'bytes 2-4/10']);
    // A range outside the body serves nothing and refuses nothing: no row (as serveBlob answers it).
    expect((await a.request('/x?r=1', { headers: { range: 'bytes=20-' } })).status).toBe(416);
    expect(rows).toHaveLength(2);
    const whole = await a.request('/x', { headers: { range: 'bytes=2-4' } });
    expect([whole.status, await whole.text()]).toEqual([200, '0123456789']);
    expect(rows).toHaveLength(3);
  });

  it('withholds the body when its row cannot be written', async () => {
    const { a } = app(true);
    const r = await a.request('/x');
    expect([r.status, await r.text()]).toEqual([503, 'disk full']);
  });
});

describe('the signature a front-end passes is on the row (issue 26)', () => {
  const sig = '{"ok":true,"identity":"key:0123456789ab"}';
  it('serveSmall writes it on the served row', async () => {
    const rows: RecordRow[] = [];
    const recorder = { recordServed: async (r: RecordRow) => void rows.push(r) } as unknown as Recorder;
    const row: RecordRow = { ts: 1, client: 'c', ecosystem: 'oci', name: 'reg/x', cache: 'hit', decision: 'allow', rule: 'r' };
    const a = new Hono<AppEnv>();
    a.get('/x', (c) => serveSmall(c, Buffer.from('abc'), {}, { recorder, row, signature: sig }));
    expect((await a.request('/x')).status).toBe(200);
    expect(rows.map((r) => r.signature)).toEqual([sig]);
  });
  it("a Refusal's row keeps it through the error handler", async () => {
    const rows: RecordRow[] = [];
    const recorder = { record: async (r: RecordRow) => void rows.push(r), limitRefusal: () => 0 } as unknown as Recorder;
    const log = { warn: () => {}, error: () => {} } as unknown as Logger;
    const a = new Hono<AppEnv>();
    a.get('/x', () => {
      throw new Refusal({ status: 403, code: 'bad_signature', rule: 'oci.allow[0]', reason: 'wrong signer', row: { name: 'reg/x', signature: sig } });
    });
    a.onError(
      errorHandler({
        ecosystem: 'oci',
        recorder,
        log,
        wire: (e) => (e instanceof Refusal ? { status: e.status, message: e.message } : null),
        internal: () => ({ status: 500, message: 'internal' }),
        render: (c, e) => c.text(e.message, e.status as 403),
      }),
    );
    expect((await a.request('/x')).status).toBe(403);
    expect(rows).toMatchObject([{ code: 'bad_signature', decision: 'deny', signature: sig }]);
  });
});

describe('serveBlob: the signature and a continuity warning on the served row (issue 26)', () => {
  it('writes both on the row of a whole transfer', async () => {
    const rows: RecordRow[] = [];
    const recorder = {
      recordServed: async (r: RecordRow) => void rows.push(r),
      record: async (r: RecordRow) => void rows.push(r),
      bytesSent: () => {},
      transferStarted: () => () => {},
    } as unknown as Recorder;
    const cache = {
      verifyHits: false,
      fetch: async () => ({ cache: 'miss', body: Readable.from([Buffer.from('abc')]), size: 3, gate: Promise.resolve(), settled: Promise.resolve() }),
    } as unknown as BlobCache;
    const a = new Hono<AppEnv>();
    a.get('/x', (c) =>
      serveBlob(
        c,
        cache,
        { sha256: 'a'.repeat(64) } as FillSpec,
        {},
        {
          recorder,
          base: { ts: 1, client: 'c', ecosystem: 'pypi', name: 'x', sha256: 'a'.repeat(64) },
          rule: 'pypi.allow[0]',
          label: 'x',
          signature: '{"ok":true,"identity":"key:0123456789ab"}',
          warning: 'signer changed: ...',
        },
      ),
    );
    const res = await a.request('/x');
    expect(await res.text()).toBe('abc');
    expect(rows).toMatchObject([{ decision: 'allow', signature: '{"ok":true,"identity":"key:0123456789ab"}', reason: 'signer changed: ...' }]);
  });
});
