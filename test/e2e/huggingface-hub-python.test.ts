import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haveHfPython, hfPython } from '../helpers/hf-python.js';
import { describe, expect, it } from 'vitest';
import { corpus, corpusPick, useCorpusMirror } from '../helpers/corpus.js';

/**
 * The real huggingface_hub (Python) through Airlock, on the real-world corpus: the client most
 * users have. .ci/run installs it with pip where the machine's package index has it; where it
 * cannot be imported this suite says so and skips (the @huggingface/hub suite covers the same).
 */
const haveClient = haveHfPython('its end-to-end suite');
const client = hfPython;

describe.skipIf(!haveClient)('the real huggingface_hub (Python) and the real-world corpus', () => {
  const airlock = useCorpusMirror();
  const endpoint = () => `${airlock().url}/hf`;

  for (const [repo, type, datasets] of [
    ['corpus/checkpoints', 'model', false],
    ['corpus/data', 'dataset', true],
  ] as const) {
    it(`snapshot_download of ${repo} arrives byte-identical`, async () => {
      const out = await client(['snapshot', type, repo, mkdtempSync(join(tmpdir(), 'airlock-hfpy-'))], endpoint());
      expect(out.error).toBeUndefined();
      const want = Object.fromEntries(corpusPick('serve', datasets).map((rel) => [rel, corpus.files[rel].sha256]));
      expect(out.files).toEqual(want);
    });
  }

  it('hf_hub_download of each refused file fails with the file, the finding and the way out', async () => {
    for (const rel of corpusPick('refuse', false)) {
      const out = await client(['download', 'model', 'corpus/refused', rel, mkdtempSync(join(tmpdir(), 'airlock-hfpy-'))], endpoint());
      expect(out.path, rel).toBeUndefined();
      expect(String(out.error), rel).toContain(`corpus/refused/${rel}: `);
      expect(String(out.error), rel).toContain(`add its sha256 ${corpus.files[rel].sha256} to hf.allow[1].scan.sha256`);
    }
  });

  it('snapshot_download of a dataset with a poisoned tar fails naming the member', async () => {
    const out = await client(['snapshot', 'dataset', 'corpus/poisoned', mkdtempSync(join(tmpdir(), 'airlock-hfpy-'))], endpoint());
    expect(out.files).toBeUndefined();
    expect(String(out.error)).toMatch(/sample000099\.pyd/);
  });
});
