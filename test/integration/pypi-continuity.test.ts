import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';

/**
 * Continuity of PyPI publishers (issue 26, item 6) at the file route. One rule names one publisher, so a project's
 * recorded publisher differs from a file's when the rule was changed (or the record set by `airlock trust accept`):
 * here the record is set first to another publisher, then the real PEP 740 fixture is pulled.
 */
const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
const PA = 'pypi_attestations-0.0.19.tar.gz';
const dist = readFileSync(join(FIX, PA));
const provenance = readFileSync(join(FIX, `${PA}.provenance`));
const REAL = 'github:trailofbits/pypi-attestations release.yml';
const OTHER = 'github:mallory/pypi-attestations release.yml';

function config(up: FakeIndex, onChange: string, require = true): string {
  return `
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]
policy:
  pypi:
    allow:
      - { name: pypi-attestations, ${require ? 'require: attested, ' : ''}on_change: ${onChange}${require ? ', publisher: { github: trailofbits/pypi-attestations, workflow: release.yml }' : ''} }
`;
}

describe('continuity of PyPI publishers', () => {
  const up = new FakeIndex();
  let a: TestAirlock | undefined;
  const file = () => `${a!.url}/pypi/files/pypi-attestations/${PA}`;
  const accept = async (identity: string) => {
    const r = await airlockCli(['trust', 'accept', 'pypi', 'pypi-attestations', '--identity', identity, '--config', a!.configFile]);
    expect([r.code, r.stderr]).toEqual([0, '']);
  };

  beforeAll(async () => {
    await up.start();
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
  });
  afterEach(async () => {
    await a?.stop();
    a = undefined;
  });
  afterAll(async () => {
    await up.stop();
  });

  it('refuses a file whose publisher is not the recorded one (GET and HEAD), naming trust accept; serves it once accepted', async () => {
    a = await startAirlock(config(up, 'refuse'));
    await accept(OTHER);
    for (const method of ['GET', 'HEAD']) {
      const r = await fetch(file(), { method });
      expect(r.status).toBe(403);
      if (method === 'GET') {
        const text = await r.text();
        expect(text).toContain(`signer changed: pypi-attestations 0.0.19 is signed by ${REAL}, but earlier versions were signed by ${OTHER}`);
        expect(text).toContain(`airlock trust accept pypi pypi-attestations --identity '${REAL}'`);
      }
    }
    const rows = await records(a, 'name=pypi-attestations');
    expect(rows.length).toBeGreaterThanOrEqual(1);
    for (const r of rows) {
      expect(r).toMatchObject({ decision: 'deny', code: 'bad_signature', rule: 'pypi.allow[0]', version: '0.0.19' });
      expect(r.reason).toContain('airlock trust accept pypi pypi-attestations');
      expect(JSON.parse(r.signature).publisher.repository).toBe('trailofbits/pypi-attestations');
    }
    await accept(REAL);
    // Seen within 10 s with no SIGHUP (what the CLI promises).
    await new Promise((r) => setTimeout(r, 10_200));
    const now = await fetch(file());
    expect(now.status).toBe(200);
    expect(Buffer.from(await now.arrayBuffer()).equals(dist)).toBe(true);
  }, 30_000);

  it('serves it under on_change: warn, with a warning row', async () => {
    a = await startAirlock(config(up, 'warn'));
    await accept(OTHER);
    const r = await fetch(file());
    expect(r.status).toBe(200);
    expect(Buffer.from(await r.arrayBuffer()).equals(dist)).toBe(true);
    const [row] = await records(a, 'name=pypi-attestations');
    expect(row).toMatchObject({ decision: 'allow', version: '0.0.19' });
    expect(row.reason).toMatch(/^signer changed: .*served with a warning \(on_change: warn\)/);
    expect(JSON.parse(row.signature)).toMatchObject({ ok: true, changedFrom: OTHER });
  });

  it('under a rule without require, a project whose publisher is on record has each file checked: another publisher refused, the recorded one served', async () => {
    a = await startAirlock(config(up, 'refuse', false));
    await accept(OTHER);
    const r = await fetch(file());
    expect(r.status).toBe(403);
    const text = await r.text();
    expect(text).toContain(`signer changed: pypi-attestations 0.0.19 is signed by ${REAL}, but earlier versions were signed by ${OTHER}`);
    expect(text).toContain(`airlock trust accept pypi pypi-attestations --identity '${REAL}'`);
    const [row] = await records(a, 'name=pypi-attestations');
    expect(row).toMatchObject({ decision: 'deny', code: 'bad_signature', rule: 'pypi.allow[0]', version: '0.0.19' });
    expect(JSON.parse(row.signature).publisher.repository).toBe('trailofbits/pypi-attestations');
    await accept(REAL);
    // Kept in memory for 10 s (the first test waits it out), or until a SIGHUP.
    expect((await fetch(file())).status).toBe(403);
    await a.airlock.reloadTrust();
    const now = await fetch(file());
    expect(now.status).toBe(200);
    expect(Buffer.from(await now.arrayBuffer()).equals(dist)).toBe(true);
    const served = (await records(a, 'name=pypi-attestations')).find((x) => x.decision === 'allow');
    expect(JSON.parse(served.signature)).toMatchObject({ ok: true, publisher: { repository: 'trailofbits/pypi-attestations', workflow: 'release.yml' } });
  }, 30_000);
});
