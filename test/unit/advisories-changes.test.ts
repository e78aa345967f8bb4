import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LivePolicy } from '../../src/core/live-policy.js';
import { Advisories, type OsvRecord } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { applyAdvisoryChanges, readAdvisories, reloadAdvisories } from '../../src/reload.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { quiet, rng, row } from '../helpers/advisory-rig.js';

// A notice applies only the records a sync changed (Advisories.withChanges, reload.ts
// applyAdvisoryChanges) instead of re-reading every stored record. The guarantee: the advisories so
// changed answer every question exactly as those built whole from the same records do, whatever
// order the records came in, and the ones they were made from are left as they were.

const NAMES = ['CVE-2026-1', 'CVE-2026-2', 'CVE-2026-3', 'CVE-2026-4'];
const PKGS = ['alpha', 'beta', 'gamma'];
const DEB = ['openssl', 'zlib'];
const HASHES = ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)];
const VERSIONS = ['1.0', '1.5', '2.0', '3.0'];
const SEVERITIES = [
  undefined,
  { severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }] },
  { severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N' }] },
  { database_specific: { severity: 'MODERATE' } },
];

/** A record that meets others where order decides: shared aliases (severity by name), shared hashes, the same packages. */
function randomRecord(r: () => number, id: string, v: number): OsvRecord {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const mal = id.startsWith('MAL-');
  const deb = id.startsWith('DEBIAN-');
  const affected = deb
    ? [{ package: { ecosystem: 'Debian:12', name: pick(DEB) }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: pick(VERSIONS) }] }] }]
    : [
        {
          package: { ecosystem: 'PyPI', name: pick(PKGS) },
          versions: VERSIONS.filter(() => r() < 0.4),
          ranges: r() < 0.5 ? [{ type: 'ECOSYSTEM', events: [{ introduced: pick(VERSIONS) }, { fixed: pick(VERSIONS) }] }] : undefined,
          ...(mal ? { database_specific: { sha256: pick(HASHES) } } : {}),
        },
      ];
  return {
    id,
    modified: `2026-0${1 + (v % 9)}-01T00:00:00Z`,
    aliases: NAMES.filter(() => r() < 0.3),
    ...(deb ? { upstream: [pick(NAMES)] } : (pick(SEVERITIES) ?? {})),
    ...(r() < 0.15 ? { withdrawn: '2026-10-01T00:00:00Z' } : {}),
    summary: `${id} v${v}`,
    affected,
  } as OsvRecord;
}

/** Everything an index answers for the names, packages, versions and hashes above, in the order it answers. */
function dump(a: Advisories): string {
  const out = [`size=${a.size} withdrawn=${a.withdrawn} newest=${a.newest} debian=${a.osCoverage('Debian:12')}`];
  for (const p of PKGS)
    for (const v of VERSIONS)
      for (const h of [undefined, ...HASHES]) {
        const m = a.matchPypi(p, v, h);
        if (m.length) out.push(`${p}@${v}#${h?.[0]}: ${JSON.stringify(m)}`);
      }
  for (const p of DEB) for (const v of VERSIONS) out.push(`${p}@${v}: ${JSON.stringify(a.matchOs('Debian:12', { name: p, version: v }))}`);
  for (const n of NAMES) out.push(`${n}: get=${a.get(n)?.id} find=${a.find(n)?.id}`);
  return out.join('\n');
}

const ID_POOL = Array.from({ length: 40 }, (_, i) => [`PYSEC-${i}`, `GHSA-${i}`, `MAL-${i}`, `DEBIAN-${i}`][i % 4]);

describe('advisories with changes (what a notice applies)', () => {
  it('answer exactly as those built whole from the same records, and leave the ones they came from unchanged', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed);
      const current = new Map<string, OsvRecord>();
      let v = 0;
      for (const id of ID_POOL) if (r() < 0.6) current.set(id, randomRecord(r, id, v++));
      let held = new Advisories(current.values());
      for (let step = 0; step < 6; step++) {
        const before = dump(held);
        const changes: OsvRecord[] = [];
        for (const id of ID_POOL) if (r() < 0.15) changes.push(randomRecord(r, id, v++));
        for (const c of changes) current.set(c.id, c);
        const next = held.withChanges(changes.map((c) => Advisories.prepare(c)));
        expect(dump(held), `seed ${seed} step ${step}: the advisories changed from are unchanged`).toBe(before);
        expect(dump(next), `seed ${seed} step ${step}`).toBe(dump(new Advisories(current.values())));
        held = next;
      }
    }
  });

  it('answer the same whatever order the records came in (stores sort text differently)', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = rng(seed);
      const recs = ID_POOL.map((id, i) => randomRecord(r, id, i));
      const shuffled = [...recs].sort(() => r() - 0.5);
      expect(dump(new Advisories(shuffled)), `seed ${seed}`).toBe(dump(new Advisories(recs)));
    }
  });

  it('are built in slices when asked, to the same answers', async () => {
    const r = rng(7);
    const recs = Array.from({ length: 2000 }, (_, i) => randomRecord(r, `${['PYSEC', 'GHSA', 'MAL', 'DEBIAN'][i % 4]}-${i}`, i));
    const base = new Advisories(recs);
    const changes = [randomRecord(r, 'GHSA-5', 99), randomRecord(r, 'NEW-1', 100)].map((c) => Advisories.prepare(c));
    let slices = 0;
    const sliced = await base.withChangesSliced(changes, async () => void slices++);
    expect(slices).toBeGreaterThan(100);
    expect(dump(sliced)).toBe(dump(base.withChanges(changes)));
    let sealing = 0;
    const whole = await new Advisories(recs).sealed(async () => void sealing++);
    expect(sealing).toBeGreaterThan(100);
    expect(dump(whole)).toBe(dump(base));
  });
});

