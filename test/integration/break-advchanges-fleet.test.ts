import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgMetaStore } from '../../src/storage/pg-meta-store.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { spawnServe } from '../helpers/fleet.js';
import { rawGet } from '../helpers/http.js';
import { freePort } from '../helpers/oci-tools.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { until } from '../helpers/stuck.js';

/**
 * Attack on a notice that applies only the changed advisories (f1e3678) with two real servers
 * (`node dist/cli/main.js serve`, built: `npx tsc -p tsconfig.build.json` first) sharing one
 * PostgreSQL, `airlock advisories import` by hand (the built CLI) beside them, and SIGHUPs sent to
 * both while the imports write: each replica's pulls must come to be answered as the store says,
 * withdrawals, un-withdrawals and an import holding two copies of a record included.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-break-advchanges-fleet-'));
const index = new FakeIndex();
let pgsrv: TestPostgres;
const spawned: ChildProcess[] = [];
const SCHEMA = 'advchanges_fleet';
const HIGH = 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H';
const LOW = 'CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N';
const wheel = (name: string, v: string) => `${name}-${v}-py3-none-any.whl`;

async function config(name: string): Promise<{ file: string; port: number }> {
  const port = await freePort();
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `listen: 127.0.0.1:${port}
data_dir: ${join(dir, `data-${name}`)}
log_level: info
storage:
  meta: postgres
  postgres_url_env: AIRLOCK_TEST_PG
  postgres_schema: ${SCHEMA}
auth:
  admin: open
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
advisories:
  poll: 1
policy:
  advisories: { refuse: high }
  pypi:
    allow:
      - { name: lib }
      - { name: other }
`,
  );
  return { file, port };
}

beforeAll(async () => {
  [pgsrv] = await Promise.all([startPostgres(), index.start()]);
  for (const n of ['lib', 'other']) for (const v of ['1.0', '2.0']) index.add(n, { filename: wheel(n, v), bytes: Buffer.from(`${n} ${v}`) });
  const meta = await PgMetaStore.open(pgsrv.url, { schema: SCHEMA });
  const T = '2026-01-01T00:00:00Z';
  const rows = Array.from({ length: 3000 }, (_, i) => {
    const id = `PYSEC-2026-${String(i).padStart(4, '0')}`;
    return {
      id,
      modified: T,
      record: JSON.stringify({ id, modified: T, details: 'd'.repeat(1500), affected: [{ package: { ecosystem: 'PyPI', name: `q${i}` }, versions: ['1.0'] }] }),
    };
  });
  for (let i = 0; i < rows.length; i += 500) await meta.putAdvisories(rows.slice(i, i + 500));
  await meta.markAdvisoriesTold(await meta.advisoryGeneration());
  await meta.close();
}, 60_000);
afterAll(async () => {
  for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await index.stop();
  await pgsrv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** An import's tree: `recs` as files (two files may hold one id), and `touch` of the 3,000 records changed beside them. */
function tree(name: string, recs: [string, Record<string, unknown>][], touch: number, v: number): string {
  const root = join(dir, name);
  mkdirSync(root, { recursive: true });
  for (const [f, r] of recs) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), JSON.stringify(r));
  }
  for (let i = 0; i < touch; i++) {
    const id = `PYSEC-2026-${String((i * 37 + v) % 3000).padStart(4, '0')}`;
    const modified = `2026-01-0${1 + v}T00:00:00Z`;
    writeFileSync(
      join(root, `${id}.json`),
      JSON.stringify({ id, modified, details: `v${v}`, affected: [{ package: { ecosystem: 'PyPI', name: `q${i}` }, versions: [`${v}.0`] }] }),
    );
  }
  return root;
}
const mal = (modified: string, versions: string[], withdrawn?: string) => ({
  id: 'MAL-2026-lib',
  modified,
  ...(withdrawn ? { withdrawn } : {}),
  affected: [{ package: { ecosystem: 'PyPI', name: 'lib' }, versions }],
});
const ghsa = (modified: string, score: string) => ({
  id: 'GHSA-other-0001',
  modified,
  severity: [{ type: 'CVSS_V3', score }],
  affected: [{ package: { ecosystem: 'PyPI', name: 'other' }, versions: ['2.0'] }],
});

