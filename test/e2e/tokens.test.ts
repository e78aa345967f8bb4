import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadFile, whoAmI } from '@huggingface/hub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airlockCli } from '../helpers/cli.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { FakeIndex } from '../helpers/fake-index.js';
import { records } from '../helpers/http.js';
import { buildImage, haveTool, pushImage, RealRegistry, skopeo, type BuiltImage } from '../helpers/oci-tools.js';
import { buildDist, pip } from '../helpers/pip.js';

/** Client tokens, as each real client sends them, with every front-end set to require one. */
describe('client tokens with pip, @huggingface/hub and skopeo', () => {
  const pub = new FakeIndex();
  const hub = new FakeHub();
  const reg = new RealRegistry();
  let a: TestAirlock;
  let img: BuiltImage;
  let runner: string;
  let admin: string;
  let commit: string;
  const dist = buildDist({ name: 'tinylib', version: '1.0' });

  beforeAll(async () => {
    if (!haveTool('skopeo') || !haveTool('docker-registry')) throw new Error('skopeo and docker-registry are needed: .ci/run installs them');
    await pub.start();
    await hub.start();
    await reg.start();
    pub.add('tinylib', dist);
    commit = hub.commit('model', 'acme/m', [{ path: 'config.json', bytes: Buffer.from('{"model_type": "bert"}') }]);
    img = await buildImage(['amd64'], 'v1');
    await pushImage(img, reg.port, 'team/app', 'v1');
    a = await startAirlock(`
auth: { pypi: token, hf: token, oci: token, admin: token }
pypi:
  upstream: ${pub.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}"]
hf:
  upstream: ${hub.url}
oci:
  default_registry: registry.test
  registries:
    registry.test: { url: "http://127.0.0.1:${reg.port}" }
policy:
  pypi: { allow: [{ name: tinylib }] }
  hf: { allow: [{ repo: acme/m, refs: { main: "${commit}" } }] }
  oci: { allow: [{ repository: registry.test/team/app, tags: { v1: "${img.digest}" } }] }
`);
    const r = await airlockCli(['token', 'create', '--name', 'ci-runner', '--config', a.configFile]);
    expect(r.code, r.stderr).toBe(0);
    runner = r.stdout.trim();
    admin = (await airlockCli(['token', 'create', '--name', 'security', '--admin', '--config', a.configFile])).stdout.trim();
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await pub.stop();
    await hub.stop();
    await reg.stop();
  });

  it('issues hf_ tokens and stores only their hashes', async () => {
    expect(runner).toMatch(/^hf_[0-9A-Za-z]{40}$/);
    const list = await airlockCli(['token', 'list', '--config', a.configFile]);
    expect(list.stdout).toMatch(/ci-runner\tclient\t.*\tactive/);
    expect(list.stdout).not.toContain(runner);
  });

  it('pip: credentials in the index URL; refused without them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-pip-'));
    const withToken = await pip([
      'download',
      '--index-url',
      `http://ci-runner:${runner}@127.0.0.1:${a.port}/pypi/simple/`,
      '--no-deps',
      '-d',
      dir,
      'tinylib==1.0',
    ]);
    expect(withToken.code, withToken.out).toBe(0);
    expect(readdirSync(dir)).toEqual(['tinylib-1.0-py3-none-any.whl']);
    const without = await pip([
      'download',
      '--index-url',
      `${a.url}/pypi/simple/`,
      '--no-deps',
      '--no-input',
      '-d',
      mkdtempSync(join(tmpdir(), 'airlock-pip-')),
      'tinylib==1.0',
    ]);
    expect(without.code).not.toBe(0);
    // pip reports a refused index page as "no matching distribution" (the 401 itself shows with -v).
    expect(without.out).toMatch(/401|No matching distribution/);
  });

  it('@huggingface/hub: accessToken; refused without it', async () => {
    const blob = await downloadFile({ repo: 'acme/m', path: 'config.json', hubUrl: `${a.url}/hf`, accessToken: runner });
    expect(await blob!.text()).toBe('{"model_type": "bert"}');
    await expect(downloadFile({ repo: 'acme/m', path: 'config.json', hubUrl: `${a.url}/hf` })).rejects.toThrow(/client token is required/);
    const who = await whoAmI({ accessToken: runner, hubUrl: `${a.url}/hf` });
    expect(who).toMatchObject({ type: 'user', name: 'ci-runner' });
  });

  it('skopeo: --src-creds through the registry token flow; refused without them', async () => {
    const via = `docker://127.0.0.1:${a.port}/registry.test/team/app:v1`;
    const ok = await skopeo([
      'copy',
      '--src-tls-verify=false',
      '--src-creds',
      `ci-runner:${runner}`,
      via,
      `oci:${mkdtempSync(join(tmpdir(), 'airlock-oci-'))}:x`,
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const no = await skopeo(['copy', '--src-tls-verify=false', via, `oci:${mkdtempSync(join(tmpdir(), 'airlock-oci-'))}:x`]);
    expect(no.code).not.toBe(0);
    expect(no.stderr).toMatch(/unauthorized|authentication required/i);
  });

  it('records name the token; admin endpoints need an admin token; a revoked token is refused', async () => {
    expect((await fetch(`${a.url}/-/records`)).status).toBe(401);
    expect((await fetch(`${a.url}/-/records`, { headers: { authorization: `Bearer ${runner}` } })).status).toBe(403);
    expect((await fetch(`${a.url}/-/healthz`)).status).toBe(200);
    await a.airlock.recorder.flush();
    const res = await fetch(`${a.url}/-/records?limit=100`, { headers: { authorization: `Bearer ${admin}` } });
    const recs = (await res.json()).records as { client: string; ecosystem: string; decision: string }[];
    for (const eco of ['pypi', 'hf', 'oci'])
      expect(
        recs.some((r) => r.ecosystem === eco && r.decision === 'allow' && r.client === 'ci-runner@127.0.0.1'),
        eco,
      ).toBe(true);
    expect((await airlockCli(['token', 'revoke', 'ci-runner', '--config', a.configFile])).code).toBe(0);
    const revoked = await fetch(`${a.url}/hf/acme/m/resolve/main/config.json`, { headers: { authorization: `Bearer ${runner}` } });
    expect(revoked.status).toBe(401);
    expect(revoked.headers.get('x-error-message')).toMatch(/not valid/);
    // The attempt is on record (refused, rule auth.hf, the address: the token is no longer anyone's) and the secret is not.
    await a.airlock.recorder.flush();
    const after = (await (await fetch(`${a.url}/-/records?decision=deny&limit=100`, { headers: { authorization: `Bearer ${admin}` } })).json()).records as {
      name: string;
      rule: string;
      reason: string;
      client: string;
      requestId: string | null;
    }[];
    const row = after.find((r) => r.rule === 'auth.hf' && r.name === '/hf/acme/m/resolve/main/config.json');
    expect(row).toMatchObject({ client: '127.0.0.1', reason: 'the token presented is not valid (unknown or revoked)' });
    expect(row!.requestId).toBeTruthy();
    expect(JSON.stringify(after)).not.toContain(runner);
    void records;
  });

  it("issues a revoked token's name again with a new secret; the revoked secret stays refused", async () => {
    // The previous test revoked ci-runner.
    const again = await airlockCli(['token', 'create', '--name', 'ci-runner', '--config', a.configFile]);
    expect(again.code, again.stderr).toBe(0);
    const fresh = again.stdout.trim();
    expect(fresh).toMatch(/^hf_[0-9A-Za-z]{40}$/);
    expect(fresh).not.toBe(runner);
    const url = `${a.url}/hf/acme/m/resolve/main/config.json`;
    expect((await fetch(url, { headers: { authorization: `Bearer ${fresh}` } })).status).toBe(200);
    expect((await fetch(url, { headers: { authorization: `Bearer ${runner}` } })).status).toBe(401);
    const who = await whoAmI({ accessToken: fresh, hubUrl: `${a.url}/hf` });
    expect(who).toMatchObject({ name: 'ci-runner' });
    // A live name is not issued twice, and says so in one line.
    const dup = await airlockCli(['token', 'create', '--name', 'ci-runner', '--config', a.configFile]);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('a live token named ci-runner already exists (revoke it first, or choose another name)');
    expect(dup.stderr.trim().split('\n')).toHaveLength(1);
    // The list keeps the revoked token's row beside the live one.
    const list = (await airlockCli(['token', 'list', '--config', a.configFile])).stdout;
    expect(list).toMatch(/ci-runner\tclient\t.*\trevoked .*\nci-runner\tclient\t.*\tactive/);
    expect(list).not.toContain(fresh);
  });
});
