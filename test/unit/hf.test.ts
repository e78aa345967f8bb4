import { describe, expect, it } from 'vitest';
import { parseHfPath, checkFilePath, HfPathError } from '../../src/hf/paths.js';
import { gitBlobSha1 } from '../../src/hf/routes.js';
import { nextLink } from '../../src/hf/hub.js';
import { HfPolicy } from '../../src/policy/hf.js';
import { isValidRepoId } from '../../src/names/hf.js';
import { PolicyError } from '../../src/policy/types.js';

const C1 = 'a'.repeat(40);
const C2 = 'b'.repeat(40);
const none = () => false;

describe('Hub URL parsing', () => {
  it('finds the marker instead of counting segments', () => {
    expect(parseHfPath('gpt2/resolve/main/config.json', none)).toEqual({
      kind: 'resolve',
      type: 'model',
      repo: 'gpt2',
      revision: 'main',
      path: 'config.json',
      raw: false,
    });
    expect(parseHfPath('org/m/resolve/main/sub/dir/w.bin', none)).toMatchObject({ repo: 'org/m', path: 'sub/dir/w.bin' });
    expect(parseHfPath('datasets/org/d/resolve/v1/data/train.parquet', none)).toMatchObject({ type: 'dataset', repo: 'org/d', revision: 'v1' });
    expect(parseHfPath('org/m/raw/main/README.md', none)).toMatchObject({ kind: 'resolve', raw: true });
    expect(parseHfPath('api/models/gpt2', none)).toEqual({ kind: 'info', type: 'model', repo: 'gpt2', revision: 'HEAD' });
    expect(parseHfPath('api/models/org/m/revision/main', none)).toEqual({ kind: 'info', type: 'model', repo: 'org/m', revision: 'main' });
    expect(parseHfPath('api/datasets/org/d/paths-info/main', none)).toEqual({ kind: 'paths-info', type: 'dataset', repo: 'org/d', revision: 'main' });
    expect(parseHfPath('api/models/org/m/refs', none)).toEqual({ kind: 'refs', type: 'model', repo: 'org/m' });
    expect(parseHfPath(`api/models/org/m/xet-read-token/${C1}`, none)).toEqual({ kind: 'xet', type: 'model', repo: 'org/m' });
    expect(parseHfPath('api/spaces/org/s', none)).toEqual({ kind: 'unsupported', what: '/api/spaces' });
  });
  it('takes revisions encoded and raw, and decodes only after routing', () => {
    expect(parseHfPath('org/m/resolve/refs%2Fpr%2F1/a%20b.txt', none)).toMatchObject({ revision: 'refs/pr/1', path: 'a b.txt' });
    expect(parseHfPath('api/models/org/m/tree/refs/pr/1/sub', none)).toMatchObject({ kind: 'tree', revision: 'refs/pr/1', path: 'sub' });
    expect(parseHfPath('api/models/org/m/tree/main/sub%2Fdir', none)).toMatchObject({ kind: 'tree', revision: 'main', path: 'sub/dir' });
    expect(parseHfPath('api/models/org/m/revision/refs%2Fconvert%2Fparquet', none)).toMatchObject({ revision: 'refs/convert/parquet' });
    expect(parseHfPath('api/models/org/m/tree/main', none)).toMatchObject({ path: '' });
  });
  it('prefers the reading the policy knows when a repo name is itself a marker word', () => {
    expect(parseHfPath('api/models/org/tree/tree/main', none)).toMatchObject({ repo: 'org', revision: 'tree' });
    expect(parseHfPath('api/models/org/tree/tree/main', (_t, r) => r === 'org/tree')).toMatchObject({ repo: 'org/tree', revision: 'main' });
  });
  it('refuses paths that leave the repository', () => {
    for (const p of ['../x', 'a/../b', '/etc/passwd', 'a\\b', 'C:/x', 'a//b', './a', '']) expect(() => checkFilePath(p), p).toThrow(HfPathError);
    expect(() => parseHfPath('org/m/resolve/main/a%2F..%2Fb', none)).toThrow(HfPathError);
    expect(() => parseHfPath('org/m/resolve/main/%E0%A4%A', none)).toThrow(/percent-encoding/);
  });
  it('computes git blob ids as git does', () => {
    expect(gitBlobSha1(Buffer.from('Hello, World!'))).toBe('b45ef6fec89518d314f546fd6c3025367b721684');
    expect(gitBlobSha1(Buffer.alloc(0))).toBe('e69de29bb2d1d6434b8b29ae775ad8c2e48c5391');
  });
  it('reads the next link of a Link header', () => {
    const base = new URL('https://hub.example/api/models/x/tree/main');
    expect(nextLink('<https://hub.example/api/models/x/tree/main?cursor=abc>; rel="next"', base)!.href).toBe(
      'https://hub.example/api/models/x/tree/main?cursor=abc',
    );
    expect(nextLink('<https://hub.example/p?a=1>; rel="prev", </q?cursor=2>; rel="next"', base)!.href).toBe('https://hub.example/q?cursor=2');
    expect(nextLink(undefined, base)).toBeUndefined();
  });
});

