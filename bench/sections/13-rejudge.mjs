// Section 13. Re-judging the record against a new feed (issue 28), in this process on a SQLite store:
// 100,000 recorded pulls of 2,000 PyPI releases (1,000 projects x 2 versions, 50 pulls each by
// 20 clients) and 1,000 stored image inventories of 200 Debian packages each (150 base packages
// every image has, at one of 10 versions, and 50 of its own), each image pulled once. Then 1,000
// PyPI advisories (one release each) are imported and the outbox evaluation (alerts/evaluate.ts
// evaluatePending) timed to completion; then 1,000 Debian advisories (150 on the base packages,
// every image a candidate; 3 of them affect half the images, the rest are fixed below every
// installed version) and the same.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export async function run(ctx) {
  const { ROOT, work, row } = ctx;
  const { SqliteMetaStore } = await import(join(ROOT, 'dist', 'storage', 'sqlite-meta-store.js'));
  const { appendPulls } = await import(join(ROOT, 'dist', 'core', 'chain.js'));
  const { evaluatePending } = await import(join(ROOT, 'dist', 'alerts', 'evaluate.js'));
  const dir = join(work, 'rejudge');
  mkdirSync(dir, { recursive: true });
  const meta = new SqliteMetaStore(join(dir, 'meta.db'));
  const hex = (n, w = 64) => n.toString(16).padStart(w, '0');
  const t0 = performance.now();
  const now = Date.now() - 86_400_000;
  let batch = [];
  for (let i = 0; i < 100_000; i++) {
    const p = i % 1000;
    const v = Math.floor(i / 1000) % 2 ? '1.1' : '1.0';
    const name = `bp-${p}`;
    batch.push({
      ts: now + i,
      client: `ci-${i % 20}@10.0.0.${i % 20}`,
      ecosystem: 'pypi',
      name,
      version: v,
      filename: `bp_${p}-${v}-py3-none-any.whl`,
      sha256: hex(p * 2 + (v === '1.1' ? 1 : 0)),
      size: 2000,
      cache: 'hit',
      decision: 'allow',
    });
    if (batch.length === 5000) {
      await appendPulls(meta, batch);
      batch = [];
    }
  }
  const base = (j) => `base-${j}`;
  for (let i = 0; i < 1000; i++) {
    const digest = `sha256:${hex(1_000_000 + i)}`;
    const packages = [];
    for (let j = 0; j < 150; j++) packages.push({ type: 'deb', name: base(j), version: `1.${i % 10}-1`, source: base(j) });
    for (let k = 0; k < 50; k++) packages.push({ type: 'deb', name: `app-${(i * 50 + k) % 5000}`, version: '2.0-1', source: `app-${(i * 50 + k) % 5000}` });
    await meta.inventories.putInventory(digest, 1, JSON.stringify({ os: { ecosystem: 'Debian:12' }, packages }), packages);
    batch.push({
      ts: now + i,
      client: `deployer-${i % 20}@10.0.1.${i % 20}`,
      ecosystem: 'oci',
      name: `bench.local/app${i % 50}`,
      version: 'v1',
      sha256: digest.slice(7),
      cache: 'hit',
      decision: 'allow',
    });
  }
  await appendPulls(meta, batch);
  const seedS = (performance.now() - t0) / 1000;
  const modified = '2026-12-03T00:00:00Z';
  const quiet = { info() {}, warn() {}, error() {}, debug() {} };
  const deps = { meta, policy: () => undefined, channels: ['bench'], baseUrl: 'https://airlock.example/', log: quiet };
  const timed = async (recs) => {
    await meta.putAdvisories(recs.map((r) => ({ id: r.id, modified, record: JSON.stringify({ ...r, modified }) })));
    const t = performance.now();
    const alerts = await evaluatePending(deps);
    return { s: (performance.now() - t) / 1000, alerts };
  };
  const cvss = [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }];
  const pypi = await timed(
    Array.from({ length: 1000 }, (_, a) => ({
      id: `GHSA-bench-${a}`,
      severity: cvss,
      affected: [{ package: { ecosystem: 'PyPI', name: `bp-${a}` }, versions: ['1.0'] }],
    })),
  );
  row('re-judge: 1,000 PyPI advisories', '100,000 pulls of 2,000 releases', { seconds: pypi.s, alerts: pypi.alerts, seedSeconds: seedS });
  const debian = await timed(
    Array.from({ length: 1000 }, (_, a) => ({
      id: `DEBIAN-CVE-2099-${a}`,
      affected: [
        {
          package: { ecosystem: 'Debian:12', name: a < 150 ? base(a) : `app-${a * 5}` },
          ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: a < 150 && a % 50 === 0 ? '1.5-1' : '1.0-0' }] }],
          ecosystem_specific: { urgency: 'high' },
        },
      ],
    })),
  );
  row('re-judge: 1,000 Debian advisories', '1,000 inventories of 200 packages', { seconds: debian.s, alerts: debian.alerts });
  await meta.close();
  rmSync(dir, { recursive: true, force: true });
}
