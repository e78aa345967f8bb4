import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { serveProcess } from '../helpers/fleet.js';
import { rawGet, records } from '../helpers/http.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { Receiver, tinylibAdvisory } from '../helpers/receiver.js';

const env = { AIRLOCK_TEST_HOOK_SECRET: 'recovery-secret' };
const wheel = (v: string) => `tinylib-${v}-py3-none-any.whl`;
const advisoryOf = (id: string, events: Record<string, string>[]) => {
  const r = tinylibAdvisory(id);
  r.affected[0].ranges[0].events = events;
  return r;
};
const keysOf = (rx: Receiver) => rx.delivered('/hook').map((r) => `${JSON.parse(r.body).advisory.id} ${JSON.parse(r.body).artefact.key}`);

/** Alerts are never lost across a crash, and sent once per fleet (issue 28). */
describe('alerts: recovery and replicas', () => {
  const pub = new FakeIndex();
  const rx = new Receiver();

  beforeAll(async () => {
    await Promise.all([pub.start(), rx.start()]);
    pub.add('tinylib', { filename: wheel('1.0'), bytes: randomBytes(1500) }).add('tinylib', { filename: wheel('1.1'), bytes: randomBytes(1500) });
  });
  afterAll(async () => {
    await pub.stop();
    await rx.stop();
  });

  it('no flood at first configuration; kill -9 between import and delivery, and an import while down: each alert delivered exactly once after restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-alerts-crash-'));
    const cfg = join(dir, 'airlock.yaml');
    const base = `listen: 127.0.0.1:0
data_dir: ${join(dir, 'data')}
auth: { admin: open }
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
policy:
  pypi:
    allow: [{ name: tinylib }]
`;
    const notify = `notify:
  webhooks: [{ name: sec, url: "${rx.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }]
  timeout_seconds: 1
  retry_initial_seconds: 0.2
  poll_seconds: 0.1
`;
    const imp = async (rec: object) => {
      const f = join(mkdtempSync(join(tmpdir(), 'airlock-osv-')), 'rec.json');
      writeFileSync(f, JSON.stringify(rec));
      const r = await airlockCli(['advisories', 'import', f, '--config', cfg]);
      expect(r.code, r.stderr).toBe(0);
    };
    const stopped = async (p: ChildProcess, sig: NodeJS.Signals) => {
      const exit = once(p, 'exit');
      p.kill(sig);
      await exit;
    };

    // Before alerting is configured: both releases pulled, and an advisory against 1.0 imported and applied.
    writeFileSync(cfg, base);
    let s = await serveProcess(cfg, env);
    const url = (v: string) => `http://127.0.0.1:${s.port}/pypi/files/tinylib/${wheel(v)}`;
    expect((await rawGet(url('1.0'), {}, { localAddress: '127.0.0.2' })).status).toBe(200);
    expect((await rawGet(url('1.1'), {}, { localAddress: '127.0.0.2' })).status).toBe(200);
    await imp(advisoryOf('GHSA-before', [{ introduced: '0' }, { fixed: '1.1' }]));
    s.proc.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
    await stopped(s.proc, 'SIGTERM');

    // Alerting configured: the receiver takes the first delivery and never answers; the server is killed mid-delivery.
    writeFileSync(cfg, base + notify);
    rx.status = 'hang';
    s = await serveProcess(cfg, env);
    await new Promise((r) => setTimeout(r, 500));
    expect(rx.received).toEqual([]); // GHSA-before was there before alerting: no alert for it.
    await imp(advisoryOf('GHSA-during', [{ introduced: '1.1' }, { fixed: '1.2' }]));
    s.proc.kill('SIGHUP');
    await rx.until(() => rx.received.length === 1);
    await stopped(s.proc, 'SIGKILL');

    // While it is down, another advisory is imported (nobody applies it yet); the receiver recovers.
    await imp(advisoryOf('GHSA-while-down', [{ introduced: '1.0' }, { fixed: '1.2' }]));
    rx.status = 200;
    s = await serveProcess(cfg, env);
    try {
      // GHSA-during waits for the dead process's claim to expire (3 delivery timeouts); GHSA-while-down is evaluated at start.
      await rx.until(() => rx.delivered('/hook').length >= 3, 20_000);
      await new Promise((r) => setTimeout(r, 1500));
      expect(keysOf(rx).sort()).toEqual(['GHSA-during pkg:pypi/tinylib@1.1', 'GHSA-while-down pkg:pypi/tinylib@1.0', 'GHSA-while-down pkg:pypi/tinylib@1.1']);
      const hung = rx.received[0];
      expect(rx.delivered('/hook').find((r) => JSON.parse(r.body).advisory.id === 'GHSA-during')!.headers['x-airlock-delivery']).toBe(
        hung.headers['x-airlock-delivery'],
      );
    } finally {
      await stopped(s.proc, 'SIGTERM');
    }
  }, 90_000);

  describe('two replicas on PostgreSQL', () => {
    let pgsrv: TestPostgres;
    let a: TestAirlock;
    let b: TestAirlock;
    const fleet = new Receiver();
    beforeAll(async () => {
      [pgsrv] = await Promise.all([startPostgres(), fleet.start()]);
      process.env.AIRLOCK_TEST_PG = pgsrv.url;
      process.env.AIRLOCK_TEST_HOOK_SECRET = env.AIRLOCK_TEST_HOOK_SECRET;
      const yaml = `storage:
  meta: postgres
  postgres_url_env: AIRLOCK_TEST_PG
  postgres_schema: alerts_fleet
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
notify:
  webhooks:
    - { name: sec, url: "${fleet.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }
    - { name: chat, url: "${fleet.url('/slack')}", format: slack }
  poll_seconds: 0.05
policy:
  pypi:
    allow: [{ name: tinylib }]
`;
      a = await startAirlock(yaml);
      b = await startAirlock(yaml);
    }, 60_000);
    afterAll(async () => {
      await a?.stop();
      await b?.stop();
      await fleet.stop();
      await pgsrv?.stop();
    });

    it('both apply the import and evaluate it at once: one alert per channel, not two', async () => {
      expect((await rawGet(`${a.url}/pypi/files/tinylib/${wheel('1.0')}`, {}, { localAddress: '127.0.0.4' })).status).toBe(200);
      expect((await rawGet(`${b.url}/pypi/files/tinylib/${wheel('1.0')}`, {}, { localAddress: '127.0.0.5' })).status).toBe(200);
      await records(a);
      await records(b);
      const rec = tinylibAdvisory('GHSA-fleet');
      await a.airlock.meta.putAdvisories([{ id: rec.id, modified: rec.modified, record: JSON.stringify(rec) }]);
      await Promise.all([a.airlock.reloadAdvisories(), b.airlock.reloadAdvisories(), a.airlock.alerting!.evaluate(), b.airlock.alerting!.evaluate()]);
      await fleet.until(() => fleet.delivered('/hook').length >= 1 && fleet.delivered('/slack').length >= 1);
      await new Promise((r) => setTimeout(r, 1000));
      await Promise.all([a.airlock.alerting!.idle(), b.airlock.alerting!.idle()]);
      expect(fleet.received.map((r) => r.path).sort()).toEqual(['/hook', '/slack']);
      const doc = JSON.parse(fleet.delivered('/hook')[0].body);
      expect(doc.clients.map((c: { client: string }) => c.client)).toEqual(['127.0.0.4', '127.0.0.5']);
      expect(await a.airlock.meta.alerts.alertCounts()).toEqual({ pending: 0, failing: 0 });
      // The other replica's view of the same incident: the same rows.
      expect((await b.airlock.meta.alerts.listAlerts({ advisoryId: 'GHSA-fleet', limit: 10 })).map((r) => r.deliveredAt !== null)).toEqual([true, true]);
    });
  });
});
