import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Recorder, type RecordRow } from '../../src/core/records.js';
import { Metrics } from '../../src/obs/metrics.js';
import type { MetaStore, PullRecord } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/** The group-committed pull record: one transaction per event-loop turn, resolved once committed. */
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
});