describe('Hugging Face policy', () => {
  const p = new HfPolicy(
    {
      allow: [
        { repo: 'org/m', commits: [C1], refs: { main: C2 }, files: ['*.safetensors', 'config.json', 'tokenizer.*'] },
        { repo: 'gpt2', refs: { main: C1, HEAD: C2 } },
        { repo: 'org/d', type: 'dataset', commits: [C1] },
      ],
      deny: [
        { repo: 'evil-org/*', reason: 'impersonation' },
        { repo: 'org/m', files: ['*.bin'], reason: 'pickle' },
      ],
    },
    ['hf'],
  );
  it('answers a branch only with its pinned commit', () => {
    expect(p.resolveRevision('model', 'org/m', 'main')).toEqual({ decision: { allow: true, rule: 'hf.allow[0]' }, commit: C2 });
    expect(p.resolveRevision('model', 'org/m', C1).commit).toBe(C1);
    expect(p.resolveRevision('model', 'org/m', 'HEAD').commit).toBe(C2);
    expect(p.resolveRevision('model', 'gpt2', 'HEAD').commit).toBe(C2);
    const dev = p.resolveRevision('model', 'org/m', 'dev');
    expect(dev.commit).toBeUndefined();
    expect(dev.decision).toMatchObject({ allow: false, hubCode: 'RevisionNotFound' });
    expect(p.resolveRevision('model', 'org/m', 'c'.repeat(40)).decision).toMatchObject({ allow: false, hubCode: 'RevisionNotFound' });
    expect(p.resolveRevision('model', 'org/d', C1).decision).toMatchObject({ allow: false, hubCode: 'RepoNotFound' });
    expect(p.resolveRevision('dataset', 'org/d', C1).commit).toBe(C1);
  });
  it('filters files by glob, in any folder, with deny winning', () => {
    expect(p.decideFile('model', 'org/m', 'model.safetensors').allow).toBe(true);
    expect(p.decideFile('model', 'org/m', 'sub/model-00001.safetensors').allow).toBe(true);
    expect(p.decideFile('model', 'org/m', 'train.py')).toMatchObject({ allow: false, hubCode: 'EntryNotFound' });
    expect(p.decideFile('model', 'org/m', 'pytorch_model.bin')).toMatchObject({ allow: false, code: 'denied', hubCode: 'EntryNotFound' });
    expect(p.decideFile('model', 'gpt2', 'anything.py').allow).toBe(true);
    expect(p.decideRepo('model', 'evil-org/llama')).toMatchObject({ allow: false, hubCode: 'RepoNotFound', rule: 'hf.deny[0]' });
  });
  it('validates repo ids, commits and refs with the field path', () => {
    expect(isValidRepoId('openai-community/gpt2')).toBe(true);
    expect(isValidRepoId('a/b/c')).toBe(false);
    expect(isValidRepoId('a--b/c')).toBe(false);
    const bad = (input: ConstructorParameters<typeof HfPolicy>[0]) => {
      try {
        new HfPolicy(input, ['hf']);
      } catch (e) {
        expect(e).toBeInstanceOf(PolicyError);
        return `${(e as PolicyError).path.join('.')}: ${(e as Error).message}`;
      }
      throw new Error('expected a PolicyError');
    };
    expect(bad({ allow: [{ repo: 'org/m', commits: ['abc'] }] })).toMatch(/^hf\.allow\.0\.commits\.0: expected a full commit id/);
    expect(bad({ allow: [{ repo: 'org/m', refs: { main: 'v1' } }] })).toMatch(/^hf\.allow\.0\.refs\.main: a branch or tag must map to a pinned commit/);
    expect(bad({ allow: [{ repo: 'org/m' }] })).toMatch(/^hf\.allow\.0\.commits: org\/m: expected at least one pinned commit/);
    expect(bad({ allow: [{ repo: 'org/m', commits: [C1], files: ['../x'] }] })).toMatch(/^hf\.allow\.0\.files\.0/);
    expect(bad({ allow: [{ repo: '/m', commits: [C1] }] })).toMatch(/^hf\.allow\.0\.repo/);
  });
});
