import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { appendPulls } from '../../src/core/chain.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { importAdvisory, Receiver, tinylibAdvisory } from '../helpers/receiver.js';
import { consoleLogin } from '../helpers/console-login.js';

const SECRET = 'alert-secret-for-tests';

describe('alerts: an advisory import that newly affects a release pulled earlier (issue 28)', () => {
  const pub = new FakeIndex();
  const rx = new Receiver();
  let a: TestAirlock;
  const v10 = randomBytes(2000);
  const v11 = randomBytes(2000);
  const wheel = (v: string) => `tinylib-${v}-py3-none-any.whl`;

  beforeAll(async () => {
    process.env.AIRLOCK_TEST_HOOK_SECRET = SECRET;
    await Promise.all([pub.start(), rx.start()]);
    pub.add('tinylib', { filename: wheel('1.0'), bytes: v10 }).add('tinylib', { filename: wheel('1.1'), bytes: v11 });
    a = await startAirlock(`
public_url: https://airlock.example/
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
notify:
  webhooks:
    - { name: sec, url: "${rx.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }
    - { name: chat, url: "${rx.url('/slack')}", format: slack }
  retry_initial_seconds: 0.2
  retry_max_seconds: 0.4
  poll_seconds: 0.1
policy:
  advisories: { refuse: high }
  pypi:
    allow:
      - { name: tinylib }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
    await rx.stop();
  });

  const file = (v: string) => `${a.url}/pypi/files/tinylib/${wheel(v)}`;

  it('sends one signed alert per channel naming the advisory, the release, its files and every client that pulled it and when; retried past a failing receiver', async () => {
    // Two clients (two loopback addresses) pull 1.0 before anything is known against it; one pulls 1.1.
    expect((await rawGet(file('1.0'), {}, { localAddress: '127.0.0.2' })).status).toBe(200);
    expect((await rawGet(file('1.0'), {}, { localAddress: '127.0.0.3' })).status).toBe(200);
    expect((await rawGet(file('1.0'), {}, { localAddress: '127.0.0.2' })).status).toBe(200);
    expect((await rawGet(file('1.1'), {}, { localAddress: '127.0.0.2' })).status).toBe(200);
    const pulls = (await records(a, 'ecosystem=pypi')).filter((r: { version: string; decision: string }) => r.version === '1.0' && r.decision === 'allow');
    expect(pulls).toHaveLength(3);
    await a.airlock.alerting!.idle();
    expect(rx.received).toEqual([]);

    // The receiver fails for a while: the alert waits in the outbox and is retried.
    rx.status = 500;
    await importAdvisory(a, tinylibAdvisory());
    await rx.until(() => rx.received.filter((r) => r.path === '/hook').length >= 2);
    rx.status = 200;
    await rx.until(() => rx.delivered('/hook').length === 1 && rx.delivered('/slack').length === 1);

    const [hook] = rx.delivered('/hook');
    const ts = String(hook.headers['x-airlock-timestamp']);
    expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(30);
    expect(hook.headers['x-airlock-signature']).toBe(`sha256=${createHmac('sha256', SECRET).update(`${ts}.${hook.body}`).digest('hex')}`);
    // Signed over the timestamp: the same body with another timestamp does not verify (a replay cannot be re-dated).
    expect(hook.headers['x-airlock-signature']).not.toBe(
      `sha256=${createHmac('sha256', SECRET)
        .update(`${Number(ts) + 600}.${hook.body}`)
        .digest('hex')}`,
    );
    const failedTries = rx.received.filter((r) => r.path === '/hook' && r.answered === 500);
    expect(failedTries.length).toBeGreaterThanOrEqual(2);
    // Every attempt of one alert carries the same delivery id (a receiver can drop a repeat).
    expect(new Set(rx.received.filter((r) => r.path === '/hook').map((r) => r.headers['x-airlock-delivery'])).size).toBe(1);

    const doc = JSON.parse(hook.body);
    const at = (addr: string) => pulls.filter((p: { client: string }) => p.client === addr).map((p: { ts: number }) => p.ts);
    expect(doc).toEqual({
      event: 'airlock.advisory.affected',
      advisory: {
        id: 'GHSA-tiny-0001',
        modified: '2026-12-01T00:00:00Z',
        aliases: ['CVE-2099-0101'],
        summary: 'tinylib runs code from its config file',
        severity: { label: 'CRITICAL', score: 9.8 },
        malicious: false,
      },
      package: { ecosystem: 'PyPI', packages: [{ name: 'tinylib', version: '1.0' }], fixed: '1.1' },
      artefact: { key: 'pkg:pypi/tinylib@1.0', kind: 'pypi', files: [{ filename: wheel('1.0'), sha256: sha256(v10) }], repositories: [], tags: [] },
      clients: [
        {
          client: '127.0.0.2',
          pulls: 2,
          first_pull: new Date(Math.min(...at('127.0.0.2'))).toISOString(),
          last_pull: new Date(Math.max(...at('127.0.0.2'))).toISOString(),
        },
        { client: '127.0.0.3', pulls: 1, first_pull: new Date(at('127.0.0.3')[0]).toISOString(), last_pull: new Date(at('127.0.0.3')[0]).toISOString() },
      ],
      incident_url: 'https://airlock.example/-/ui/incidents/GHSA-tiny-0001',
    });

    const [slack] = rx.delivered('/slack');
    expect(slack.headers['x-airlock-signature']).toBeUndefined();
    const msg = JSON.parse(slack.body);
    expect(msg.text).toBe(
      'Airlock: GHSA-tiny-0001 (CRITICAL 9.8) affects tinylib 1.0 (PyPI; fixed in 1.1). 2 clients pulled it. https://airlock.example/-/ui/incidents/GHSA-tiny-0001',
    );
    expect(JSON.stringify(msg.blocks)).toContain('`127.0.0.3`: 1 pull');

    // Failures are visible: counted, and the outbox drained.
    const metrics = await (await fetch(`${a.url}/-/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`airlock_alerts_failed_total\\{channel="sec"\\} ${failedTries.length}\\b`));
    expect(metrics).toMatch(/airlock_alerts_delivered_total\{channel="sec"\} 1\b/);
    expect(metrics).toMatch(/airlock_alerts_pending 0\b/);

    // The same data again (a second SIGHUP, another replica's apply): nothing new.
    await a.airlock.reloadAdvisories();
    await a.airlock.alerting!.evaluate();
    await a.airlock.alerting!.idle();
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.delivered('/hook')).toHaveLength(1);
    expect(rx.delivered('/slack')).toHaveLength(1);

    // The next pull of the affected release is refused, the fixed one served.
    expect((await rawGet(file('1.0'), {}, { localAddress: '127.0.0.2' })).status).toBe(403);
    expect((await rawGet(file('1.1'), {}, { localAddress: '127.0.0.2' })).status).toBe(200);
  });

  it('alerts again only for what a modified record newly affects', async () => {
    const before = rx.delivered('/hook').length;
    // The record widened to 1.1 too (fixed in 1.2): 1.1 was pulled, 1.0 was alerted already.
    const wider = tinylibAdvisory('GHSA-tiny-0001', '2026-12-02T00:00:00Z');
    wider.affected[0].ranges[0].events = [{ introduced: '0' }, { fixed: '1.2' }];
    await importAdvisory(a, wider);
    await rx.until(() => rx.delivered('/hook').length === before + 1);
    await a.airlock.alerting!.idle();
    await new Promise((r) => setTimeout(r, 300));
    const fresh = rx.delivered('/hook').slice(before);
    expect(fresh.map((r) => JSON.parse(r.body).artefact.key)).toEqual(['pkg:pypi/tinylib@1.1']);
  });

  it('the incident page shows the affected artefacts, the clients and times, the pulls since and the deliveries; a failing channel shows on the console', async () => {
    const ui = (p: string) => `${a.url}/-/ui${p}`;
    const admin = await new Authenticator(a.airlock.meta).create('sec-team', true);
    const cookie = (await consoleLogin(a.url, admin)).cookie!;
    const get = async (p: string) => {
      const res = await fetch(ui(p), { headers: { cookie } });
      return { status: res.status, text: await res.text() };
    };
    await records(a);
    const page = await get('/incidents/GHSA-tiny-0001');
    expect(page.status).toBe(200);
    expect(page.text).toContain('Incident GHSA-tiny-0001');
    expect(page.text).toContain('<code>pkg:pypi/tinylib@1.0</code>');
    expect(page.text).toContain('<code>pkg:pypi/tinylib@1.1</code>');
    expect(page.text).toContain(sha256(v10));
    expect(page.text).toMatch(/<td><code>127\.0\.0\.3<\/code><\/td><td>1<\/td>/);
    // The verification: the refused pull of 1.0 after the alert is in the record shown.
    expect(page.text).toMatch(/class="deny">deny<\/td>/);
    expect(page.text).toMatch(/delivered \d{4}-\d\d-\d\d/);
    expect(page.text).toContain('/-/ui/advisories.csv?q=GHSA-tiny-0001');
    expect((await get('/incidents/NOPE-1')).status).toBe(404);

    // A receiver failing: the console says so, on the list and the overview.
    rx.status = 503;
    await importAdvisory(a, {
      ...tinylibAdvisory('GHSA-tiny-0002'),
      affected: [{ package: { ecosystem: 'PyPI', name: 'tinylib' }, versions: ['1.1'] }],
    } as never);
    await rx.until(() => rx.received.some((r) => r.answered === 503 && r.body.includes('GHSA-tiny-0002')));
    await a.airlock.alerting!.idle();
    const list = await get('/incidents');
    expect(list.text).toMatch(/<span class="deny">failing<\/span>: HTTP 503/);
    expect(list.text).toContain('a channel is not taking alerts');
    expect((await get('/')).text).toMatch(/<span class="deny">\d+ failing<\/span>/);
    rx.status = 200;
    await rx.until(() => rx.delivered('/hook').some((r) => r.body.includes('GHSA-tiny-0002')));
  });

  it('alerts for an image whose stored inventory an OS advisory now matches, with the clients that pulled it', async () => {
    const digest = `sha256:${'4f'.repeat(32)}`;
    const inventory = { os: { ecosystem: 'Debian:12' }, packages: [{ type: 'deb', name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' }] };
    await a.airlock.meta.inventories.putInventory(digest, 1, JSON.stringify(inventory), [
      { type: 'deb', name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' },
    ]);
    const t0 = Date.now() - 60_000;
    const pull = {
      ecosystem: 'oci' as const,
      name: 'docker.io/library/debian',
      version: '12',
      sha256: digest.slice(7),
      cache: 'miss' as const,
      decision: 'allow' as const,
    };
    await appendPulls(a.airlock.meta, [
      { ...pull, ts: t0, client: 'deployer@10.0.0.7' },
      { ...pull, ts: t0 + 1000, client: 'deployer@10.0.0.7' },
    ]);
    const before = rx.delivered('/hook').length;
    await importAdvisory(a, {
      id: 'DEBIAN-CVE-2099-0202',
      modified: '2026-12-02T00:00:00Z',
      upstream: ['CVE-2099-0202'],
      summary: 'openssl: a buffer overread',
      affected: [
        {
          package: { ecosystem: 'Debian:12', name: 'openssl' },
          ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '3.0.15-1~deb12u1' }] }],
          ecosystem_specific: { urgency: 'high' },
        },
      ],
    } as never);
    await rx.until(() => rx.delivered('/hook').length === before + 1);
    const doc = JSON.parse(rx.delivered('/hook')[before].body);
    expect(doc.advisory).toMatchObject({ id: 'DEBIAN-CVE-2099-0202', aliases: ['CVE-2099-0202'], severity: { label: 'HIGH', score: null } });
    expect(doc.package).toEqual({ ecosystem: 'Debian:12', packages: [{ name: 'libssl3', version: '3.0.11-1~deb12u2' }], fixed: '3.0.15-1~deb12u1' });
    expect(doc.artefact).toEqual({
      key: `oci:${digest}`,
      kind: 'oci',
      files: [{ filename: null, sha256: digest }],
      repositories: ['docker.io/library/debian'],
      tags: [],
    });
    expect(doc.clients).toEqual([
      { client: 'deployer@10.0.0.7', pulls: 2, first_pull: new Date(t0).toISOString(), last_pull: new Date(t0 + 1000).toISOString() },
    ]);
  });
});
