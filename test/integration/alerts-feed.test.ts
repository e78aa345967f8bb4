import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { rawGet, records } from '../helpers/http.js';
import { OsvFeedServer } from '../helpers/osv-feed.js';
import { Receiver, tinylibAdvisory } from '../helpers/receiver.js';

const wheel = (v: string) => `tinylib-${v}-py3-none-any.whl`;

/**
 * Issue 28 end to end, parts 1 to 3: a record published on an OSV feed Airlock syncs itself
 * (advisories.sources, no SIGHUP, no hand import) newly affects a release pulled earlier; the
 * receiver gets one alert naming the client, and the record's first sync (before anything was
 * pulled) alerts nothing.
 */
describe('alerts from a scheduled feed sync', () => {
  const feed = new OsvFeedServer();
  const index = new FakeIndex();
  const rx = new Receiver();
  let a: TestAirlock;

  beforeAll(async () => {
    process.env.AIRLOCK_TEST_HOOK_SECRET = 'feed-alerts';
    await Promise.all([feed.start(), index.start(), rx.start()]);
    feed.put('PyPI', {
      id: 'PYSEC-0000-1',
      modified: '2026-11-01T00:00:00Z',
      affected: [{ package: { ecosystem: 'PyPI', name: 'otherlib' }, versions: ['0.1'] }],
    });
    index.add('tinylib', { filename: wheel('1.0'), bytes: randomBytes(900) }).add('tinylib', { filename: wheel('1.1'), bytes: randomBytes(900) });
    a = await startAirlock(`
pypi:
  upstream: ${index.simpleUrl}
  file_hosts: ["127.0.0.1:${index.port}"]
advisories:
  sources:
    - { url: "${feed.url}", ecosystem: PyPI }
  interval: 5
  poll: 0.5
notify:
  webhooks: [{ name: sec, url: "${rx.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }]
  poll_seconds: 0.2
policy:
  advisories: { refuse: high }
  pypi:
    allow: [{ name: tinylib }]
`);
  }, 30_000);
  afterAll(async () => {
    await a?.stop();
    await Promise.all([feed.stop(), index.stop(), rx.stop()]);
  });

  it('one alert within the sync interval of the feed change, with the client and time of the earlier pull', async () => {
    const end = Date.now() + 20_000;
    while (!(await a.airlock.meta.advisorySyncs({ source: 'osv-pypi', limit: 5 })).length && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect((await rawGet(`${a.url}/pypi/files/tinylib/${wheel('1.0')}`, {}, { localAddress: '127.0.0.6' })).status).toBe(200);
    const [pulled] = (await records(a, 'ecosystem=pypi')).filter((r: { filename: string }) => r.filename === wheel('1.0'));

    const changed = Date.now();
    feed.put('PyPI', tinylibAdvisory('GHSA-feed-0001', '2026-12-03T00:00:00Z'));
    await rx.until(() => rx.delivered('/hook').length === 1, 30_000);
    const latency = Date.now() - changed;
    await new Promise((r) => setTimeout(r, 1000));
    expect(rx.received).toHaveLength(1);
    const doc = JSON.parse(rx.received[0].body);
    expect(doc.advisory.id).toBe('GHSA-feed-0001');
    expect(doc.artefact.key).toBe('pkg:pypi/tinylib@1.0');
    expect(doc.clients).toEqual([
      { client: '127.0.0.6', pulls: 1, first_pull: new Date(pulled.ts).toISOString(), last_pull: new Date(pulled.ts).toISOString() },
    ]);
    // The sync interval (5 s) bounds it, plus the evaluation and the delivery.
    expect(latency).toBeLessThan(15_000);
    expect((await rawGet(`${a.url}/pypi/files/tinylib/${wheel('1.0')}`, {}, { localAddress: '127.0.0.6' })).status).toBe(403);
  }, 60_000);
});
