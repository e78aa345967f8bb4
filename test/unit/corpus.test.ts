import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HfPolicy } from '../../src/policy/hf.js';
import { scan } from '../../src/scan/index.js';
import { contentDecision } from '../../src/hf/inspection.js';
import { bufferSource } from '../../src/scan/source.js';
import { corpus, corpusFile } from '../helpers/corpus.js';

/**
 * The real-world corpus (test/corpus/generate.py wrote it with torch 1.13 and 2.13, numpy,
 * sklearn, tarfile, gzip, bz2, lzma and zstd; judge.py recorded what torch.load(weights_only=True)
 * and numpy.load(allow_pickle=False) do with each file). Airlock's verdict under the default
 * policy must equal the reference verdict for every file: no false refusals, no false passes.
 */
const policy = new HfPolicy({ allow: [{ repo: 'org/corpus', commits: ['c'.repeat(40)] }] }, ['hf']);

describe(`real-world corpus judged against torch ${corpus.judge.torch} / numpy ${corpus.judge.numpy}`, () => {
  const entries = Object.entries(corpus.files);
  it('holds benign files of every kind the issue names, and files the judge refuses', () => {
    expect(entries.length).toBeGreaterThanOrEqual(80);
    expect(entries.filter(([, v]) => v.verdict === 'serve').length).toBeGreaterThanOrEqual(60);
    expect(entries.filter(([, v]) => v.verdict === 'refuse').length).toBeGreaterThanOrEqual(15);
  });
  for (const [rel, ref] of entries) {
    it(`${ref.verdict === 'serve' ? 'serves' : 'refuses'} ${rel}`, async () => {
      const bytes = corpusFile(rel);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(ref.sha256);
      const report = await scan(bufferSource(bytes), rel);
      const d = contentDecision(policy, 'model', 'org/corpus', rel, ref.sha256, report);
      const why = d.allow ? `served as ${report.format}` : d.reason;
      expect({ verdict: d.allow ? 'serve' : 'refuse', why }).toMatchObject({ verdict: ref.verdict });
      // An archive refused for one member is refused naming that member, as the judge did.
      const member = /^member ([^:]+):/.exec(ref.judge)?.[1];
      if (member) expect(why).toContain(member);
    });
  }
});
