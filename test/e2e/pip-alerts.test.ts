import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';
import { buildDist, pip } from '../helpers/pip.js';
import { Receiver, tinylibAdvisory } from '../helpers/receiver.js';

/**
 * Issue 28 with the real pip: a release pip installed through Airlock earlier is newly affected by
 * an imported advisory; the receiver gets one alert naming pip's pull (client and time), and pip's
 * next install of the old version is refused while the fixed one installs.
 */
describe('an alert about what pip installed earlier', () => {
  const pub = new FakeIndex();
  const rx = new Receiver();
  let a: TestAirlock;
  const v10 = buildDist({ name: 'tinylib', version: '1.0' });
  const v11 = buildDist({ name: 'tinylib', version: '1.1' });

  beforeAll(async () => {
    process.env.AIRLOCK_TEST_HOOK_SECRET = 'pip-alerts';
    await Promise.all([pub.start(), rx.start()]);
    pub.add('tinylib', v10).add('tinylib', v11);
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
  index_ttl: 0
notify:
  webhooks: [{ name: sec, url: "${rx.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }]
  poll_seconds: 0.1
policy:
  advisories: { refuse: high }
  pypi:
    allow: [{ name: tinylib }]
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
    await rx.stop();
  });

  it('sends one alert with pip’s pull, and pip then gets the fixed version only', async () => {
    const index = `${a.url}/pypi/simple/`;
    const first = mkdtempSync(join(tmpdir(), 'airlock-pip-alert-'));
    const got = await pip(['download', '--index-url', index, '--no-deps', '-d', first, 'tinylib==1.0']);
    expect(got.code, got.out).toBe(0);
    expect(readdirSync(first)).toEqual([v10.filename]);
    const [pulled] = (await records(a, 'ecosystem=pypi')).filter(
      (r: { filename: string; decision: string }) => r.filename === v10.filename && r.decision === 'allow',
    );

    const dir = mkdtempSync(join(tmpdir(), 'airlock-osv-'));
    writeFileSync(join(dir, 'GHSA-tiny-0001.json'), JSON.stringify(tinylibAdvisory()));
    const imp = await airlockCli(['advisories', 'import', dir, '--config', a.configFile]);
    expect(imp.code, imp.stderr).toBe(0);
    await a.airlock.reloadAdvisories(); // what SIGHUP does
    await rx.until(() => rx.delivered('/hook').length === 1);
    await a.airlock.alerting!.idle();
    const doc = JSON.parse(rx.delivered('/hook')[0].body);
    expect(doc.artefact.files).toEqual([{ filename: v10.filename, sha256: sha256(v10.bytes) }]);
    expect(doc.clients).toEqual([
      { client: pulled.client, pulls: 1, first_pull: new Date(pulled.ts).toISOString(), last_pull: new Date(pulled.ts).toISOString() },
    ]);

    const again = mkdtempSync(join(tmpdir(), 'airlock-pip-alert-'));
    const refused = await pip(['download', '--index-url', index, '--no-deps', '-d', again, 'tinylib==1.0']);
    expect(refused.code).not.toBe(0);
    const fixed = await pip(['download', '--index-url', index, '--no-deps', '-d', again, 'tinylib']);
    expect(fixed.code, fixed.out).toBe(0);
    expect(readdirSync(again)).toEqual([v11.filename]);
    expect(rx.received).toHaveLength(1);
  });
});
