import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { downloadFile, listFiles, modelInfo, snapshotDownload } from '@huggingface/hub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha256hex, type HubFile } from '../helpers/fake-hub.js';
import { corpus, corpusFile, corpusPick, useCorpusMirror } from '../helpers/corpus.js';
import { rawGet, records } from '../helpers/http.js';
import { R, hex, safetensors, torchZip } from '../helpers/model-files.js';

/** A valid safetensors file with one F32 tensor of random values, n bytes of data. */
function st(n: number): Buffer {
  return safetensors({ w: { dtype: 'F32', shape: [n / 4], data_offsets: [0, n] } }, randomBytes(n));
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

describe('the real @huggingface/hub client through Airlock', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  let commit: string;
  const files: HubFile[] = [
    { path: 'model.safetensors', bytes: st(2 * 1024 * 1024), lfs: true },
    { path: 'config.json', bytes: Buffer.from(JSON.stringify({ model_type: 'llama', hidden_size: 64 })) },
    { path: 'tokenizer/tokenizer.json', bytes: Buffer.from('{"model": {"type": "BPE"}}') },
    { path: 'pytorch_model.bin', bytes: randomBytes(4096), lfs: true },
  ];
  const bad = st(1024 * 1024);
  const hubUrl = () => `${a.url}/hf`;

  beforeAll(async () => {
    await hub.start();
    hub.pageSize = 2;
    commit = hub.commit('model', 'acme/tiny-llama', files);
    const badCommit = hub.commit('model', 'acme/tampered', [{ path: 'model.safetensors', bytes: bad, lfs: true }]);
    hub.tamperRepo = 'acme/tampered';
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  hf:
    allow:
      - repo: acme/tiny-llama
        refs: { main: "${commit}" }
        files: ["*.safetensors", "*.json"]
      - repo: acme/tampered
        refs: { main: "${badCommit}" }
`);
  });

  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  it('snapshotDownload fetches the pinned snapshot, byte-identical, with only the allowed files', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
    // Someone moves main upstream before the download: the pinned commit is what arrives.
    hub.commit('model', 'acme/tiny-llama', [{ path: 'config.json', bytes: Buffer.from('{"moved": true}') }]);
    const folder = await snapshotDownload({ repo: 'acme/tiny-llama', revision: 'main', hubUrl: hubUrl(), cacheDir });
    expect(folder.endsWith(join('snapshots', commit))).toBe(true);
    const got = walk(folder)
      .map((p) => relative(folder, p))
      .sort();
    expect(got).toEqual(['config.json', 'model.safetensors', 'tokenizer/tokenizer.json']);
    for (const f of files.filter((x) => got.includes(x.path))) {
      expect(readFileSync(join(folder, f.path)).equals(f.bytes), f.path).toBe(true);
    }
    expect(readFileSync(join(cacheDir, 'models--acme--tiny-llama', 'refs', 'main'), 'utf8')).toBe(commit);
    const recs = await records(a, 'ecosystem=hf&name=acme/tiny-llama&decision=allow');
    expect(recs.some((r) => r.filename === 'model.safetensors' && r.sha256 === sha256hex(files[0].bytes) && r.version === commit)).toBe(true);
  });

  it('listFiles follows Airlock paging and modelInfo reports the pinned commit', async () => {
    const paths: string[] = [];
    for await (const e of listFiles({ repo: 'acme/tiny-llama', recursive: true, hubUrl: hubUrl() })) paths.push(e.path);
    expect(paths.sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer', 'tokenizer/tokenizer.json']);
    const info = await modelInfo({ name: 'acme/tiny-llama', hubUrl: hubUrl(), additionalFields: ['sha'] });
    expect((info as { sha?: string }).sha).toBe(commit);
  });

  it('downloadFile gets a verified file, and null for a file the policy leaves out', async () => {
    const blob = await downloadFile({ repo: 'acme/tiny-llama', path: 'model.safetensors', hubUrl: hubUrl() });
    expect(blob).not.toBeNull();
    expect(Buffer.from(await blob!.arrayBuffer()).equals(files[0].bytes)).toBe(true);
    const refused = await downloadFile({ repo: 'acme/tiny-llama', path: 'pytorch_model.bin', hubUrl: hubUrl() });
    expect(refused).toBeNull();
  });

  it('is refused a repository that is not allowed, with the mirror policy reason', async () => {
    hub.commit('model', 'evil/impostor', [{ path: 'config.json', bytes: Buffer.from('{}') }]);
    const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
    await expect(snapshotDownload({ repo: 'evil/impostor', hubUrl: hubUrl(), cacheDir })).rejects.toThrow(
      /evil\/impostor is not on the Hugging Face allowlist/,
    );
    await expect(downloadFile({ repo: 'acme/tiny-llama', revision: 'v2', path: 'config.json', hubUrl: hubUrl() })).rejects.toThrow(
      /revision "v2" of acme\/tiny-llama is not pinned/,
    );
  });

  it('never completes a tampered file, and caches nothing', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
    await expect(snapshotDownload({ repo: 'acme/tampered', hubUrl: hubUrl(), cacheDir })).rejects.toThrow();
    const blobs = join(cacheDir, 'models--acme--tampered', 'blobs', sha256hex(bad));
    expect(existsSync(blobs)).toBe(false);
    await a.airlock.cache.idle();
    expect(await a.airlock.cache.cachedSize(sha256hex(bad))).toBeUndefined();
  });
});

describe('the real @huggingface/hub client and model-file inspection', () => {
  const hub = new FakeHub();
  let a: TestAirlock;
  const benign = torchZip(hex(R.R10));
  const evil = torchZip(hex(R.R3), {});

  beforeAll(async () => {
    await hub.start();
    const good = hub.commit('model', 'acme/benign', [
      { path: 'pytorch_model.bin', bytes: benign, lfs: true },
      { path: 'config.json', bytes: Buffer.from('{"model_type": "bert"}') },
    ]);
    const bad = hub.commit('model', 'acme/poisoned', [{ path: 'pytorch_model.bin', bytes: evil, lfs: true }]);
    a = await startAirlock(`
${hfUpstream(hub)}policy:
  hf:
    allow:
      - { repo: acme/benign, refs: { main: "${good}" } }
      - { repo: acme/poisoned, refs: { main: "${bad}" } }
`);
  });
  afterAll(async () => {
    await a?.stop();
    await hub.stop();
  });

  it('gets a benign checkpoint byte for byte', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
    const folder = await snapshotDownload({ repo: 'acme/benign', hubUrl: `${a.url}/hf`, cacheDir });
    expect(readFileSync(join(folder, 'pytorch_model.bin')).equals(benign)).toBe(true);
  });

  it('is refused the malicious one with a Hub-style error naming the global', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
    await expect(snapshotDownload({ repo: 'acme/poisoned', hubUrl: `${a.url}/hf`, cacheDir })).rejects.toThrow(
      /pickle imports posix\.system, outside the torch-weights profile/,
    );
    await expect(downloadFile({ repo: 'acme/poisoned', path: 'pytorch_model.bin', hubUrl: `${a.url}/hf` })).rejects.toThrow(/posix\.system/);
    expect(existsSync(join(cacheDir, 'models--acme--poisoned', 'blobs', sha256hex(evil)))).toBe(false);
  });
});

/**
 * The real-world corpus (test/corpus: files torch, numpy, sklearn, tarfile and the compressors
 * wrote) through the real client: everything the reference judge loads arrives byte-identical,
 * everything it refuses is refused with the file and the way out named.
 */
describe('the real @huggingface/hub client and the real-world corpus', () => {
  const airlock = useCorpusMirror();
  const hubUrl = () => `${airlock().url}/hf`;

  for (const [repo, type, datasets] of [
    ['corpus/checkpoints', 'model', false],
    ['corpus/data', 'dataset', true],
  ] as const) {
    it(`snapshotDownload of ${repo} (every file the judge serves) arrives byte-identical`, async () => {
      const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
      const folder = await snapshotDownload({ repo: { type, name: repo }, hubUrl: hubUrl(), cacheDir });
      const want = corpusPick('serve', datasets);
      expect(
        walk(folder)
          .map((p) => relative(folder, p))
          .sort(),
      ).toEqual([...want].sort());
      for (const rel of want) expect(readFileSync(join(folder, rel)).equals(corpusFile(rel)), rel).toBe(true);
    });
  }

  it('every file the judge refuses is refused, naming the file and the way out', async () => {
    for (const rel of corpusPick('refuse', false)) {
      await expect(downloadFile({ repo: 'corpus/refused', path: rel, hubUrl: hubUrl() }), rel).rejects.toThrow(
        new RegExp(
          `corpus/refused/${rel.replace(/[.]/g, '\\.')}: .*hf\\.allow\\[1\\]\\.files.*${corpus.files[rel].sha256} to hf\\.allow\\[1\\]\\.scan\\.sha256`,
        ),
      );
    }
  });

  it('a tar holding a pickle the judge refuses never arrives whole, is not cached, and is refused by name next time', async () => {
    const rel = 'datasets/pickled-sample.tar';
    const bytes = corpusFile(rel);
    const first = await rawGet(`${hubUrl()}/datasets/corpus/poisoned/resolve/main/${rel}`);
    expect(first.status === 403 || (first.status === 200 && !first.complete && first.body.length < bytes.length)).toBe(true);
    await airlock().airlock.cache.idle();
    expect(await airlock().airlock.cache.cachedSize(corpus.files[rel].sha256)).toBeUndefined();
    const again = await rawGet(`${hubUrl()}/datasets/corpus/poisoned/resolve/main/${rel}`);
    expect(again.status).toBe(403);
    expect(String(again.headers['x-error-message'])).toMatch(/argparse\.Namespace \(in member sample000099\.pyd\)/);
    const cacheDir = mkdtempSync(join(tmpdir(), 'airlock-hfjs-'));
    await expect(snapshotDownload({ repo: { type: 'dataset', name: 'corpus/poisoned' }, hubUrl: hubUrl(), cacheDir })).rejects.toThrow(/sample000099\.pyd/);
  });
});
