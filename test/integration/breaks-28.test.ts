import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OsvFeed, type FeedSource } from '../../src/advisories/feed.js';
import { channelsFrom } from '../../src/alerts/channels.js';
import { impactOf } from '../../src/alerts/impact.js';
import { appendPulls } from '../../src/core/chain.js';
import type { AlertDocument } from '../../src/alerts/message.js';
import { notifySchema } from '../../src/config/notify-schema.js';
import type { OsvRecord } from '../../src/policy/advisories.js';
import { AdvisoryFeeds } from '../../src/advisories/sync.js';
import { createLogger } from '../../src/obs/logger.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { UpstreamHttp } from '../../src/upstream/http.js';
import { OsvFeedServer, type OsvTestRecord } from '../helpers/osv-feed.js';

/** Issue 28 break-it: each `it` is one way the feed guarantees were broken, fixed in src/. */

/** A feed server whose modified_id.csv can be replaced (a hostile or broken index). */
class HostileFeed extends OsvFeedServer {
  csvOverride: ((eco: string, honest: string) => string) | null = null;
  override csv(ecosystem: string): string {
    const honest = super.csv(ecosystem);
    return this.csvOverride ? this.csvOverride(ecosystem, honest) : honest;
  }
}

const iso = (ms: number) => new Date(ms).toISOString();
const rec = (id: string, modified: string): OsvTestRecord => ({
  id,
  modified,
  summary: id,
  affected: [{ package: { ecosystem: 'PyPI', name: 'six' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '9.9' }] }] }],
});

describe('issue 28 breaks: advisory feeds', () => {
  let dir: string;
  let server: HostileFeed;
  let meta: SqliteMetaStore;
  let feeds: AdvisoryFeeds;
  const source: FeedSource = { name: 'osv-pypi', url: '', ecosystem: 'PyPI', incremental: true };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'breaks28-'));
    server = await new HostileFeed().start();
    source.url = server.url;
    meta = new SqliteMetaStore(join(dir, 'airlock.db'));
    const feed = new OsvFeed(new UpstreamHttp({ headersTimeoutMs: 5000 }), { maxBytes: 1 << 20, timeoutMs: 5000, maxIncremental: 100 });
    feeds = new AdvisoryFeeds({
      meta,
      feed,
      sources: [source],
      intervalMs: 3_600_000,
      pollMs: 0,
      maxAgeMs: 0,
      apply: async () => 0,
      owner: 'test',
      log: createLogger('silent'),
    });
  });

  afterEach(async () => {
    await server.stop();
    await meta.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const stored = async () => (await meta.listAdvisories()).map((r) => (JSON.parse(r) as { id: string }).id).sort();

  it('a record modified in the future does not move the high-water mark past later changes (it is rejected, the data kept)', async () => {
    const now = Date.now();
    server.put('PyPI', rec('PYSEC-2026-1', iso(now - 3 * 3_600_000)));
    expect((await feeds.syncNow(source)).mode).toBe('full');
    // A broken or hostile export lists a record "modified" ten years from now.
    server.put('PyPI', rec('PYSEC-2026-FUTURE', iso(now + 10 * 365 * 86_400_000)));
    const bad = await feeds.syncNow(source);
    expect(bad.outcome).toBe('failed');
    expect(bad.error).toMatch(/future/);
    expect(await stored()).toEqual(['PYSEC-2026-1']);
    // The export is repaired; a genuine change an hour ago must still be fetched by the next incremental sync.
    server.records.get('PyPI')!.delete('PYSEC-2026-FUTURE');
    server.put('PyPI', rec('PYSEC-2026-2', iso(now - 3_600_000)));
    const next = await feeds.syncNow(source);
    expect(next.mode).toBe('incremental');
    expect(await stored()).toEqual(['PYSEC-2026-1', 'PYSEC-2026-2']);
  });

  it('a record listed at exactly the high-water mark after the last sync is not missed', async () => {
    const t = iso(Date.now() - 3_600_000);
    server.put('PyPI', rec('PYSEC-2026-10', t));
    await feeds.syncNow(source);
    // The next export lists a second record with the same modified time (osv.dev times are not unique).
    server.put('PyPI', rec('PYSEC-2026-11', t));
    const s = await feeds.syncNow(source);
    expect(s.mode).toBe('incremental');
    expect(s.outcome).toBe('changed');
    expect(await stored()).toEqual(['PYSEC-2026-10', 'PYSEC-2026-11']);
    expect(server.asked('PYSEC-2026-11.json')).toHaveLength(1);
    // Records at the mark that the store already holds at that time are not fetched again.
    const jsons = server.asked('.json').length;
    expect((await feeds.syncNow(source)).outcome).toBe('unchanged');
    expect(server.asked('.json')).toHaveLength(jsons);
  });

  it('an all.zip that inflates far beyond advisories.max_bytes (a compression bomb of valid records) is rejected before it is held in memory', async () => {
    // 40 records of 1 MiB each compress to a few KiB apiece: the archive is far under max_bytes (1 MiB here), its records 40 MiB.
    const t = Date.now() - 3_600_000;
    for (let i = 0; i < 40; i++) server.put('PyPI', { ...rec(`PYSEC-2026-${100 + i}`, iso(t)), details: 'a'.repeat(1 << 20) });
    expect(server.zip('PyPI').length).toBeLessThan(1 << 20);
    const s = await feeds.syncNow(source);
    expect(s.outcome).toBe('failed');
    expect(s.error).toMatch(/inflate/);
    expect(await stored()).toEqual([]);
  });

  it('an export serving an older version of a record than the one in force (a stale mirror or a replayed all.zip) does not roll it back', async () => {
    const full: FeedSource = { ...source, incremental: false };
    const now = Date.now();
    const older = { ...rec('PYSEC-2026-30', iso(now - 7_200_000)), summary: 'first version' };
    const newer = { ...rec('PYSEC-2026-30', iso(now - 3_600_000)), summary: 'second version', withdrawn: iso(now - 3_600_000) };
    server.put('PyPI', newer);
    await feeds.syncNow(full);
    server.put('PyPI', older);
    const s = await feeds.syncNow(full);
    expect(s.outcome).toBe('unchanged');
    const [held] = (await meta.listAdvisories()).map((r) => JSON.parse(r) as { summary: string; withdrawn?: string });
    expect(held).toMatchObject({ summary: 'second version', withdrawn: newer.withdrawn });
  });

  it('a modified_id.csv naming ids outside the ecosystem or with ../ is rejected, the data kept', async () => {
    server.put('PyPI', rec('PYSEC-2026-20', iso(Date.now() - 7_200_000)));
    await feeds.syncNow(source);
    server.put('PyPI', rec('PYSEC-2026-21', iso(Date.now() - 3_600_000)));
    for (const prefix of ['../../', 'npm/', 'PyPI/../npm/']) {
      server.csvOverride = (_eco, honest) => honest.replace(',PYSEC-2026-21', `,${prefix}PYSEC-2026-21`);
      const s = await feeds.syncNow(source);
      expect(s.outcome, prefix).toBe('failed');
      expect(s.error, prefix).toMatch(/modified_id\.csv line 1/);
      expect(await stored()).toEqual(['PYSEC-2026-20']);
    }
    // The ecosystem's own prefix stays accepted.
    server.csvOverride = (_eco, honest) => honest.replace(',PYSEC-2026-21', ',PyPI/PYSEC-2026-21');
    expect((await feeds.syncNow(source)).outcome).toBe('changed');
    expect(await stored()).toEqual(['PYSEC-2026-20', 'PYSEC-2026-21']);
  });
});