describe('applyAdvisoryChanges on a store', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const store = () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-adv-changes-'));
    dirs.push(dir);
    return new SqliteMetaStore(join(dir, 'meta.db'));
  };

  it('reads only the changed records, and the policy in force then answers as a whole re-read does', async () => {
    const meta = store();
    const r = rng(11);
    const ids = Array.from({ length: 400 }, (_, i) => `${['PYSEC', 'GHSA', 'MAL', 'DEBIAN'][i % 4]}-${i}`);
    await meta.putAdvisories(ids.map((id, i) => row(randomRecord(r, id, i))));
    const live = new LivePolicy(new Policy({}), await readAdvisories(meta), { sha256: 'x' } as never);
    let paged = 0;
    let byId = 0;
    const watched = Object.assign(Object.create(meta) as SqliteMetaStore, {
      advisoryPage: (...a: Parameters<SqliteMetaStore['advisoryPage']>) => (paged++, meta.advisoryPage(...a)),
      advisoryRecords: (x: string[]) => ((byId += x.length), meta.advisoryRecords(x)),
    });
    for (let round = 0; round < 5; round++) {
      const g = await meta.advisoryGeneration();
      const changed = [randomRecord(r, ids[round * 7], 500 + round), randomRecord(r, `NEW-${round}`, 600 + round)];
      await meta.putAdvisories(changed.map(row));
      const { ids: told } = await meta.advisoryChangesSince(g);
      expect(told.sort()).toEqual(changed.map((c) => c.id).sort());
      await applyAdvisoryChanges(watched, live, quiet, told);
      expect(dump(live.advisories), `round ${round}`).toBe(dump(await readAdvisories(meta)));
      expect(live.policy.advisories).toBe(live.advisories);
    }
    expect(paged).toBe(0);
    expect(byId).toBe(10);
  });

  it('re-reads every record when half or more changed', async () => {
    const meta = store();
    const r = rng(12);
    await meta.putAdvisories(Array.from({ length: 10 }, (_, i) => row(randomRecord(r, `PYSEC-${i}`, i))));
    const live = new LivePolicy(new Policy({}), new Advisories(), { sha256: 'x' } as never);
    await applyAdvisoryChanges(meta, live, quiet, ['PYSEC-1']);
    // Nothing was held: one changed id is all of them, so every record is read.
    expect(dump(live.advisories)).toBe(dump(await readAdvisories(meta)));
  });

  it('a whole re-read begun later wins over changes read before it; changes begun later go onto it', async () => {
    const meta = store();
    const r = rng(13);
    await meta.putAdvisories(Array.from({ length: 50 }, (_, i) => row(randomRecord(r, `PYSEC-${i}`, i))));
    const live = new LivePolicy(new Policy({}), await readAdvisories(meta), { sha256: 'x' } as never);
    await meta.putAdvisories([row(randomRecord(r, 'PYSEC-3', 90))]);
    // The changes' read is held until the whole re-read has begun and ended.
    let release!: () => void;
    const held = new Promise<void>((res) => (release = res));
    const slow = Object.assign(Object.create(meta) as SqliteMetaStore, {
      advisoryRecords: async (x: string[]) => (await held, meta.advisoryRecords(x)),
    });
    const changes = applyAdvisoryChanges(slow, live, quiet, ['PYSEC-3']);
    await meta.putAdvisories([row(randomRecord(r, 'PYSEC-3', 91))]);
    await reloadAdvisories(meta, live, quiet);
    const whole = live.advisories;
    release();
    await changes;
    expect(live.advisories).toBe(whole);
    expect(live.advisories.get('PYSEC-3')?.summary).toBe('PYSEC-3 v91');
    await meta.putAdvisories([row(randomRecord(r, 'PYSEC-4', 92))]);
    await applyAdvisoryChanges(meta, live, quiet, ['PYSEC-4']);
    expect(dump(live.advisories)).toBe(dump(await readAdvisories(meta)));
  });
});
