import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importTrustRoot, SHIPPED_ROOT_FILE } from '../../src/signing/trust.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';
import { privateSigstore } from '../helpers/sigstore-mock.js';

/**
 * A verified provenance's cached result (issue 26, signing/cache.ts) is never reused once what it
 * was verified under changed: a policy reload that changes the rule's publisher verifies again
 * (and refuses), as does an imported trusted root picked up on reload (another root, another
 * version); the provenance itself is not fetched again (the bytes are kept, only the verdict is not).
 */
const FIX = new URL('../fixtures/signatures/pypi/', import.meta.url).pathname;
const PA = 'pypi_attestations-0.0.19.tar.gz';
const dist = readFileSync(join(FIX, PA));
const provenance = readFileSync(join(FIX, `${PA}.provenance`));
const PROV_PATH = `/integrity/pypi-attestations/0.0.19/${PA}/provenance`;

describe('cached signature verdicts after a reload and a trust import', () => {
  const up = new FakeIndex();
  let a: TestAirlock;
  const file = () => fetch(`${a.url}/pypi/files/pypi-attestations/${PA}`);
  const config = (workflow: string) => `
pypi:
  upstream: ${up.simpleUrl}
  file_hosts: ["127.0.0.1:${up.port}"]
policy:
  pypi:
    allow:
      - { name: pypi-attestations, require: attested, publisher: { github: trailofbits/pypi-attestations, workflow: ${workflow} } }
`;

  beforeAll(async () => {
    await up.start();
    up.add('pypi-attestations', { filename: PA, bytes: dist, provenance });
    a = await startAirlock(config('release.yml'));
  });
  afterAll(async () => {
    await a?.stop();
    await up.stop();
  });

  const rewrite = (workflow: string) => {
    const text = readFileSync(a.configFile, 'utf8');
    writeFileSync(a.configFile, text.replace(/workflow: [^ ]+ \}/, `workflow: ${workflow} }`));
    expect(a.airlock.reloadPolicy()).toBe(true);
  };

  it('a reload that changes the publisher verifies again and refuses; changing it back serves again', async () => {
    expect((await file()).status).toBe(200);
    rewrite('other.yml');
    const refused = await file();
    expect(refused.status).toBe(403);
    expect(await refused.text()).toMatch(/other\.yml/);
    expect((await records(a, 'name=pypi-attestations&decision=deny'))[0]).toMatchObject({ code: 'bad_signature' });
    rewrite('release.yml');
    expect((await file()).status).toBe(200);
    expect(up.count(PROV_PATH)).toBe(1);
  });

  it('a trusted root imported and picked up on reload verifies again: another root refuses, the public-good one serves', async () => {
    const other = await privateSigstore();
    const imported = await importTrustRoot(a.airlock.meta, other.rootJson);
    if (!imported.ok) throw new Error(imported.reason);
    expect(await a.airlock.reloadTrust()).toBe(imported.root.version);
    const refused = await file();
    expect(refused.status).toBe(403);
    expect((await records(a, 'name=pypi-attestations&decision=deny'))[0]).toMatchObject({ code: 'bad_signature' });
    const back = await importTrustRoot(a.airlock.meta, readFileSync(SHIPPED_ROOT_FILE, 'utf8'), Date.now() + 1000);
    if (!back.ok) throw new Error(back.reason);
    expect(await a.airlock.reloadTrust()).toBe(back.root.version);
    expect((await file()).status).toBe(200);
    expect(up.count(PROV_PATH)).toBe(1);
  });
});