describe('issue 28 breaks: alert channels', () => {
  it('a webhook URL carrying credentials is refused at load, and a delivery error never carries them', async () => {
    const url = 'http://alerts:hunter2-s3cret@127.0.0.1:9/hook';
    const parsed = notifySchema.safeParse({ webhooks: [{ name: 'ops', url, format: 'slack' }] });
    expect(parsed.success).toBe(false);
    expect(JSON.stringify(parsed.error!.issues)).not.toContain('hunter2');
    expect(parsed.error!.issues[0].message).toMatch(/credentials/);
    // Even past the schema (a channel built by hand), the error recorded and logged names no secret.
    const [ch] = channelsFrom({ ...notifySchema.parse({}), webhooks: [{ name: 'ops', url, format: 'json', secret_env: 'S' }] }, { S: 'k' });
    const err = await ch.send({ event: 'airlock.advisory.affected' } as AlertDocument, { id: 'd', attempt: 1 }).then(
      () => null,
      (e: Error) => e.message,
    );
    expect(err).not.toBeNull();
    expect(err).not.toContain('hunter2');
  });
});

describe('issue 28 breaks: what changed, for whom', () => {
  it('the impact of an advisory on a release pulled 100,000 times is worked out in bounded time (it was quadratic in the pulls, the event loop held)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'breaks28-'));
    const meta = new SqliteMetaStore(join(dir, 'airlock.db'));
    try {
      const N = 100_000;
      const sha256 = 'a'.repeat(64);
      const row = (i: number) => ({
        ts: 1_790_000_000_000 + i,
        client: `ci-${i % 50}`,
        ecosystem: 'pypi' as const,
        name: 'six',
        version: '1.0',
        filename: 'six-1.0-py3-none-any.whl',
        sha256,
        cache: 'hit' as const,
        decision: 'allow' as const,
      });
      await appendPulls(
        meta,
        Array.from({ length: N }, (_, i) => row(i)),
      );
      const advisory = rec('PYSEC-2026-40', '2026-12-01T00:00:00Z') as unknown as OsvRecord;
      const t = Date.now();
      const [impact] = await impactOf(meta, advisory);
      const took = Date.now() - t;
      expect(impact.clients).toHaveLength(50);
      expect(impact.clients.reduce((n, c) => n + c.pulls, 0)).toBe(N);
      // Linear: about 2 s here for two 100,000-row reads; the quadratic dedupe took over 10 s.
      expect(took).toBeLessThan(7000);
    } finally {
      await meta.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
