import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/core/chain.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { airlockCli } from '../helpers/cli.js';
import { records } from '../helpers/http.js';

const PIP_ACCEPT = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Issue 25: one client asking for denied names as fast as it can must not fill the record. With
 * the defaults (20 refusals a second, bursts of 200, identical refusals folded per minute), 20,000
 * refusals from one client over 16 keep-alive connections leave a handful of rows whose counts add
 * up to every request, answer 429 with Retry-After past the limit (in the front-end's own error
 * format), and leave another client's refusals untouched.
 */
describe('a flood of refusals from one client', () => {
  const pub = new FakeIndex();
  let a: TestAirlock;

  beforeAll(async () => {
    await pub.start();
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: http://127.0.0.1:9
policy:
  pypi:
    allow:
      - { name: tinylib }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
  });

  const get = (agent: Agent, path: string, headers: Record<string, string> = {}, localAddress?: string) =>
    new Promise<Answer>((resolve, reject) => {
      const req = request(`${a.url}${path}`, { agent, headers: { accept: PIP_ACCEPT, ...headers }, localAddress }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end();
    });

  it('20,000 refusals: a bounded record whose counts add up, 429 past the limit, another client unaffected', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const other = new Agent({ keepAlive: true, maxSockets: 1 });
    const TOTAL = 20_000;
    const statuses = new Map<number, number>();
    let first429: Answer | undefined;
    let otherAnswer: Answer | undefined;
    let sent = 0;
    const started = Date.now();
    const worker = async () => {
      while (sent < TOTAL) {
        const n = ++sent;
        const r = await get(agent, '/pypi/simple/denied-name/');
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429) first429 ??= r;
        // Mid-flood, another client (another loopback address) is refused as usual: its own allowance.
        if (n === TOTAL / 2) otherAnswer = await get(other, '/pypi/simple/denied-name/', {}, '127.0.0.2');
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const took = Date.now() - started;
    agent.destroy();
    other.destroy();
    expect(took).toBeLessThan(45_000);

    const refused = statuses.get(403) ?? 0;
    const limited = statuses.get(429) ?? 0;
    expect(refused + limited).toBe(TOTAL);
    // The burst, and what the bucket refilled meanwhile (20 a second).
    expect(refused).toBeGreaterThanOrEqual(200);
    expect(refused).toBeLessThanOrEqual(200 + Math.ceil((took / 1000) * 20) + 1);
    expect(first429!.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(first429!.body).toBe(`too many refused requests from this client; retry after ${first429!.headers['retry-after']} s\n`);
    expect(otherAnswer!.status).toBe(403);

    const rows = (await records(a, 'limit=1000')).filter((r) => r.client === '127.0.0.1');
    expect(rows.length).toBeLessThanOrEqual(6);
    const sum = (code: string) => rows.filter((r) => r.code === code).reduce((n, r) => n + (r.count ?? 1), 0);
    expect(sum('not_allowlisted')).toBe(refused);
    expect(sum('rate_limited')).toBe(limited);
    expect(rows.find((r) => r.code === 'rate_limited')).toMatchObject({ name: '*', rule: 'records.refusal_limit', ecosystem: 'pypi' });
    const mine = (await records(a, 'limit=1000')).filter((r) => r.client === '127.0.0.2');
    expect(mine.map((r) => r.code)).toEqual(['not_allowlisted']);
    expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
    const metrics = await (await fetch(`${a.url}/-/metrics`)).text();
    expect(metrics).toContain(`airlock_refusals_rate_limited_total{ecosystem="pypi"} ${limited}`);
    // `airlock records` ends a folded row with its count.
    const cli = await airlockCli(['records', '--config', a.configFile, '--name', 'denied-name']);
    const folded = rows.find((r) => r.code === 'not_allowlisted' && r.count)!;
    expect(cli.stdout).toContain(`\tx${folded.count} until ${new Date(folded.lastTs).toISOString()}\n`);
    // By record code: only the rate-limit rows; an unknown code is a one-line error.
    const byCode = await airlockCli(['records', '--config', a.configFile, '--code', 'rate_limited', '--json']);
    const coded = JSON.parse(byCode.stdout) as { code: string }[];
    expect(coded.length).toBeGreaterThan(0);
    expect(new Set(coded.map((r) => r.code))).toEqual(new Set(['rate_limited']));
    const bad = await airlockCli(['records', '--config', a.configFile, '--code', 'no_such_code']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--code: not a record code: "no_such_code"/);
  }, 60_000);

  it('wrong tokens and OCI refusals are limited too, each answered in its own format', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const token = { authorization: `Basic ${Buffer.from('__token__:not-a-token').toString('base64')}` };
    const answers: Answer[] = [];
    for (let i = 0; i < 250; i++) answers.push(await get(agent, '/pypi/simple/tinylib/', token, '127.0.0.3'));
    // The burst of 200, and what refilled (20 a second) while they were asked one after another.
    expect(answers.filter((r) => r.status === 401).length).toBeGreaterThanOrEqual(200);
    const limited = answers.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(1);
    expect(limited.length + answers.filter((r) => r.status === 401).length).toBe(250);
    expect(limited[0].headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(limited[0].headers['x-airlock-reason']).toMatch(/too many refused requests/);
    const oci: Answer[] = [];
    for (let i = 0; i < 250; i++)
      oci.push(await get(agent, '/v2/team/denied/manifests/latest', { accept: 'application/vnd.oci.image.manifest.v1+json' }, '127.0.0.4'));
    agent.destroy();
    const ociLimited = oci.filter((r) => r.status === 429);
    expect(ociLimited.length).toBeGreaterThanOrEqual(1);
    expect(ociLimited.length + oci.filter((r) => r.status === 403).length).toBe(250);
    expect(ociLimited[0].headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(JSON.parse(ociLimited[0].body).errors[0].code).toBe('TOOMANYREQUESTS');
    const rows = await records(a, 'limit=1000');
    const of = (client: string) => rows.filter((r) => r.client === client);
    expect(of('127.0.0.3').reduce((n, r) => n + (r.count ?? 1), 0)).toBe(250);
    expect(of('127.0.0.3').length).toBeLessThanOrEqual(4);
    expect(of('127.0.0.4').reduce((n, r) => n + (r.count ?? 1), 0)).toBe(250);
    expect(of('127.0.0.4').length).toBeLessThanOrEqual(4);
    expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
  }, 60_000);
});

describe("the record's size budget", () => {
  it('past records.max_bytes the oldest rows are pruned, the chain still verifies, and /-/readyz warns', async () => {
    const pub = new FakeIndex();
    await pub.start();
    const a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
records:
  max_bytes: 1048576
  fold_window_seconds: 0
  refusal_limit: { per_second: 0 }
policy:
  pypi:
    allow:
      - { name: tinylib }
`);
    try {
      expect(await (await fetch(`${a.url}/-/readyz`)).json()).toEqual({ status: 'ready' });
      // The smallest budget the configuration takes (1 MiB) is ~5,000 rows: past it in batches of 50 at once.
      let n = 0;
      while ((await a.airlock.meta.pullSize()).bytes <= 1048576 * 1.2) {
        const got = await Promise.all(
          Array.from({ length: 50 }, () => fetch(`${a.url}/pypi/simple/denied-${n++}/`, { headers: { accept: PIP_ACCEPT } }).then((r) => r.status)),
        );
        expect(new Set(got)).toEqual(new Set([403]));
        await records(a, 'limit=1');
      }
      const removed = await a.airlock.budget.check();
      expect(removed).toBeGreaterThan(500);
      expect((await a.airlock.meta.pullSize()).bytes).toBeLessThanOrEqual(1048576);
      const rows = await records(a, 'limit=1000');
      expect(rows[0]).toMatchObject({ ecosystem: 'audit', name: 'prune' });
      expect(rows.some((r) => r.name === 'denied-0')).toBe(false);
      expect(rows.some((r) => r.name === `denied-${n - 1}`)).toBe(true);
      expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
      const ready = await fetch(`${a.url}/-/readyz`);
      expect(ready.status).toBe(200);
      expect((await ready.json()).warnings).toEqual([expect.stringMatching(/^the pull record is at 9\d% of records.max_bytes/)]);
      expect(await (await fetch(`${a.url}/-/metrics`)).text()).toMatch(/airlock_record_budget_pruned_total \d+/);
    } finally {
      await a.stop();
      await pub.stop();
    }
  }, 60_000);
});
