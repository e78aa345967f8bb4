import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/core/chain.js';
import { Folder } from '../../src/core/fold.js';
import { RecordBudget } from '../../src/core/record-budget.js';
import { Recorder, type RecordRow } from '../../src/core/records.js';
import { RefusalLimiter } from '../../src/core/refusal-limit.js';
import { Metrics } from '../../src/obs/metrics.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

const silent = pino({ level: 'silent' });
const refusal = (i: number, extra: Partial<RecordRow> = {}): RecordRow => ({
  ts: 1_700_000_000_000 + i,
  client: '10.0.0.1',
  ecosystem: 'pypi',
  name: 'denied-name',
  cache: 'none',
  decision: 'deny',
  reason: 'not on the allowlist',
  rule: 'pypi.allowlist',
  code: 'not_allowlisted',
  requestId: `r${i}`,
  ...extra,
});

describe('the refusal rate limit', () => {
  it('lets a burst through, then answers with the seconds to wait, and refills at its rate', () => {
    const l = new RefusalLimiter({ perSecond: 20, burst: 200, maxClients: 100 });
    const t = 1_000_000;
    for (let i = 0; i < 200; i++) expect(l.take('a', t)).toBe(0);
    expect(l.take('a', t)).toBe(1);
    expect(l.take('b', t)).toBe(0); // another client has its own allowance
    // 20 a second: half a second later, 10 more.
    for (let i = 0; i < 10; i++) expect(l.take('a', t + 500)).toBe(0);
    expect(l.take('a', t + 500)).toBeGreaterThan(0);
  });

  it('keeps at most maxClients buckets, however many addresses ask (70,000 here)', () => {
    const l = new RefusalLimiter({ perSecond: 20, burst: 200, maxClients: 1000 });
    for (let i = 0; i < 70_000; i++) l.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1000);
    expect(l.size).toBe(1000);
  });
});

describe('folding repeated refusals', () => {
  it('writes the first at once, counts the repeats, and writes one repeat row when the window closes', () => {
    const out: RecordRow[] = [];
    const f = new Folder(60_000, 100, (r) => out.push(r));
    expect(f.offer(refusal(0), 0)).toBe(true);
    for (let i = 1; i <= 99; i++) expect(f.offer(refusal(i), i)).toBe(false);
    expect(f.offer(refusal(100, { version: '2.0' }), 100)).toBe(true); // another version: its own row
    expect(f.offer({ ...refusal(101), decision: 'allow', code: null }, 101)).toBe(true); // never an allow
    expect(out).toEqual([]);
    f.sweep(60_000);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ name: 'denied-name', count: 99, ts: 1, lastTs: 99, requestId: null });
    f.closeAll();
    expect(out).toHaveLength(1); // the 2.0 window had no repeats: nothing more to write
    expect(f.offer(refusal(200), 70_000)).toBe(true); // a new window
  });

  it('keeps at most maxWindows windows open: opening one more closes (writes) the oldest', () => {
    const out: RecordRow[] = [];
    const f = new Folder(60_000, 500, (r) => out.push(r));
    for (let i = 0; i < 70_000; i++) {
      f.offer(refusal(i, { client: `a${i}` }), 0);
      f.offer(refusal(i, { client: `a${i}` }), 0);
    }
    expect(f.size).toBe(500);
    expect(out).toHaveLength(70_000 - 500);
    f.closeAll();
    expect(out.reduce((n, r) => n + (r.count ?? 0), 0)).toBe(70_000);
  });

  it('through the recorder: 5,000 identical refusals are two chained rows whose counts add up, and the metrics count each', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const metrics = new Metrics(false);
    const r = new Recorder(meta, metrics, silent, { foldWindowMs: 60_000, foldMaxWindows: 100, limits: { perSecond: 0, burst: 1, maxClients: 1 } });
    await Promise.all(Array.from({ length: 5000 }, (_, i) => r.record(refusal(i))));
    await r.flush();
    const rows = await meta.listPulls({ limit: 100 });
    expect(rows).toHaveLength(2);
    expect(rows.reduce((n, x) => n + (x.count ?? 1), 0)).toBe(5000);
    expect(rows[0].count).toBe(4999);
    expect((await verifyChain(meta)).problem).toBeUndefined();
    expect(await metrics.registry.getSingleMetricAsString('airlock_refusals_total')).toMatch(/code="not_allowlisted"\} 5000/);
    expect(await metrics.registry.getSingleMetricAsString('airlock_refusals_folded_total')).toMatch(/\} 4999/);
    expect((await meta.dailyCounts(0)).reduce((n, d) => n + d.count, 0)).toBe(5000);
    await meta.close();
  });
});

describe("the record's size budget", () => {
  it('prunes the oldest rows past records.max_bytes, keeps the chain verifiable, and warns while near the budget', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const metrics = new Metrics(false);
    const r = new Recorder(meta, metrics, silent);
    await Promise.all(Array.from({ length: 2000 }, (_, i) => r.record(refusal(i, { name: `n${i}` }))));
    const size = await meta.pullSize();
    expect(size.rows).toBe(2000);
    const max = Math.floor(size.bytes / 4);
    const budget = new RecordBudget(meta, r, metrics, silent, max);
    const removed = await budget.check();
    expect(removed).toBeGreaterThan(1500);
    const after = await meta.pullSize();
    expect(after.bytes).toBeLessThanOrEqual(max);
    expect(after.rows).toBe(2000 - removed + 1);
    // The oldest went; the newest stayed; the anchor says why.
    const rows = await meta.listPulls({ limit: 10_000 });
    expect(rows.some((x) => x.name === 'n0')).toBe(false);
    expect(rows.some((x) => x.name === 'n1999')).toBe(true);
    expect(rows[0]).toMatchObject({ ecosystem: 'audit', name: 'prune' });
    expect((await verifyChain(meta)).problem).toBeUndefined();
    expect(budget.warning()).toMatch(/9\d% of records.max_bytes/);
    expect(await metrics.registry.getSingleMetricAsString('airlock_record_bytes')).toContain(` ${after.bytes}`);
    expect(await new RecordBudget(meta, r, metrics, silent, 0).check()).toBe(0); // 0: no budget
    await meta.close();
  });
});