describe('break: two real servers on one PostgreSQL, imports by hand beside them, SIGHUPs while they write', () => {
  it('each replica comes to answer every pull as the store says, and says it applied the changes, not a re-read of all', async () => {
    const [a, b] = [await config('a'), await config('b')];
    const servers = [a, b].map((c) => {
      const s = spawnServe(c.file, { AIRLOCK_TEST_PG: pgsrv.url });
      spawned.push(s.proc);
      return { ...s, port: c.port };
    });
    const status = async (port: number, name: string, v: string) =>
      (await rawGet(`http://127.0.0.1:${port}/pypi/files/${name}/${wheel(name, v)}`, { connection: 'close' })).status;
    for (const s of servers) expect(await until(() => /airlock listening/.test(s.out()), 20_000), s.out()).toBe(true);
    const steps: { name: string; recs: [string, Record<string, unknown>][]; want: Record<string, number> }[] = [
      {
        name: 'refused',
        recs: [
          ['mal.json', mal('2026-02-01T00:00:00Z', ['1.0'])],
          ['ghsa.json', ghsa('2026-02-01T00:00:00Z', HIGH)],
        ],
        want: { 'lib@1.0': 403, 'lib@2.0': 200, 'other@1.0': 200, 'other@2.0': 403 },
      },
      {
        name: 'withdrawn',
        recs: [
          ['mal.json', mal('2026-03-01T00:00:00Z', ['1.0'], '2026-03-01T00:00:00Z')],
          ['ghsa.json', ghsa('2026-03-01T00:00:00Z', LOW)],
        ],
        want: { 'lib@1.0': 200, 'lib@2.0': 200, 'other@1.0': 200, 'other@2.0': 200 },
      },
      {
        // Two copies of the record in one import: the newer (live again, naming 2.0) is the one kept, wherever it lies.
        name: 'two-copies',
        recs: [
          ['a/mal.json', mal('2026-04-02T00:00:00Z', ['2.0'])],
          ['z/mal.json', mal('2026-04-01T00:00:00Z', ['1.0'])],
        ],
        want: { 'lib@1.0': 200, 'lib@2.0': 403, 'other@1.0': 200, 'other@2.0': 200 },
      },
    ];
    const converge: number[] = [];
    for (const [k, step] of steps.entries()) {
      const root = tree(step.name, step.recs, 40, k + 1);
      const imported = airlockCli(['advisories', 'import', root, '--config', a.file], { AIRLOCK_TEST_PG: pgsrv.url });
      // SIGHUPs to both while the import writes.
      for (let h = 0; h < 3; h++) {
        await new Promise((r) => setTimeout(r, 150));
        for (const s of servers) s.proc.kill('SIGHUP');
      }
      const out = await imported;
      expect(out.code, `${step.name}: ${out.stderr}`).toBe(0);
      if (step.name === 'two-copies') expect(out.stderr).toContain('MAL-2026-lib: another copy is kept');
      else expect(out.stderr, step.name).toBe('');
      const t0 = Date.now();
      const ok = await until(async () => {
        for (const s of servers)
          for (const [pv, want] of Object.entries(step.want)) {
            const [name, v] = pv.split('@');
            if ((await status(s.port, name, v)) !== want) return false;
          }
        return true;
      }, 10_000);
      converge.push(Date.now() - t0);
      const seen: string[] = [];
      for (const s of servers)
        for (const pv of Object.keys(step.want)) {
          const [name, v] = pv.split('@');
          seen.push(`${s.port} ${pv}: ${await status(s.port, name, v)}`);
        }
      expect(ok, `${step.name}: ${seen.join('; ')}`).toBe(true);
    }
    console.log(`both replicas answered as the store says ${converge.map((ms) => `${ms} ms`).join(', ')} after each import`);
    for (const s of servers) {
      const log = s.out();
      expect(log, 'a notice applied the changed records').toMatch(/"changed":\d+,"msg":"advisories changed: applied"/);
      expect(log.split('\n').filter((l) => /"level":(50|60)/.test(l) || /Unhandled/.test(l))).toEqual([]);
      s.proc.kill('SIGTERM');
      expect(await s.exited).toBe(0);
    }
  }, 60_000);
});
