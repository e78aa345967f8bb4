import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { airlockCli } from '../helpers/cli.js';
import { records } from '../helpers/http.js';
import { buildImage, haveTool, pushImage, RealRegistry, skopeo, type BuiltImage } from '../helpers/oci-tools.js';

/**
 * OCI minimum age (issue 27) with the real skopeo: the clock starts when Airlock first sees a
 * digest (recorded in the metadata store, shared by replicas), never at the image's own
 * `created`, which its author chooses. A tag whose digest is younger than oci.min_age is refused
 * at the manifest in the registry's error format, naming the age, the rule and the override (a
 * pull by digest); an old enough digest, a rule's own min_age and a pull by digest are served.
 */
const DAY = 86_400_000;

describe('OCI minimum age through Airlock, with the real skopeo', () => {
  const reg = new RealRegistry();
  let a: TestAirlock;
  let fresh: BuiltImage;
  let old: BuiltImage;
  let own: BuiltImage;
  let yaml: string;
  const out = () => `oci:${mkdtempSync(join(tmpdir(), 'airlock-age-'))}:pulled`;

  beforeAll(async () => {
    for (const tool of ['skopeo', 'docker-registry', 'tar']) {
      if (!haveTool(tool)) throw new Error(`${tool} is not installed: .ci/run installs it with apt-get (see docs/testing.md)`);
    }
    await reg.start();
    // The author claims 2001: shown by image check, never trusted.
    fresh = await buildImage(['amd64'], 'v1', 16 * 1024, { created: '2001-01-01T00:00:00Z' });
    old = await buildImage(['amd64'], 'v1', 16 * 1024);
    own = await buildImage(['amd64'], 'v1', 16 * 1024);
    await pushImage(fresh, reg.port, 'team/fresh', 'v1');
    await pushImage(old, reg.port, 'team/old', 'v1');
    await pushImage(own, reg.port, 'team/own', 'v1');
    yaml = `
oci:
  default_registry: registry.test
  registries:
    registry.test:
      url: http://127.0.0.1:${reg.port}
policy:
  oci:
    min_age: 7d
    allow:
      - repository: registry.test/team/fresh
        tags: { v1: "${fresh.digest}" }
      - repository: registry.test/team/old
        tags: { v1: "${old.digest}" }
      - repository: registry.test/team/own
        tags: { v1: "${own.digest}" }
        min_age: 0
`;
    a = await startAirlock(yaml);
    // Airlock first saw team/old's digest eight days ago (as a replica sharing the store would have recorded it).
    await a.airlock.meta.recordOciFirstSeen(old.digest, Date.now() - 8 * DAY);
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await reg.stop();
  });

  const via = (ref: string) => `docker://127.0.0.1:${a.port}/registry.test/${ref}`;
  const pull = (ref: string) => skopeo(['copy', '--src-tls-verify=false', via(ref), out()]);

  it('refuses a tag whose digest Airlock first saw just now, naming its age, the rule and the override; records it as too_new', async () => {
    const before = Date.now();
    const r = await pull('team/fresh:v1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /registry\.test\/team\/fresh:v1 \(sha256:[0-9a-f]{64}\) was first seen by Airlock [0-9T:.-]+Z, \d+s ago, younger than the minimum age 7d \(policy oci\.min_age\)/,
    );
    expect(r.stderr).toContain(
      `pull it by digest (a digest pin, which a person reviewed, overrides the minimum age): registry.test/team/fresh@${fresh.digest}`,
    );
    // The author's `created` (2001) did not count: the first sight is now.
    const seen = await a.airlock.meta.getOciFirstSeen(fresh.digest);
    expect(seen).toBeGreaterThanOrEqual(before - 1000);
    expect(seen).toBeLessThanOrEqual(Date.now());
    const rows = await records(a, 'ecosystem=oci&name=registry.test/team/fresh&decision=deny');
    expect(rows[0]).toMatchObject({ code: 'too_new', rule: 'oci.min_age', version: 'v1', filename: 'manifest', sha256: fresh.digest.slice(7) });
    // HEAD by tag (what docker asks first) is refused the same way.
    const head = await fetch(`${a.url}/v2/registry.test/team/fresh/manifests/v1`, { method: 'HEAD' });
    expect(head.status).toBe(403);
  });

  it('serves the same image pulled by digest (the reviewed override), and the tag stays refused afterwards', async () => {
    const r = await pull(`team/fresh@${fresh.digest}`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await pull('team/fresh:v1')).stderr).toMatch(/younger than the minimum age 7d/);
  });

  it('serves a tag whose digest was first seen longer ago than min_age, and a tag under a rule whose own min_age is 0', async () => {
    const r = await pull('team/old:v1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const o = await pull('team/own:v1');
    expect(o.stderr).toBe('');
    expect(o.code).toBe(0);
  });

  it('keeps the first sight in the store: another server on the same store (a replica, a restart) still refuses the young tag', async () => {
    const b = await startAirlock(yaml, { dataDir: join(a.dir, 'data') });
    try {
      const r = await skopeo(['copy', '--src-tls-verify=false', `docker://127.0.0.1:${b.port}/registry.test/team/fresh:v1`, out()]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/was first seen by Airlock/);
      expect(await b.airlock.meta.getOciFirstSeen(fresh.digest)).toBe(await a.airlock.meta.getOciFirstSeen(fresh.digest));
      expect((await skopeo(['copy', '--src-tls-verify=false', `docker://127.0.0.1:${b.port}/registry.test/team/old:v1`, out()])).code).toBe(0);
    } finally {
      await b.stop();
    }
  });

  it('airlock image check shows the image author-chosen `created`, labelled as such, and when Airlock first saw the digest', async () => {
    const r = await airlockCli(['image', 'check', `registry.test/team/fresh@${fresh.digest}`, '--config', a.configFile]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain("created: 2001-01-01T00:00:00Z (chosen by the image's author: shown, not trusted)");
    const seen = new Date((await a.airlock.meta.getOciFirstSeen(fresh.digest))!).toISOString();
    expect(r.stdout).toContain(`first seen by Airlock: ${seen} (${fresh.digest}; oci.min_age counts from it)`);
  });
});
