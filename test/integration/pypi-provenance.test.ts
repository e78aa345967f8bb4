import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { integrityBaseOf, provenanceBase } from '../../src/pypi/provenance.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';

/** PEP 740 provenance on every path (issue 26): GET, HEAD, Range, a restart, the integrity API's own failures, the config keys. */
const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
const PA = 'pypi_attestations-0.0.19.tar.gz';
const dist = readFileSync(join(FIX, PA));
const provenance = readFileSync(join(FIX, `${PA}.provenance`));
const RULE = `{ name: pypi-attestations, require: attested, publisher: { github: trailofbits/pypi-attestations, workflow: release.yml } }`;
const PROV_PATH = `/integrity/pypi-attestations/0.0.19/${PA}/provenance`;

function config(up: FakeIndex, extra = ''): string {
  return `
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]${extra}
policy:
  pypi:
    allow:
      - ${RULE}
`;
}

describe('PEP 740 provenance on every path', () => {
  const up = new FakeIndex();
  const dataDir = mkdtempSync(join(tmpdir(), 'airlock-prov-data-'));
  let a: TestAirlock;
  const file = () => `${a.url}/pypi/files/pypi-attestations/${PA}`;

  beforeAll(async () => {
    await up.start();
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
    a = await startAirlock(config(up), { dataDir });
  });
  afterAll(async () => {
    await a?.stop();
    await up.stop();
  });

  it('verifies before HEAD and Range answers, and fetches the provenance once', async () => {
    const head = await fetch(file(), { method: 'HEAD' });
    expect(head.status).toBe(200);
    const range = await fetch(file(), { headers: { range: 'bytes=0-9' } });
    expect(range.status).toBe(206);
    expect(Buffer.from(await range.arrayBuffer()).equals(dist.subarray(0, 10))).toBe(true);
    const whole = await fetch(file());
    expect(Buffer.from(await whole.arrayBuffer()).equals(dist)).toBe(true);
    expect(up.count(PROV_PATH)).toBe(1);
  });

  it('after a restart, a verified provenance comes from the metadata store, not the upstream', async () => {
    await a.stop();
    a = await startAirlock(config(up), { dataDir });
    const r = await fetch(file());
    expect(r.status).toBe(200);
    await r.arrayBuffer();
    expect(up.count(PROV_PATH)).toBe(1);
    const row = (await records(a, 'name=pypi-attestations'))[0];
    expect(JSON.parse(row.signature).publisher.repository).toBe('trailofbits/pypi-attestations');
  });
});

describe('the integrity API failing, and where it is', () => {
  const up = new FakeIndex();
  let a: TestAirlock;

  beforeAll(async () => {
    await up.start();
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
  });
  afterAll(async () => {
    await a?.stop();
    await up.stop();
  });

  it('an integrity_url elsewhere is used (a 404 there: unsigned); an integrity API that answers 500 is an upstream failure on record, and nothing is served', async () => {
    a = await startAirlock(config(up, `\n  integrity_url: ${up.base}/nowhere/`));
    const r = await fetch(`${a.url}/pypi/files/pypi-attestations/${PA}`);
    expect(r.status).toBe(403);
    expect(await r.text()).toContain('has no provenance for it');
    expect(up.count(`/nowhere${PROV_PATH.slice('/integrity'.length)}`)).toBe(1);
    expect((await records(a, 'name=pypi-attestations'))[0]).toMatchObject({ code: 'unsigned', sha256: sha256(dist) });
    await a.stop();
    up.projects.get('pypi-attestations')![0].provenanceStatus = 500;
    a = await startAirlock(config(up));
    const down = await fetch(`${a.url}/pypi/files/pypi-attestations/${PA}`);
    expect(down.status).toBe(502);
    expect(await down.text()).toContain('its provenance could not be fetched: the integrity API answered 500');
    expect((await records(a, 'name=pypi-attestations'))[0]).toMatchObject({ code: 'upstream_failed', decision: 'error', rule: 'pypi.allow[0]' });
    expect(up.count(`/files/${PA}`)).toBe(0);
  });

  it('derives the integrity API from the index URL, links only under https, and checks integrity_url', () => {
    expect(integrityBaseOf('https://pypi.org/simple/')).toBe('https://pypi.org/integrity/');
    expect(integrityBaseOf('https://mirror.example/pypi/simple/')).toBe('https://mirror.example/pypi/integrity/');
    expect(integrityBaseOf('https://devpi.example/root/pypi/+simple/')).toBeNull();
    expect(provenanceBase('https://airlock.example/', '/pypi')).toBe('https://airlock.example/pypi/integrity/');
    expect(provenanceBase('https://airlock.example/mirror', '/pypi')).toBe('https://airlock.example/mirror/pypi/integrity/');
    expect(provenanceBase('http://airlock.example/', '/pypi')).toBeNull();
    expect(provenanceBase(undefined, '/pypi')).toBeNull();
    const dir = mkdtempSync(join(tmpdir(), 'airlock-prov-cfg-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'pypi:\n  integrity_url: https://pypi.org/integrity\n');
    expect(() => loadConfig(bad)).toThrow(/integrity_url.*end with "\/"/s);
  });
});
