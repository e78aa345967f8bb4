import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rescan } from '../../src/cli/rescan.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha256hex } from '../helpers/fake-hub.js';
import { rawGet, records } from '../helpers/http.js';
import { blobFile, quarantinedIn } from '../helpers/rot.js';
import { R, hex, safetensors, torchZip } from '../helpers/model-files.js';

describe('model files are inspected on their way through the Hugging Face front-end', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  const benign = torchZip(hex(R.R10));
  const evilZip = torchZip(hex(R.R2), {});
  const reviewed = torchZip(hex(R.R7), {});
  const weights = safetensors({ w: { dtype: 'F32', shape: [100_000], data_offsets: [0, 400_000] } }, Buffer.alloc(400_000, 7));
  const badWeights = safetensors(
    { a: { dtype: 'F32', shape: [50_000], data_offsets: [0, 200_000] }, b: { dtype: 'F32', shape: [50_000], data_offsets: [100_000, 300_000] } },
    Buffer.alloc(300_000),
  );
  let c1: string;
  let c2: string;

  beforeAll(async () => {
    await hub.start();
    c1 = hub.commit('model', 'acme/ckpt', [
      { path: 'pytorch_model.bin', bytes: benign, lfs: true },
      { path: 'evil.bin', bytes: evilZip, lfs: true },
      { path: 'reviewed.bin', bytes: reviewed, lfs: true },
      { path: 'model.safetensors', bytes: weights, lfs: true },
      { path: 'bad.safetensors', bytes: badWeights, lfs: true },
      { path: 'raw.pkl', bytes: hex(R.R1) },
      { path: 'modeling_acme.py', bytes: Buffer.from('import os\n') },
      { path: 'config.json', bytes: Buffer.from(JSON.stringify({ model_type: 'acme', auto_map: { AutoModel: 'modeling_acme.AcmeModel' } })) },
    ]);
    c2 = hub.commit('model', 'acme/trusted', [{ path: 'config.json', bytes: Buffer.from(JSON.stringify({ auto_map: { AutoModel: 'm.M' } })) }]);
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  hf:
    allow:
      - repo: acme/ckpt
        refs: { main: "${c1}" }
        scan: { sha256: ["${sha256hex(reviewed)}"] }
      - repo: acme/trusted
        refs: { main: "${c2}" }
        scan: { remote_code: allow }
`);
  });

  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  const url = (p: string, repo = 'acme/ckpt') => `${a.url}/hf/${repo}/resolve/main/${p}`;

  it('serves a benign torch checkpoint unchanged, after judging it, with the verdict on record', async () => {
    const res = await rawGet(url('pytorch_model.bin'));
    expect(res.status).toBe(200);
    expect(res.body.equals(benign)).toBe(true);
    const recs = await records(a, 'ecosystem=hf&decision=allow');
    const rec = recs.find((r) => r.filename === 'pytorch_model.bin');
    const scan = JSON.parse(rec.scan);
    expect(scan).toMatchObject({
      format: 'torch-zip',
      verdict: 'allow',
      globals: ['collections.OrderedDict', 'torch.FloatStorage', 'torch._utils._rebuild_tensor_v2'],
    });
  });

  it('refuses a malicious checkpoint before any byte, naming the global, and caches nothing', async () => {
    const res = await rawGet(url('evil.bin'));
    expect(res.status).toBe(403);
    expect(String(res.headers['x-error-message'])).toMatch(/pickle imports posix\.system/);
    expect(JSON.parse(res.body.toString()).error).toMatch(/posix\.system/);
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(sha256hex(evilZip))).toBeUndefined();
    expect(readdirSync(join(a.dir, 'data', 'spool'))).toEqual([]);
    // The verdict is kept per sha256: HEAD now says EntryNotFound (transformers moves on), GET refuses without an upstream fetch.
    const fetches = hub.count(`cdn:${sha256hex(evilZip)}`);
    const head = await fetch(url('evil.bin'), { method: 'HEAD' });
    expect(head.status).toBe(404);
    expect(head.headers.get('x-error-code')).toBe('EntryNotFound');
    expect(head.headers.get('x-repo-commit')).toBe(c1);
    const again = await rawGet(url('evil.bin'));
    expect(again.status).toBe(403);
    expect(hub.count(`cdn:${sha256hex(evilZip)}`)).toBe(fetches);
    const recs = await records(a, 'ecosystem=hf&decision=deny');
    const rec = recs.find((r) => r.filename === 'evil.bin');
    expect(JSON.parse(rec.scan)).toMatchObject({ format: 'torch-zip', verdict: 'deny', globals: ['posix.system'] });
  });

  it('serves a file a person reviewed and pinned by sha256, without walking it (an unreviewed one still is)', async () => {
    const res = await rawGet(url('reviewed.bin'));
    expect(res.status).toBe(200);
    expect(res.body.equals(reviewed)).toBe(true);
    await a.airlock.cache.idle();
    // Walked, this checkpoint would be refused (its pickle is outside the profile): no report was made or kept.
    expect(await a.airlock.meta.getScan(sha256hex(reviewed))).toBeNull();
    const rec = (await records(a, 'ecosystem=hf&decision=allow')).find((r) => r.filename === 'reviewed.bin');
    expect(JSON.parse(rec.scan)).toMatchObject({ verdict: 'allow', reviewed: expect.stringMatching(/^hf\.allow\[0\].*sha256$/), inspected: false });
    // Warm, it is served the same way.
    expect((await rawGet(url('reviewed.bin'))).body.equals(reviewed)).toBe(true);
    expect(await a.airlock.meta.getScan(sha256hex(reviewed))).toBeNull();
    // The unreviewed checkpoint served before was walked and its report kept.
    expect(await a.airlock.meta.getScan(sha256hex(benign))).not.toBeNull();
  });

  it('streams valid safetensors, and refuses an invalid one from its header, before any byte', async () => {
    const ok = await rawGet(url('model.safetensors'));
    expect(ok.status).toBe(200);
    expect(ok.body.equals(weights)).toBe(true);
    const bad = await rawGet(url('bad.safetensors'));
    expect(bad.status).toBe(403);
    expect(String(bad.headers['x-error-message'])).toMatch(/overlap|gap|offsets/);
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(sha256hex(badWeights))).toBeUndefined();
  });

  it('refuses small pickles, repository code and auto_map unless the repo allows remote code', async () => {
    const pkl = await fetch(url('raw.pkl'));
    expect(pkl.status).toBe(403);
    expect(pkl.headers.get('x-error-message')).toMatch(/os\.system/);
    const py = await fetch(url('modeling_acme.py'));
    expect(py.status).toBe(403);
    expect(py.headers.get('x-error-message')).toMatch(/Python source.*remote_code is deny/);
    const cfg = await fetch(url('config.json'));
    expect(cfg.status).toBe(403);
    expect(cfg.headers.get('x-error-message')).toMatch(/auto_map/);
    const trusted = await fetch(url('config.json', 'acme/trusted'));
    expect(trusted.status).toBe(200);
  });

  it('rescan re-judges cached files after a scanner change, and refused files stop being served', async () => {
    // Pretend the benign checkpoint was judged by an older scanner that saw an import it no longer would.
    const db = new Database(join(a.dir, 'data', 'airlock.db'));
    db.prepare("UPDATE scans SET scanner = 'airlock-scan/0' WHERE sha256 = ?").run(sha256hex(benign));
    db.close();
    const progress: number[] = [];
    const res = await rescan(a.configFile, { progress: (d) => progress.push(d) });
    expect(res.rescanned).toBeGreaterThanOrEqual(1);
    expect(progress[progress.length - 1]).toBe(res.total);
    // A policy change applies to stored verdicts at once: no more pickles for this repo.
    const cfg = (await import('node:fs')).readFileSync(a.configFile, 'utf8').replace('scan: { sha256:', 'scan: { pickle: deny, sha256:');
    (await import('node:fs')).writeFileSync(a.configFile, cfg);
    expect(a.airlock.reloadPolicy()).toBe(true);
    const now = await rawGet(url('pytorch_model.bin'));
    expect(now.status).toBe(403);
    expect(String(now.headers['x-error-message'])).toMatch(/pickle is deny/);
    const stillOk = await rawGet(url('model.safetensors'));
    expect(stillOk.status).toBe(200);
  });

  it('rescan judges only verified bytes: a rotted cached copy is quarantined, no report is made from it, and it is fetched clean next', async () => {
    const dataDir = join(a.dir, 'data');
    const h = sha256hex(weights);
    expect((await rawGet(url('model.safetensors'))).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    const db = new Database(join(dataDir, 'airlock.db'));
    db.prepare("UPDATE scans SET scanner = 'airlock-scan/0' WHERE sha256 = ?").run(h);
    const rotted = readFileSync(blobFile(dataDir, h));
    rotted[rotted.length - 5] ^= 1;
    writeFileSync(blobFile(dataDir, h), rotted);
    const res = await rescan(a.configFile);
    expect(res.corrupt).toBe(1);
    expect((db.prepare('SELECT scanner FROM scans WHERE sha256 = ?').get(h) as { scanner: string }).scanner).toBe('airlock-scan/0');
    expect(db.prepare('SELECT 1 FROM blobs WHERE sha256 = ?').get(h)).toBeUndefined();
    db.close();
    expect(quarantinedIn(dataDir, h).length).toBe(1);
    const again = await rawGet(url('model.safetensors'));
    expect(again.status).toBe(200);
    expect(again.body.equals(weights)).toBe(true);
  });
});
