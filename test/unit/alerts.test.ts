import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluatePending } from '../../src/alerts/evaluate.js';
import { InventoryCache } from '../../src/audit/affected.js';
import { appendPulls } from '../../src/core/chain.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { channelsFrom, signBody } from '../../src/alerts/channels.js';
import { alertDocument, headline, slackMessage } from '../../src/alerts/message.js';
import { backoffMs, deliveryId } from '../../src/alerts/worker.js';
import { configSchema } from '../../src/config/schema.js';

const notify = (n: unknown) => configSchema.safeParse({ notify: n });

describe('alerts: the pieces (issue 28)', () => {
  it('signs timestamp.body with HMAC-SHA256, as a receiver recomputes it', () => {
    expect(signBody('s3cret', '1764800000', '{"a":1}')).toBe(`sha256=${createHmac('sha256', 's3cret').update('1764800000.{"a":1}').digest('hex')}`);
    expect(signBody('s3cret', '1764800001', '{"a":1}')).not.toBe(signBody('s3cret', '1764800000', '{"a":1}'));
  });

  it('backs off exponentially from the initial delay, capped', () => {
    const n = { retry_initial_seconds: 5, retry_max_seconds: 60 };
    expect([1, 2, 3, 4, 5, 10].map((a) => backoffMs(a, n))).toEqual([5000, 10000, 20000, 40000, 60000, 60000]);
  });

  it('gives every attempt of one alert the same delivery id, and different alerts different ones', () => {
    const r = { advisoryId: 'A', modified: 'm', artefact: 'pkg:pypi/x@1', channel: 'sec' };
    expect(deliveryId(r)).toBe(deliveryId({ ...r }));
    expect(deliveryId({ ...r, channel: 'chat' })).not.toBe(deliveryId(r));
    expect(deliveryId(r)).toMatch(/^[0-9a-f]{32}$/);
  });

  it('checks the channels: a json webhook needs a secret, names are unique, and a secret missing from the environment stops the start', () => {
    expect(notify({ webhooks: [{ name: 'a', url: 'https://x.example/h' }] }).error?.issues[0].message).toBe(
      'a json webhook needs secret_env (its body is signed)',
    );
    expect(notify({ webhooks: [{ name: 'a', url: 'ftp://x', format: 'slack' }] }).success).toBe(false);
    expect(
      notify({
        webhooks: [
          { name: 'a', url: 'https://x.example/h', format: 'slack' },
          { name: 'a', url: 'https://y.example/h', format: 'slack' },
        ],
      }).error?.issues[0].message,
    ).toBe('webhook names must be unique');
    const ok = notify({ webhooks: [{ name: 'sec', url: 'https://x.example/h', secret_env: 'HOOK_SECRET' }] });
    expect(ok.success).toBe(true);
    expect(() => channelsFrom(ok.data!.notify, {})).toThrow('notify.webhooks[0] (sec): secret_env names HOOK_SECRET, which is not set or empty');
    expect(channelsFrom(ok.data!.notify, { HOOK_SECRET: 'x' }).map((c) => c.name)).toEqual(['sec']);
    expect(configSchema.parse({}).notify.webhooks).toEqual([]);
  });

  it('renders one alert as a headline and a Slack message, keeping long client lists to the incident page', () => {
    const rec = { id: 'MAL-2026-1', modified: '2026-12-01T00:00:00Z', summary: 'malicious code in evilpkg' };
    const clients = Array.from({ length: 25 }, (_, i) => ({ client: `c${String(i).padStart(2, '0')}`, pulls: 1, first: 0, last: 1000 }));
    const d = alertDocument(
      rec,
      {
        artefact: 'pkg:pypi/evilpkg@0.1',
        kind: 'pypi',
        ecosystem: 'PyPI',
        packages: [{ name: 'evilpkg', version: '0.1' }],
        fixed: null,
        severity: {},
        malicious: true,
        files: [{ filename: 'evilpkg-0.1.tar.gz', sha256: 'ab'.repeat(32) }],
        repositories: [],
        tags: [],
        clients,
      },
      'https://airlock.example/',
    );
    expect(d.incident_url).toBe('https://airlock.example/-/ui/incidents/MAL-2026-1');
    expect(headline(d)).toBe('MAL-2026-1 (MALICIOUS) affects evilpkg 0.1 (PyPI; no fixed version)');
    const m = slackMessage(d);
    const text = JSON.stringify(m.blocks);
    expect(text).toContain('c19');
    expect(text).not.toContain('c20');
    expect(text).toContain('and 5 more clients (incident page)');
    expect(m.text).toContain('25 clients pulled it');
  });
});

describe('alerts: one evaluation pass over many OS advisories (issue 28)', () => {
  it('reads and parses each stored inventory once per pass, not once per advisory naming one of its packages, with the same alerts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-alerts-pass-'));
    const meta = new SqliteMetaStore(join(dir, 'meta.db'));
    try {
      const pkgs = ['libc6', 'openssl', 'zlib1g'].map((name) => ({ type: 'deb', name, version: '1.0-1', source: name }));
      const digests = [1, 2, 3].map((i) => `sha256:${String(i).repeat(64)}`);
      for (const d of digests) {
        await meta.inventories.putInventory(d, 1, JSON.stringify({ os: { ecosystem: 'Debian:12' }, packages: pkgs }), pkgs);
        await appendPulls(meta, [
          {
            ts: 1_700_000_000_000,
            client: 'deployer@10.0.0.7',
            ecosystem: 'oci',
            name: 'bench.local/app',
            sha256: d.slice(7),
            cache: 'hit',
            decision: 'allow',
          },
        ]);
      }
      // Three advisories on the three packages every image has: two affect 1.0-1, one is fixed below it.
      const adv = (id: string, name: string, fixed: string) => ({
        id,
        modified: '2026-12-03T00:00:00Z',
        affected: [{ package: { ecosystem: 'Debian:12', name }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed }] }] }],
      });
      const recs = [adv('DEBIAN-A', 'libc6', '1.5-1'), adv('DEBIAN-B', 'openssl', '1.0-0'), adv('DEBIAN-C', 'zlib1g', '2.0-1')];
      await meta.putAdvisories(recs.map((r) => ({ id: r.id, modified: r.modified, record: JSON.stringify(r) })));
      const read = meta.inventories.getInventory.bind(meta.inventories);
      const reads: string[] = [];
      meta.inventories.getInventory = (d: string) => (reads.push(d), read(d));
      const quiet = { info() {}, warn() {}, error() {}, debug() {} } as never;
      const n = await evaluatePending({ meta, policy: () => undefined as never, channels: ['sec'], baseUrl: 'https://airlock.example/', log: quiet });
      expect(n).toBe(6);
      const queued = [...(await meta.alerts.alertedArtefacts('DEBIAN-A')), ...(await meta.alerts.alertedArtefacts('DEBIAN-C'))].map((a) => a.artefact).sort();
      expect(queued).toEqual([...digests, ...digests].map((d) => `oci:${d}`).sort());
      expect(await meta.alerts.alertedArtefacts('DEBIAN-B')).toEqual([]);
      expect(reads.sort()).toEqual(digests);
      // Bounded by the packages held: past the bound an inventory is parsed for the call and not kept (those held stay).
      reads.length = 0;
      const cache = new InventoryCache(meta, 3);
      for (const d of [digests[0], digests[1], digests[0], digests[1]]) expect((await cache.get(d))?.packages).toHaveLength(3);
      expect(reads).toEqual([digests[0], digests[1], digests[1]]);
    } finally {
      await meta.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
