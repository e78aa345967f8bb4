// Section 10. Minimum age (issue 27): index pages with pypi.min_age set vs without
// Two servers side by side in one run, loaded in alternating rounds (this machine drifts over
// minutes; a ratio inside a round cancels it). The upstream's upload times are all old enough, so
// both serve the same bytes: the row is the cost of the age check on the serving path (a warm page
// is filtered once per policy, and again only when a left-off file comes of age). The filter of a
// 5,000-file page itself is timed beside it, in this process.
import { join } from 'node:path';
import { median } from '../lib/proc.mjs';

export async function run(ctx) {
  const { ROOT, S, files, startAirlock, load, row, target } = ctx;
  const plainA = await startAirlock();
  const agedA = await startAirlock({ minAge: '7d' });
  const small = files[0].project;
  const pages = [
    [`${S.bigPage}-file page JSON, gzip`, 'bigpage', { accept: 'application/vnd.pypi.simple.v1+json', 'accept-encoding': 'gzip' }, 8],
    ['one-file page JSON', small, { accept: 'application/vnd.pypi.simple.v1+json' }, 32],
  ];
  for (const [label, project, headers, conns] of pages) {
    const without = [];
    const withAge = [];
    for (const x of [plainA, agedA]) {
      const r = await fetch(`${x.url}/pypi/simple/${project}/`, { headers });
      if (r.status !== 200) throw new Error(`${project}: ${r.status}`);
    }
    const a1 = await (await fetch(`${plainA.url}/pypi/simple/${project}/`, { headers: { accept: headers.accept } })).text();
    const a2 = await (await fetch(`${agedA.url}/pypi/simple/${project}/`, { headers: { accept: headers.accept } })).text();
    if (a1 !== a2) throw new Error(`${project}: the pages with and without min_age differ`);
    for (let round = 0; round < Math.max(S.reps, 3); round++) {
      without.push(await load(`${plainA.url}/pypi/simple/${project}/`, headers, conns));
      withAge.push(await load(`${agedA.url}/pypi/simple/${project}/`, headers, conns));
    }
    const med = (xs) => ({ rps: median(xs.map((x) => x.rps)), p99Ms: median(xs.map((x) => x.p99)) });
    const paired = median(withAge.map((x, i) => x.rps / without[i].rps));
    row(`min_age: ${label}`, 'Airlock, no min_age', med(without));
    row(`min_age: ${label}`, 'Airlock, pypi.min_age: 7d', { ...med(withAge), ratio: med(withAge).rps / med(without).rps, ratioPaired: paired });
    target(`min_age ${label} within 10% of the rate without`, paired >= 0.9, `${paired.toFixed(2)}x (per round; ${without.length} rounds)`);
  }
  await plainA.stop();
  await agedA.stop();
  // The filter of a 5,000-file page (what a cold or coming-of-age page costs), with and without min_age.
  const { Policy } = await import(join(ROOT, 'dist', 'policy', 'index.js'));
  const { filterProject } = await import(join(ROOT, 'dist', 'pypi', 'filter.js'));
  const project = {
    name: 'bigpage',
    files: Array.from({ length: S.bigPage }, (_, i) => {
      const v = `${Math.floor(i / 20)}.${i % 20}.0`;
      return {
        filename: `bigpage-${v}-cp311-cp311-manylinux_2_17_x86_64.whl`,
        url: 'https://x/',
        hashes: { sha256: String(i).padStart(64, '0') },
        yanked: false,
        uploadTime: '2024-01-01T00:00:00.000000Z',
      };
    }),
  };
  const ms = (p) => {
    for (let i = 0; i < 3; i++) filterProject(project, p, Date.now());
    const t = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      filterProject(project, p, Date.now());
      t.push(performance.now() - t0);
    }
    return median(t);
  };
  const off = ms(new Policy({ pypi: { allow: [{ name: 'bigpage' }] } }));
  const on = ms(new Policy({ pypi: { min_age: '7d', allow: [{ name: 'bigpage' }] } }));
  row(`min_age: filter a ${S.bigPage}-file page`, 'no min_age', { ms: off });
  row(`min_age: filter a ${S.bigPage}-file page`, 'pypi.min_age: 7d', { ms: on, ratio: on / off });
}
