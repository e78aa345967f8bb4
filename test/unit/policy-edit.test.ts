import { readFileSync } from 'node:fs';
import jsYaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { PolicyEditor, PolicyEditError } from '../../src/cli/policy-edit.js';
import { applyHfPin, applyOciPin, applyPypiPin } from '../../src/cli/pin-apply.js';
import { Policy } from '../../src/policy/index.js';
import { diff } from '../helpers/line-diff.js';

const h = (c: string) => `${c}a`.repeat(32);
const d = (c: string) => `sha256:${h(c)}`;
const commit = (c: string) => c.repeat(40);

function policyOf(text: string, base: string[]): Policy {
  let v = jsYaml.load(text) as Record<string, unknown>;
  for (const k of base) v = v[k] as Record<string, unknown>;
  return new Policy(v as never);
}

describe('policy editor: a pin changes only the lines it adds or edits', () => {
  it('the shipped config/airlock.yaml: flow pypi entries, `allow: []` with commented examples after it', () => {
    const text = readFileSync('config/airlock.yaml', 'utf8');
    const ed = new PolicyEditor(text, ['policy']);
    expect(applyPypiPin(ed, { name: 'numpy', version: '2.0.0', sha256: [h('a'), h('b')] })).toBe('added');
    expect(applyPypiPin(ed, { name: 'tqdm', version: '4.66.4', sha256: [h('c')] })).toBe('added');
    expect(applyOciPin(ed, { repository: 'docker.io/library/python', tag: '3.12-slim', digest: d('d') })).toBe('added');
    expect(applyHfPin(ed, { type: 'model', repo: 'openai-community/gpt2', ref: 'main', commit: commit('1') })).toBe('added');
    const out = ed.result();
    const { removed, added } = diff(text, out);
    expect(removed).toEqual(['    allow: []', '    allow: []']);
    expect(added).toEqual([
      // Too long for one flow line: a block entry, one hash a line.
      '      - name: numpy',
      '        versions: "==2.0.0"',
      '        sha256:',
      `          - ${h('a')}`,
      `          - ${h('b')}`,
      // Fits: written like its neighbours.
      `      - { name: tqdm, versions: "==4.66.4", sha256: [${h('c')}] }`,
      '    allow:',
      '      - repository: docker.io/library/python',
      '        tags:',
      `          "3.12-slim": "${d('d')}"`,
      '    allow:',
      '      - repo: openai-community/gpt2',
      '        refs:',
      `          main: "${commit('1')}"`,
    ]);
    const p = policyOf(out, ['policy']);
    expect(p.pypi.decideFile('numpy', '2.0.0', h('b')).allow).toBe(true);
    expect(p.pypi.decideFile('numpy', '2.0.0', h('c')).allow).toBe(false);
    expect(p.pypi.decideFile('requests', '2.31.0', undefined).allow).toBe(true);
    expect(p.oci.resolveTag('docker.io/library/python', '3.12-slim').digest).toBe(d('d'));
    expect(p.hf.resolveRevision('model', 'openai-community/gpt2', 'main').commit).toBe(commit('1'));
    // Idempotent: the same pins again change nothing.
    const again = new PolicyEditor(out, ['policy']);
    expect(applyPypiPin(again, { name: 'numpy', version: '2.0.0', sha256: [h('a'), h('b')] })).toBe('unchanged');
    expect(applyOciPin(again, { repository: 'docker.io/library/python', tag: '3.12-slim', digest: d('d') })).toBe('unchanged');
    expect(applyHfPin(again, { type: 'model', repo: 'openai-community/gpt2', ref: 'main', commit: commit('1') })).toBe('unchanged');
    expect(again.changed).toBe(false);
  });

  it('a hand-written policy file: comments between entries, flow and block mixed, single quotes, no final newline', () => {
    const text = [
      '# reviewed by the platform team',
      'pypi:',
      '  allow:',
      "    - { name: requests, versions: '>=2.31,<3' }   # HTTP",
      '',
      '    # numerics, hashed',
      '    - name: numpy',
      "      versions: '==1.26.4'",
      '      sha256: [' + h('1') + ']',
      '    - {name: six}',
      '  deny: [{ name: evil }]',
      'oci:',
      '  allow:',
      '    - repository: docker.io/library/python',
      '      tags: { "3.12": "' + d('0') + '" }  # base image',
      '      digests: []',
      'hf: { allow: [] }',
    ].join('\n');
    const ed = new PolicyEditor(text, []);
    expect(applyPypiPin(ed, { name: 'numpy', version: '1.26.4', sha256: [h('1'), h('2')] })).toBe('updated');
    expect(applyPypiPin(ed, { name: 'six', version: '1.16.0', sha256: [h('3')] })).toBe('added');
    expect(applyOciPin(ed, { repository: 'docker.io/library/python', tag: '3.12', digest: d('4') })).toBe('updated');
    expect(applyOciPin(ed, { repository: 'docker.io/library/python', digest: d('5') })).toBe('updated');
    expect(applyHfPin(ed, { type: 'dataset', repo: 'org/corpus', commit: commit('6') })).toBe('added');
    const out = ed.result();
    const { removed, added } = diff(text, out);
    expect(removed).toEqual([
      '      sha256: [' + h('1') + ']',
      '      tags: { "3.12": "' + d('0') + '" }  # base image',
      '      digests: []',
      'hf: { allow: [] }',
    ]);
    expect(added).toEqual([
      '      sha256: [' + h('1') + ', ' + h('2') + ']',
      // Most entries are flow, so is the new one; quoting follows the neighbours ('…').
      `    - { name: six, versions: '==1.16.0', sha256: [${h('3')}] }`,
      '      tags: { "3.12": "' + d('4') + '" }  # base image',
      `      digests: ["${d('5')}"]`,
      `hf: { allow: [{ repo: org/corpus, type: dataset, commits: ["${commit('6')}"] }] }`,
    ]);
    // The missing final newline stays missing: nothing was added after the last line.
    expect(out.endsWith('\n')).toBe(false);
    const p = policyOf(out, []);
    expect(p.pypi.decideFile('numpy', '1.26.4', h('2')).allow).toBe(true);
    expect(p.pypi.decideFile('six', '1.16.0', h('3')).allow).toBe(true);
    expect(p.oci.resolveTag('docker.io/library/python', '3.12').digest).toBe(d('4'));
    expect(p.hf.resolveRevision('dataset', 'org/corpus', commit('6')).commit).toBe(commit('6'));
  });

  it('adds a missing ecosystem, an `allow:` with nothing under it, a block hash list, CRLF lines', () => {
    const text =
      'listen: 127.0.0.1:0\r\npolicy:\r\n  pypi:\r\n    allow:\r\n      - name: torch\r\n        versions: "==2.3.0"\r\n        sha256:\r\n          - ' +
      h('7') +
      '\r\n  hf:\r\n    allow:\r\n    # none yet\r\n';
    const ed = new PolicyEditor(text, ['policy']);
    applyPypiPin(ed, { name: 'torch', version: '2.3.0', sha256: [h('f')] });
    applyHfPin(ed, { type: 'model', repo: 'org/m', ref: 'v1', commit: commit('9') });
    applyOciPin(ed, { repository: 'ghcr.io/org/img', digest: d('a') });
    const out = ed.result();
    expect(
      out
        .split('\r\n')
        .slice(0, -1)
        .every((l) => !l.includes('\n')),
    ).toBe(true);
    const { removed, added } = diff(text.replace(/\r/g, ''), out.replace(/\r/g, ''));
    expect(removed).toEqual([]);
    expect(added).toEqual([
      '          - ' + h('f'),
      '      - repo: org/m',
      '        refs:',
      `          v1: "${commit('9')}"`,
      '  oci:',
      '    allow:',
      '      - repository: ghcr.io/org/img',
      '        digests:',
      `          - "${d('a')}"`,
    ]);
    expect(policyOf(out, ['policy']).oci.decideDigest('ghcr.io/org/img', d('a')).allow).toBe(true);
  });

  it('anchors: an anchored entry is not edited in place (its aliases would change too); an aliased list is refused', () => {
    const text = [
      'pypi:',
      '  allow:',
      `    - &pinned { name: numpy, versions: "==1.26.4", sha256: [${h('1')}] }`,
      '    - { name: scipy }',
      '  deny:',
      '    - *pinned',
      'oci:',
      '  allow: &images',
      '    - { repository: docker.io/library/alpine, digests: ["' + d('b') + '"] }',
      '  deny: *images',
      '',
    ].join('\n');
    const ed = new PolicyEditor(text, []);
    expect(applyPypiPin(ed, { name: 'numpy', version: '1.26.4', sha256: [h('2')] })).toBe('added');
    const { removed, added } = diff(text, ed.result());
    expect(removed).toEqual([]);
    expect(added).toEqual([`    - { name: numpy, versions: "==1.26.4", sha256: [${h('2')}] }`]);
    // A hash of digits only would read as a number unquoted: it is quoted.
    const digits = new PolicyEditor('pypi:\n  allow: []\n', []);
    applyPypiPin(digits, { name: 'x', version: '1', sha256: ['1'.repeat(64)] });
    expect(digits.result()).toContain(`- "${'1'.repeat(64)}"`);
    const aliased = new PolicyEditor('x-models: &models []\nhf:\n  allow: *models\n', []);
    applyHfPin(aliased, { type: 'model', repo: 'org/m', commit: commit('1') });
    expect(() => aliased.result()).toThrow(/hf\.allow is an alias \(\*models\); edit it by hand/);
  });

  it('a flow list over several lines, a flow policy, a policy with no allow list at all', () => {
    const text = `pypi:\n  allow: [\n    { name: a },\n    { name: b },\n  ]\n`;
    const ed = new PolicyEditor(text, []);
    applyPypiPin(ed, { name: 'c', version: '1.0', sha256: [h('c')] });
    expect(diff(text, ed.result())).toEqual({ removed: [], added: [`    { name: c, versions: "==1.0", sha256: [${h('c')}] },`] });
    const flowPolicy = 'policy: { pypi: { internal: ["acme-*"] } }\n';
    const ed2 = new PolicyEditor(flowPolicy, ['policy']);
    applyPypiPin(ed2, { name: 'c', version: '1.0', sha256: [h('c')] });
    expect(ed2.result()).toBe(`policy: { pypi: { internal: ["acme-*"], allow: [{ name: c, versions: "==1.0", sha256: [${h('c')}] }] } }\n`);
    const none = 'listen: 127.0.0.1:8080 # where\n';
    const ed3 = new PolicyEditor(none, ['policy']);
    applyOciPin(ed3, { repository: 'docker.io/library/python', tag: '3.12', digest: d('e') });
    expect(ed3.result()).toBe(
      `${none}policy:\n  oci:\n    allow:\n      - repository: docker.io/library/python\n        tags:\n          "3.12": "${d('e')}"\n`,
    );
  });

  it('comments under the last entry stay with it; comments after the list stay after the new entries', () => {
    const text = `pypi:\n  allow:\n    - name: x\n      sha256:\n        - ${h('1')}\n      # pinned for the CUDA build\n  # refusals\n  deny: []\n`;
    const ed = new PolicyEditor(text, []);
    applyPypiPin(ed, { name: 'y', version: '1', sha256: [h('2')] });
    expect(ed.result()).toBe(text.replace('  # refusals', `    - name: y\n      versions: "==1"\n      sha256:\n        - ${h('2')}\n  # refusals`));
    const empty = new PolicyEditor('', []);
    applyPypiPin(empty, { name: 'y', version: '1', sha256: [h('2')] });
    expect(empty.result()).toBe(`pypi:\n  allow:\n    - name: y\n      versions: "==1"\n      sha256:\n        - ${h('2')}\n`);
  });

  it('a new entry may carry a comment line above it (a block list), no part of the value', () => {
    const text = 'pypi:\n  allow:\n    - { name: requests }\n';
    const ed = new PolicyEditor(text, []);
    applyPypiPin(ed, { name: 'reqeusts', version: '1.0', sha256: [h('1')] }, 'look-alike of requests, accepted by J. Doe (--accept-lookalike)');
    expect(ed.result()).toBe(
      `${text}    # look-alike of requests, accepted by J. Doe (--accept-lookalike)\n    - { name: reqeusts, versions: "==1.0", sha256: [${h('1')}] }\n`,
    );
  });

  it('refuses what it cannot edit in place, writing nothing', () => {
    expect(() => new PolicyEditor('pypi: [\n', [])).toThrow(PolicyEditError);
    const ed = new PolicyEditor('pypi:\n  allow: "everything"\n', []);
    applyPypiPin(ed, { name: 'c', version: '1.0', sha256: [h('c')] });
    expect(() => ed.result()).toThrow(/pypi\.allow is not a list/);
  });
});
