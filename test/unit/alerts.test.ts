import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
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
