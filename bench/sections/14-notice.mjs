// Section 14. A notice of changed advisories (a feed sync that changed 3 records) on a server holding
// 20,000 (~60 MB of JSON; one in ten lists 300 versions, the rest 20), in this process on a SQLite
// store: what the notice costs now (reload.ts applyAdvisoryChanges: the changed records read and
// prepared, the rest reused) against the whole re-read every notice did before (reloadAdvisories),
// side by side in each round: CPU time, wall time, and the event loop's longest stop meanwhile (a
// timer every millisecond).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { median } from '../lib/proc.mjs';

const RECORDS = 20_000;

function record(i, v) {
  const versions = Array.from({ length: i % 10 === 0 ? 300 : 20 }, (_, k) => `${Math.floor(k / 10)}.${k % 10}.${i % 7}`);
  return {
    id: `PYSEC-2026-${String(i).padStart(6, '0')}`,
    modified: `2026-11-01T00:00:${String(v % 60).padStart(2, '0')}Z`,
    aliases: [`CVE-2026-${i}`],
    summary: `an advisory, version ${v}`,
    details: 'd'.repeat(2000),
    severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
    affected: [
      { package: { ecosystem: 'PyPI', name: `pkg${i % 3000}` }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '9.0' }] }], versions },
    ],
  };
}
const row = (r) => ({ id: r.id, modified: r.modified, record: JSON.stringify(r) });

/** CPU ms, wall ms and the longest gap between 1 ms timers while `fn` runs. */
async function measure(fn) {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(timer);
  worst = Math.max(worst, performance.now() - last);
  return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs: wall, stallMs: worst };
}

export async function run(ctx) {
  const { ROOT, work, S, row: out, target } = ctx;
  const dist = (...p) => import(join(ROOT, 'dist', ...p));
  const { SqliteMetaStore } = await dist('storage', 'sqlite-meta-store.js');
  const { LivePolicy } = await dist('core', 'live-policy.js');
  const { Policy } = await dist('policy', 'index.js');
  const { applyAdvisoryChanges, readAdvisories, reloadAdvisories } = await dist('reload.js');
  const dir = join(work, 'notice');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const meta = new SqliteMetaStore(join(dir, 'meta.db'));
  const all = Array.from({ length: RECORDS }, (_, i) => row(record(i, 0)));
  for (let i = 0; i < all.length; i += 250) await meta.putAdvisories(all.slice(i, i + 250));
  const log = { info() {}, warn() {}, error() {}, debug() {} };
  const live = new LivePolicy(new Policy({}), await readAdvisories(meta), { sha256: 'bench' });
  const whole = [];
  const changed = [];
  for (let round = 0; round < Math.max(S.reps, 3); round++) {
    const ids = [5, 4321, 19_999].map((i) => record(i, round + 1));
    await meta.putAdvisories(ids.map(row));
    changed.push(
      await measure(() =>
        applyAdvisoryChanges(
          meta,
          live,
          log,
          ids.map((r) => r.id),
        ),
      ),
    );
    if (live.advisories.get(ids[0].id)?.summary !== ids[0].summary) throw new Error('section 14: the change was not applied');
    whole.push(await measure(() => reloadAdvisories(meta, live, log)));
  }
  await meta.close();
  rmSync(dir, { recursive: true, force: true });
  const fig = (xs) => ({
    cpuMs: Math.round(median(xs.map((x) => x.cpuMs))),
    wallMs: Math.round(median(xs.map((x) => x.wallMs))),
    stallMs: Math.round(Math.max(...xs.map((x) => x.stallMs))),
  });
  const now = fig(changed);
  const before = fig(whole);
  out('advisory notice: 3 changed among 20,000', 'the changed records read, the rest reused', now);
  out('advisory notice: the whole re-read (before)', 'every record read and parsed', before);
  const perRound = changed.map((c, i) => c.cpuMs / whole[i].cpuMs);
  target(
    'a notice of 3 changed advisories among 20,000 costs <= 0.1x the CPU of the whole re-read, same run',
    perRound.every((r) => r <= 0.1),
    `per round ${perRound.map((r) => r.toFixed(3)).join(' ')} (${now.cpuMs} vs ${before.cpuMs} CPU-ms, median); longest stop ${now.stallMs} vs ${before.stallMs} ms`,
    { perRound },
  );
}
