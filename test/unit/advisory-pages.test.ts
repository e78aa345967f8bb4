import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LivePolicy, policyVersion } from '../../src/core/live-policy.js';
import { Advisories } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { readAdvisories, reloadAdvisories } from '../../src/reload.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';

/**
 * The server re-reads every stored advisory when any changed. Read at once, 20,000 records stopped
 * its event loop for about a second on every change; read in pages, the loop turns between them.
 */
describe('the advisories the server reloads', () => {
  it('are read a page at a time with the event loop turning between pages, and index exactly as when read at once', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const N = 1_300;
    const rec = (i: number) => ({
      id: i % 2 ? `PYSEC-2026-${i}` : `GHSA-${i}`,
      modified: '2026-01-01T00:00:00Z',
      withdrawn: i % 97 === 0 ? '2026-02-01T00:00:00Z' : undefined,
      affected: [
        { package: { ecosystem: 'PyPI', name: `pkg${i % 400}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: `${i}.0` }] }] },
      ],
    });
    const recs = Array.from({ length: N }, (_, i) => rec(i));
    await meta.putAdvisories(recs.map((r) => ({ id: r.id, modified: r.modified, record: JSON.stringify(r) })));
    let turns = 0;
    let counting = true;
    const count = () => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    const paged = await readAdvisories(meta);
    counting = false;
    const atOnce = new Advisories((await meta.listAdvisories()).map((j) => JSON.parse(j)));
    // 1,300 records are six pages of 250: the loop turned between each two of them.
    expect(turns).toBeGreaterThanOrEqual(5);
    expect([paged.size, paged.withdrawn]).toEqual([atOnce.size, atOnce.withdrawn]);
    expect(paged.size + paged.withdrawn).toBe(N);
    for (const name of ['pkg0', 'pkg1', 'pkg399']) {
      const ids = (a: Advisories) =>
        a
          .matchPypi(name, '0.5')
          .map((m) => m.id)
          .sort();
      expect(ids(paged)).toEqual(ids(atOnce));
      expect(ids(paged).length).toBeGreaterThan(0);
    }
    await meta.close();
  });

  it('of two reloads under way at once (SIGHUP beside a change noticed), the one begun later stays in force even when the older ends last', async () => {
    const meta = new SqliteMetaStore(':memory:');
    const dir = mkdtempSync(join(tmpdir(), 'airlock-reloads-'));
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'policy: {}\n');
    const mal = (id: string, withdrawn?: string) => ({
      id,
      modified: withdrawn ?? '2026-01-01T00:00:00Z',
      record: JSON.stringify({ id, withdrawn, affected: [{ package: { ecosystem: 'PyPI', name: 'evil' }, versions: ['1.0'] }] }),
    });
    await meta.putAdvisories([mal('MAL-2026-1')]);
    const live = new LivePolicy(new Policy({}), new Advisories(), policyVersion(file));
    // The first reload's reader is held after its first page; the record is withdrawn; a second reload runs whole.
    let hold: (() => void) | undefined;
    const page = meta.advisoryPage.bind(meta);
    let calls = 0;
    Object.assign(meta, {
      advisoryPage: async (after: string | null, limit: number) => {
        const rows = await page(after, limit);
        if (++calls === 1) await new Promise<void>((r) => (hold = r));
        return rows;
      },
    });
    const log = pino({ level: 'silent' });
    const older = reloadAdvisories(meta, live, log);
    while (!hold) await new Promise((r) => setImmediate(r));
    await meta.putAdvisories([mal('MAL-2026-1', '2026-02-01T00:00:00Z')]);
    await reloadAdvisories(meta, live, log);
    expect(live.advisories.matchPypi('evil', '1.0')).toEqual([]);
    hold();
    await older;
    // The older read saw the record live; it does not put it back.
    expect(live.advisories.matchPypi('evil', '1.0')).toEqual([]);
    expect(live.advisories.withdrawn).toBe(1);
    await meta.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
