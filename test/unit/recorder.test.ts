import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Recorder, type RecordRow } from '../../src/core/records.js';
import { Metrics } from '../../src/obs/metrics.js';
import type { MetaStore, PullRecord } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { verifyChain } from '../../src/core/chain.js';

/** The group-committed pull record: one transaction per event-loop turn (or per commit, while one is under way), resolved once committed. */
const row = (i: number, decision: PullRecord['decision'] = 'allow'): RecordRow => ({
  ts: 1_700_000_000_000 + i,
  client: '127.0.0.1',
  ecosystem: 'pypi',
  name: `p${i}`,
  version: '1.0',
  filename: `p${i}-1.0.tar.gz`,
  cache: 'miss',
  decision,
  requestId: `r${i}`,
});

function logger() {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(c, _e, cb) {
        lines.push(JSON.parse(String(c)));
        cb();
      },
    }),
  );
  return { log, lines };
}

describe('Recorder', () => {
  it('writes every row queued in one turn in one batch, and resolves each record once it is committed', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const batches: number[] = [];
    const spy: MetaStore = Object.create(meta);
    spy.appendPulls = async (rows: PullRecord[], link) => {
      batches.push(rows.length);
      return meta.appendPulls(rows, link);
    };
    const metrics = new Metrics(false);
    const { log, lines } = logger();
    const r = new Recorder(spy, metrics, log);
    const done = Array.from({ length: 5 }, (_, i) => r.record(row(i, i === 4 ? 'deny' : 'allow')));
    expect(batches).toEqual([]); // nothing written before the turn ends
    await Promise.all(done);
    expect(batches).toEqual([5]);
    const rows = await meta.listPulls({ limit: 10 });
    expect(rows.map((x) => x.name).sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
    expect(lines.filter((l) => l.msg === 'pull')).toHaveLength(4);
    expect(lines.filter((l) => l.msg === 'refused')).toHaveLength(1);
    expect(await metrics.registry.getSingleMetricAsString('airlock_pulls_total')).toMatch(/decision="allow"\} 4/);
    await r.record(row(9));
    expect(batches).toEqual([5, 1]);
    await meta.close();
  });

  it('a failing write is logged, and never rejects the responses waiting for it', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const broken: MetaStore = Object.create(meta);
    broken.appendPulls = async () => {
      throw new Error('disk full');
    };
    const { log, lines } = logger();
    const r = new Recorder(broken, new Metrics(false), log);
    await expect(r.record(row(1))).resolves.toBeUndefined();
    await r.flush();
    expect(lines.some((l) => String(l.msg).startsWith('failed to write pull records') && JSON.stringify(l).includes('disk full'))).toBe(true);
    // The health endpoint reads this: red until a later write succeeds.
    expect(r.health()?.message).toBe('disk full');
    broken.appendPulls = meta.appendPulls.bind(meta);
    await r.record(row(2));
    expect(r.health()).toBeNull();
    await meta.close();
  });

  it('recordServed rejects when the row could not be written, so the artefact is withheld', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const broken: MetaStore = Object.create(meta);
    broken.appendPulls = async () => {
      throw new Error('disk full');
    };
    const r = new Recorder(broken, new Metrics(false), logger().log);
    await expect(r.recordServed(row(1))).rejects.toMatchObject({ code: 'RECORD_FAILED', status: 503 });
    await expect(r.recordServed(row(1))).rejects.toThrow(/could not be written \(disk full\)/);
    const ok = new Recorder(meta, new Metrics(false), logger().log);
    await expect(ok.recordServed(row(2))).resolves.toBeUndefined();
    await meta.close();
  });

  /** A store whose batches are held until released (a slow commit: PostgreSQL, a busy disk); each call's rows are kept. */
  function held(meta: MetaStore) {
    const batches: string[][] = [];
    const gates: { release: () => void; fail: (e: Error) => void }[] = [];
    const store: MetaStore = Object.create(meta);
    store.appendPulls = (rows: PullRecord[], link) => {
      batches.push(rows.map((x) => x.name));
      return new Promise<void>((resolve, reject) => gates.push({ release: () => meta.appendPulls(rows, link).then(resolve, reject), fail: reject }));
    };
    return { store, batches, gates };
  }
  const turn = () => new Promise((r) => setImmediate(r));
  const settled = (p: Promise<unknown>) => {
    const s = { done: false, failed: false };
    p.then(
      () => (s.done = true),
      () => (s.failed = true),
    );
    return s;
  };

  it('writes the rows queued while a batch is being written in one next batch, each resolved only once its own is committed', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const { store, batches, gates } = held(meta);
    const r = new Recorder(store, new Metrics(false), logger().log);
    const first = settled(r.recordServed(row(0)));
    await turn();
    expect(batches).toEqual([['p0']]);
    // Five more over several turns while the first batch is not committed: no second transaction yet.
    const later = [1, 2, 3, 4, 5].map((i) => settled(r.recordServed(row(i))));
    for (let i = 0; i < 5; i++) await turn();
    expect(batches).toEqual([['p0']]);
    expect(first.done || later.some((x) => x.done)).toBe(false);
    gates[0].release();
    await new Promise((res) => setTimeout(res, 20));
    expect(first.done).toBe(true);
    // The next batch holds all five, and none of them is answered before it is committed.
    expect(batches).toEqual([['p0'], ['p1', 'p2', 'p3', 'p4', 'p5']]);
    expect(later.some((x) => x.done || x.failed)).toBe(false);
    gates[1].release();
    await r.flush();
    expect(later.every((x) => x.done)).toBe(true);
    expect((await meta.listPulls({ limit: 10 })).map((x) => x.name).sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5']);
    expect((await verifyChain(meta)).problem).toBeUndefined();
    await meta.close();
  });

  it('a failing commit fails every served request of its batch closed (RECORD_FAILED), and not the batch queued behind it', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const { store, batches, gates } = held(meta);
    const { log, lines } = logger();
    const r = new Recorder(store, new Metrics(false), log);
    const a = [r.recordServed(row(0)), r.recordServed(row(1))];
    await turn();
    const b = r.recordServed(row(2));
    await turn();
    expect(batches).toEqual([['p0', 'p1']]);
    gates[0].fail(new Error('disk I/O error'));
    for (const p of a) await expect(p).rejects.toMatchObject({ code: 'RECORD_FAILED' });
    await turn();
    expect(batches).toEqual([['p0', 'p1'], ['p2']]);
    gates[1].release();
    await expect(b).resolves.toBeUndefined();
    expect((await meta.listPulls({ limit: 10 })).map((x) => x.name)).toEqual(['p2']);
    expect(lines.some((l) => String(l.msg).startsWith('failed to write pull records') && l.rows === 2)).toBe(true);
    expect(r.health()).toBeNull();
    await meta.close();
  });

  it('flush (shutdown) with a batch being written and rows queued behind it waits for both: no answered row is missing after a reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-recorder-'));
    try {
      const path = join(dir, 'meta.db');
      const meta = new SqliteMetaStore(path);
      const { store, batches, gates } = held(meta);
      const r = new Recorder(store, new Metrics(false), logger().log);
      const answered: number[] = [];
      const all = [0, 1, 2].map((i) => r.recordServed(row(i)).then(() => answered.push(i)));
      await turn();
      all.push(...[3, 4].map((i) => r.recordServed(row(i)).then(() => answered.push(i))));
      let flushed = false;
      const flushing = r.flush().then(() => (flushed = true));
      await turn();
      expect(flushed).toBe(false);
      gates[0].release();
      while (gates.length < 2) await turn();
      expect(flushed).toBe(false);
      gates[1].release();
      await flushing;
      await Promise.all(all);
      expect(batches).toEqual([
        ['p0', 'p1', 'p2'],
        ['p3', 'p4'],
      ]);
      await meta.close();
      const again = new SqliteMetaStore(path);
      const names = (await again.listPulls({ limit: 10 })).map((x) => x.name);
      for (const i of answered) expect(names).toContain(`p${i}`);
      expect(answered.sort()).toEqual([0, 1, 2, 3, 4]);
      expect((await verifyChain(again)).problem).toBeUndefined();
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
