import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { approvalFor } from '../../src/console/approval.js';
import { RECORD_CODE_LIST } from '../../src/core/record-codes.js';
import type { StoredPullRecord } from '../../src/storage/meta-store.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream } from '../helpers/fake-hub.js';
import { FakeIndex, sha256 } from '../helpers/fake-index.js';
import { FakeRegistry, digestOf, makeImage } from '../helpers/fake-registry.js';
import { records, rowsOf as rowsOfRequest, sendWithId } from '../helpers/http.js';
import { safetensors } from '../helpers/model-files.js';

const PIP_ACCEPT = 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01';
const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

/**
 * Every refusal of the three front-ends is on record: each request below is refused, and its row
 * is found by its request id, with its code and (where a reviewed change would approve it) the
 * approval the console offers. A refusal that leaves no row fails here.
 */
describe('every refusal is on record', () => {
  const pub = new FakeIndex();
  const internal = new FakeIndex();
  const hub = new FakeHub();
  const reg = new FakeRegistry();
  let a: TestAirlock;
  let tiny: string;
  const wheel = (name: string, v: string) => `${name.replace(/-/g, '_')}-${v}-py3-none-any.whl`;
  const v1 = makeImage([randomBytes(2000)]);
  const v2 = makeImage([randomBytes(2000)]);
  const evil = makeImage([randomBytes(100)]);
  const stray = randomBytes(500);

  beforeAll(async () => {
    await pub.start();
    await internal.start();
    await hub.start();
    await reg.start();
    pub
      .add('notallowed-pkg', { filename: wheel('notallowed-pkg', '0.9'), bytes: randomBytes(100) })
      .add('notallowed-pkg', { filename: wheel('notallowed-pkg', '1.0'), bytes: randomBytes(100) })
      .add('notallowed-pkg', { filename: wheel('notallowed-pkg', '2.0rc1'), bytes: randomBytes(100) })
      .add('tinylib', { filename: wheel('tinylib', '1.0'), bytes: randomBytes(100) })
      .add('tinylib', { filename: wheel('tinylib', '2.0'), bytes: randomBytes(100) })
      .add('tinylib', { filename: wheel('tinylib', '1.1'), bytes: randomBytes(100), advertisedSha256: null })
      .add('pinned', { filename: wheel('pinned', '1.0'), bytes: Buffer.from('pinned-a') })
      .add('pinned', { filename: wheel('pinned', '1.0').replace('py3-none-any', 'cp311-cp311-linux_x86_64'), bytes: Buffer.from('pinned-b') })
      .add('offsite', { filename: wheel('offsite', '1.0'), bytes: randomBytes(100), url: `http://localhost:${pub.port}/files/${wheel('offsite', '1.0')}` })
      .add('tampered', { filename: wheel('tampered', '1.0'), bytes: Buffer.from('good bytes'), servedBytes: Buffer.from('evil bytes') })
      .add('acme-ghost', { filename: wheel('acme-ghost', '1.0'), bytes: Buffer.from('the public impostor') });
    tiny = hub.commit('model', 'acme/tiny', [
      { path: 'config.json', bytes: Buffer.from('{"model_type": "gpt2"}') },
      { path: 'model.safetensors', bytes: safetensors({ w: { dtype: 'U8', shape: [100], data_offsets: [0, 100] } }, randomBytes(100)), lfs: true },
      { path: 'pytorch_model.bin', bytes: randomBytes(100), lfs: true },
      { path: 'evil-config.json', bytes: Buffer.from('{}') },
      { path: 'tampered.json', bytes: Buffer.from('{"listed": true}') },
      { path: 'modeling_tiny.py', bytes: Buffer.from('import os\nos.system("id")\n') },
    ]);
    hub.tamper.add('tampered.json');
    hub.commit('model', 'acme/other', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
    reg.push('team/app', v1, 'v1');
    reg.push('team/app', v2, 'v2');
    reg.push('team/evil', evil, 'latest');
    reg.tamper.add(evil.digest);
    a = await startAirlock(`
pypi:
  upstream: ${pub.simpleUrl}
  internal: ${internal.simpleUrl}
  file_hosts: ["127.0.0.1:${pub.port}", "127.0.0.1:${internal.port}"]
  index_ttl: 0
${hfUpstream(hub)}oci:
  default_registry: reg.test
  registries:
    reg.test:
      url: ${reg.url}
      blob_hosts: ["127.0.0.1:${reg.cdnPort}"]
policy:
  pypi:
    internal: ["acme-*"]
    allow:
      - { name: tinylib, versions: "<2" }
      - { name: pinned, versions: "==1.0", sha256: ["${sha256('pinned-a')}"] }
      - { name: offsite }
      - { name: tampered }
    deny:
      - { name: blocked, reason: "typosquat of requests" }
  hf:
    allow:
      - repo: acme/tiny
        refs: { main: "${tiny}" }
        files: ["*.json", "*.safetensors", "*.py"]
    deny:
      - repo: acme/tiny
        files: ["evil-*"]
        reason: known bad
  oci:
    allow:
      - repository: reg.test/team/app
        tags: { v1: "${v1.digest}" }
      - repository: reg.test/team/evil
        digests: ["${evil.digest}"]
`);
  });
  afterAll(async () => {
    await a?.stop();
    await pub.stop();
    await internal.stop();
    await hub.stop();
    await reg.stop();
  });

  /** Send a request exactly as written, with its own request id. */
  const send = (path: string, opts: { method?: string; headers?: Record<string, string> } = {}) => sendWithId(a.port, path, opts);
  /** The rows a request left, by its request id. */
  const rowsOf = (id: string): Promise<StoredPullRecord[]> => rowsOfRequest(a, id);
  /** A refused request, its one row, and that the row carries the expected code and decision. */
  async function refused(
    path: string,
    status: number,
    code: string,
    opts: { method?: string; headers?: Record<string, string>; decision?: string } = {},
  ): Promise<{ row: StoredPullRecord; body: string }> {
    const r = await send(path, { method: opts.method, headers: opts.headers });
    expect(r.status, `${path}: ${r.body}`).toBe(status);
    const rows = await rowsOf(r.id);
    expect(rows, `${path} left no row`).toHaveLength(1);
    expect(rows[0].code).toBe(code);
    expect(rows[0].decision).toBe(opts.decision ?? 'deny');
    expect(RECORD_CODE_LIST).toContain(rows[0].code);
    return { row: rows[0], body: r.body };
  }

  describe('PyPI', () => {
    const page = { accept: PIP_ACCEPT };

    it('a project page refused by policy: the refusal pip meets first, on record with no version (none was asked for) and its pin', async () => {
      const { row, body } = await refused('/pypi/simple/notallowed-pkg/', 403, 'not_allowlisted', { headers: page });
      expect(body).toMatch(/not on the PyPI allowlist/);
      expect(row).toMatchObject({ ecosystem: 'pypi', name: 'notallowed-pkg', rule: expect.any(String) });
      // The record says what was asked: a page, no version (a version here would put a refused
      // release in "who pulled version X?" answers).
      expect(row.version ?? null).toBeNull();
      // The pin takes the release pip would take (the newest final one), chosen when it is run.
      expect(approvalFor(row).command).toBe("airlock pin pypi 'notallowed-pkg'");
      // Found by name, as `airlock records --name` and the console look for it.
      expect((await records(a, 'name=notallowed-pkg&decision=deny')).map((r) => r.requestId)).toContain(row.requestId);

      const denied = await refused('/pypi/simple/blocked/', 403, 'denied', { headers: page });
      expect(denied.row.version ?? null).toBeNull();
      expect(approvalFor(denied.row).command).toBeUndefined();
    });

    it('a refused file, with the version its name gives and the pin that approves it', async () => {
      const { row } = await refused(`/pypi/files/notallowed-pkg/${wheel('notallowed-pkg', '1.0')}`, 403, 'not_allowlisted');
      expect(row).toMatchObject({ name: 'notallowed-pkg', version: '1.0', filename: wheel('notallowed-pkg', '1.0') });
      expect(approvalFor(row).command).toBe("airlock pin pypi 'notallowed-pkg==1.0'");

      const range = await refused(`/pypi/files/tinylib/${wheel('tinylib', '2.0')}`, 403, 'version_not_allowed');
      expect(approvalFor(range.row).command).toBe("airlock pin pypi 'tinylib==2.0'");
      const hash = await refused(`/pypi/files/pinned/${wheel('pinned', '1.0').replace('py3-none-any', 'cp311-cp311-linux_x86_64')}`, 403, 'hash_not_pinned');
      expect(hash.row.sha256).toBe(sha256('pinned-b'));
      const noSha = await refused(`/pypi/files/tinylib/${wheel('tinylib', '1.1')}`, 403, 'no_sha256');
      expect(approvalFor(noSha.row).command).toBeUndefined();
    });

    it('dependency confusion: an internal name the internal index lacks, as a page and as a file', async () => {
      const p = await refused('/pypi/simple/acme-ghost/', 403, 'internal_missing', { headers: page });
      expect(p.body).toMatch(/internal name .* the public project of that name is never served/);
      expect(approvalFor(p.row).command).toBeUndefined();
      expect(approvalFor(p.row).note).toMatch(/dependency confusion/);
      const f = await refused(`/pypi/files/acme-ghost/${wheel('acme-ghost', '1.0')}`, 403, 'internal_missing');
      expect(f.row).toMatchObject({ name: 'acme-ghost', version: '1.0' });
    });

    it('a file host outside pypi.file_hosts, and bytes that do not match the index', async () => {
      const host = await refused(`/pypi/files/offsite/${wheel('offsite', '1.0')}`, 502, 'file_host');
      expect(approvalFor(host.row).command).toBeUndefined();
      // The bytes stream as they are checked: the transfer is cut before its end, then recorded.
      const cut = await send(`/pypi/files/tampered/${wheel('tampered', '1.0')}`);
      expect(cut.complete).toBe(false);
      const rows = await rowsOf(cut.id);
      expect(rows.map((r) => [r.code, r.decision, r.version])).toEqual([['digest_mismatch', 'deny', '1.0']]);
    });

    it('a malformed request, and a bad token: the name decoded, bounded and without control characters', async () => {
      const markup = await refused('/pypi/simple/%3Cb%3Ex%3C%2Fb%3E/', 400, 'bad_request', { headers: page });
      expect(markup.body).toBe('invalid project name: expected a PEP 508 name\n');
      expect(markup.row.name).toBe('/pypi/simple/<b>x</b>/');
      const file = await refused('/pypi/files/Tiny%0aLib/x.whl', 400, 'bad_request');
      expect(file.row.name).toBe('/pypi/files/Tiny?Lib/x.whl');
      const long = await refused(`/pypi/simple/${'x%2F'.repeat(300)}/`, 400, 'bad_request', { headers: page });
      expect(long.row.name.length).toBeLessThanOrEqual(300);
      const token = { authorization: `Basic ${Buffer.from('__token__:not-a-token').toString('base64')}` };
      const bad = await refused('/pypi/simple/%3Cb%3Ex%3C%2Fb%3E/', 401, 'bad_token', { headers: { ...page, ...token } });
      expect(bad.row.name).toBe('/pypi/simple/<b>x</b>/');
      expect(approvalFor(bad.row).command).toBeUndefined();
    });

    it('a refused HEAD is on record like a refused GET (clients ask with HEAD first and send no GET after a refusal)', async () => {
      const file = await refused(`/pypi/files/notallowed-pkg/${wheel('notallowed-pkg', '1.0')}`, 403, 'not_allowlisted', { method: 'HEAD' });
      expect(file.row).toMatchObject({ name: 'notallowed-pkg', version: '1.0' });
      // containerd and Docker resolve a manifest by HEAD; huggingface_hub HEADs a file for its metadata.
      const manifest = await refused('/v2/team/nope/manifests/v1', 403, 'not_allowlisted', { method: 'HEAD', headers: { accept: OCI_ACCEPT } });
      expect(approvalFor(manifest.row).command).toBe('airlock pin oci reg.test/team/nope:v1');
      const hub = await refused('/hf/acme/other/resolve/main/config.json', 404, 'not_allowlisted', { method: 'HEAD' });
      expect(approvalFor(hub.row).command).toBe('airlock pin hf acme/other@main');
      // A HEAD that is answered is not a pull: no row.
      const served = await send('/pypi/simple/tinylib/', { method: 'HEAD', headers: { accept: PIP_ACCEPT } });
      expect(served.status).toBe(200);
      expect(await rowsOf(served.id)).toEqual([]);
    });
  });

  describe('Hugging Face', () => {
    it('a repository, a revision and a file the policy refuses; content inspection; a tampered file; a malformed path', async () => {
      const repo = await refused('/hf/acme/other/resolve/main/config.json', 404, 'not_allowlisted');
      expect(repo.row).toMatchObject({ ecosystem: 'hf', name: 'acme/other', version: 'main', filename: 'config.json' });
      expect(approvalFor(repo.row).command).toBe('airlock pin hf acme/other@main');
      // huggingface_hub asks for the repository's info first: that refusal is on record too.
      const info = await refused('/hf/api/models/acme/other/revision/main', 404, 'not_allowlisted');
      expect(approvalFor(info.row).command).toBe('airlock pin hf acme/other@main');
      const rev = await refused('/hf/acme/tiny/resolve/dev/config.json', 404, 'tag_not_pinned');
      expect(approvalFor(rev.row).command).toBe('airlock pin hf acme/tiny@dev');
      const file = await refused('/hf/acme/tiny/resolve/main/pytorch_model.bin', 404, 'not_allowlisted');
      expect(file.row.version).toBe(tiny);
      await refused('/hf/acme/tiny/resolve/main/evil-config.json', 404, 'denied');
      const code = await refused('/hf/acme/tiny/resolve/main/modeling_tiny.py', 403, 'content_refused');
      expect(code.row.scan).toBeTruthy();
      expect(approvalFor(code.row).yaml).toContain(code.row.sha256!);
      await refused('/hf/acme/tiny/resolve/main/tampered.json', 502, 'digest_mismatch');
      await refused('/hf/acme/tiny/resolve/main/../config.json', 400, 'bad_request');
    });
  });

  describe('OCI', () => {
    const accept = { accept: OCI_ACCEPT };
    it('tags, digests, repositories and blobs the policy refuses; a tampered manifest; a malformed name', async () => {
      const tag = await refused('/v2/team/app/manifests/v2', 403, 'tag_not_pinned', { headers: accept });
      expect(approvalFor(tag.row).command).toBe('airlock pin oci reg.test/team/app:v2');
      const digest = await refused(`/v2/team/app/manifests/${v2.digest}`, 403, 'digest_not_pinned', { headers: accept });
      expect(approvalFor(digest.row).command).toBe(`airlock pin oci reg.test/team/app@${v2.digest}`);
      await refused('/v2/team/nope/manifests/v1', 403, 'not_allowlisted', { headers: accept });
      await refused('/v2/team/nope/tags/list', 403, 'not_allowlisted');
      await refused(`/v2/team/app/blobs/${digestOf(stray)}`, 403, 'not_referenced');
      await refused(`/v2/team/evil/manifests/${evil.digest}`, 502, 'digest_mismatch', { headers: accept });
      const name = await refused('/v2/Team/App/manifests/v1', 400, 'bad_request', { headers: accept });
      expect(JSON.parse(name.body).errors[0].code).toBe('NAME_INVALID');
    });
  });

  it('identity is looked up once per request: on the fast path, or by the router, never both', async () => {
    const secret = await new Authenticator(a.airlock.meta).create('ci-runner', false);
    const auth = { authorization: `Basic ${Buffer.from(`__token__:${secret}`).toString('base64')}` };
    const spy = vi.spyOn(Authenticator.prototype, 'identify');
    try {
      const lookups = async (path: string, status: number, headers: Record<string, string> = {}) => {
        spy.mockClear();
        expect((await send(path, { headers: { accept: PIP_ACCEPT, ...auth, ...headers } })).status).toBe(status);
        return spy.mock.calls.length;
      };
      // A cold page (tried on the fast path, then the router), a warm one, a file, a refusal.
      expect(await lookups('/pypi/simple/tinylib/', 200)).toBe(1);
      expect(await lookups('/pypi/simple/tinylib/', 200)).toBe(1);
      expect(await lookups(`/pypi/files/tinylib/${wheel('tinylib', '1.0')}`, 200)).toBe(1);
      expect(await lookups('/pypi/simple/notallowed-pkg/', 403)).toBe(1);
      expect(await lookups('/pypi/simple/tinylib/', 401, { authorization: 'Bearer not-a-token' })).toBe(1);
    } finally {
      spy.mockRestore();
    }
  });
});
