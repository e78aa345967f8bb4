import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedSource } from '../../src/advisories/feed.js';
import { LivePolicy } from '../../src/core/live-policy.js';
import { createLogger } from '../../src/obs/logger.js';
import { Advisories } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { reloadAdvisories } from '../../src/reload.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { writeZip, type ZipInput } from '../helpers/zip-writer.js';
import { longestStall } from '../helpers/stall.js';
import { feedsOver } from '../helpers/advisory-rig.js';

/**
 * Guarantee: a feed sync runs on the server's own event loop and never stops it for more than
 * ~100 ms in one stretch, whatever the export. Each export below is made once, before anything is
 * measured (in-process, test/helpers/zip-writer.ts), and served from loopback; the loop is watched
 * with a 1 ms timer and a tick after the work.
 */
const LIMIT_MS = 100;
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-feedsync-stall-'));
const feed = new OsvFeedServer();
const log = createLogger('silent');
let url = '';
const zips = new Map<string, Buffer>();
let dbs = 0;

const T = '2026-01-01T00:00:00Z';
const small = (i: number, modified = T) => ({
  id: `PYSEC-2026-${i}`,
  modified,
  details: 'd'.repeat(1500),
  affected: [{ package: { ecosystem: 'PyPI', name: `pkg${i}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.2.3' }] }] }],
});
const tiny = (i: number) => ({ id: `GHSA-${i}`, modified: T, affected: [{ package: { ecosystem: 'PyPI', name: `t${i % 900}` }, versions: [`${i}.0`] }] });
/** ~100 KB: a record listing thousands of versions (as osv.dev's largest PyPI records do; records of one project list the same versions). */
const wide = (i: number) => ({
  id: `PYSEC-2025-${i}`,
  modified: T,
  affected: [{ package: { ecosystem: 'PyPI', name: `wide${i % 5}` }, versions: Array.from({ length: 9000 }, (_, v) => `${v >> 6}.${v & 63}.${i % 5}`) }],
});
const json = (r: { id: string }): ZipInput => ({ name: `${r.id}.json`, data: JSON.stringify(r) });

beforeAll(async () => {
  zips.set('small-20k', writeZip(Array.from({ length: 20_000 }, (_, i) => json(small(i)))));
  zips.set('wide-400', writeZip(Array.from({ length: 400 }, (_, i) => json(wide(i)))));
  zips.set('tiny-30k', writeZip(Array.from({ length: 30_000 }, (_, i) => json(tiny(i)))));
  // 60,000 entries of which 100 are records: a README, licences, a tree of other files.
  const noise: ZipInput[] = Array.from({ length: 60_000 }, (_, i) => ({ name: `docs/${i}/NOTES.txt`, data: `not a record ${i}` }));
  zips.set('noise-60k', writeZip([...noise.slice(0, 30_000), ...Array.from({ length: 100 }, (_, i) => json(small(i))), ...noise.slice(30_000)]));
  // The central directory in reverse and interleaved against the data's order (a valid zip: readers follow the directory).
  const odd = Array.from({ length: 15_000 }, (_, i) => json(small(i)));
  const order = odd.map((_, i) => (i % 2 ? i : odd.length - 1 - i)).filter((v, i, a) => a.indexOf(v) === i);
  const rest = odd.map((_, i) => i).filter((i) => !order.includes(i));
  zips.set('odd-15k', writeZip(odd, { order: [...order, ...rest] }));
  feed.put('PyPI', small(0));
  url = (await feed.start()).url;
}, 120_000);
afterAll(async () => {
  await feed.stop();
  rmSync(dir, { recursive: true, force: true });
});

function setUp(zip: string, apply?: (meta: SqliteMetaStore) => () => Promise<number>) {
  const z = zips.get(zip)!;
  feed.zip = () => z;
  const source: FeedSource = { name: 'osv-pypi', url, ecosystem: 'PyPI', incremental: false };
  const meta = new SqliteMetaStore(join(dir, `${dbs++}.db`));
  const feeds = feedsOver(meta, [source], { apply: apply?.(meta), maxBytes: 256 << 20, timeoutMs: 60_000, maxIncremental: 100 });
  return { meta, feeds, source };
}

/**
 * A stretch of work longer than the limit shows in every run; a machine busy with other work (two
 * cores, other test files) stretches one now and then. So: up to three runs, each on a fresh store,
 * and the best of them is held to the limit.
 */
async function bestOf<T>(run: () => Promise<T[]>): Promise<T[][]> {
  const runs: T[][] = [];
  for (let i = 0; i < 3; i++) {
    runs.push(await run());
    if ((runs.at(-1) as { stallMs: number }[]).every((r) => r.stallMs < LIMIT_MS)) break;
  }
  return runs;
}

describe('break: a feed sync never stops the event loop for more than ~100 ms', () => {
  for (const [zip, n] of [
    ['small-20k', 20_000],
    ['wide-400', 400],
    ['tiny-30k', 30_000],
    ['noise-60k', 100],
    ['odd-15k', 15_000],
  ] as const) {
    it(`${zip}: first sync and a sync with nothing changed`, async () => {
      const runs = await bestOf(async () => {
        const { meta, feeds, source } = setUp(zip);
        try {
          const first = await longestStall(() => feeds.syncNow(source));
          expect(first.value).toMatchObject({ outcome: 'changed', changed: n });
          const again = await longestStall(() => feeds.syncNow(source));
          expect(again.value).toMatchObject({ outcome: 'unchanged', changed: 0 });
          return [first, again];
        } finally {
          await meta.close();
        }
      });
      console.log(`${zip}: longest stalls (new, unchanged) ${runs.map((r) => r.map((x) => x.stallMs.toFixed(0)).join('/')).join(', ')} ms`);
      expect(Math.min(...runs.map((r) => r[0].stallMs))).toBeLessThan(LIMIT_MS);
      expect(Math.min(...runs.map((r) => r[1].stallMs))).toBeLessThan(LIMIT_MS);
    }, 60_000);
  }

  it("the server's whole pass (sync, then the change applied to the policy in force) of 20,000 records", async () => {
    const runs = await bestOf(async () => {
      const live = new LivePolicy(new Policy({}), new Advisories(), 'v' as never);
      const { meta, feeds } = setUp('small-20k', (m) => () => reloadAdvisories(m, live, log));
      try {
        const pass = await longestStall(() => feeds.tick());
        expect(live.advisories.size).toBe(20_000);
        return [pass];
      } finally {
        await meta.close();
      }
    });
    console.log(`pass: longest stalls ${runs.map((r) => r[0].stallMs.toFixed(0)).join(', ')} ms`);
    expect(Math.min(...runs.map((r) => r[0].stallMs))).toBeLessThan(LIMIT_MS);
  }, 60_000);
});
