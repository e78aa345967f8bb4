import { describe, expect, it } from 'vitest';
import { PolicyEditor } from '../../src/cli/policy-edit.js';
import { diff } from '../helpers/line-diff.js';

/** PolicyEditor.commentAbove (used by airlock pin to name a pin's verified signer): one new line above the entry, or nothing. */
describe('a comment line above an allow entry', () => {
  it('block entries, flow-style entries in a block list, and under a base path: one line at the dash column', () => {
    const text = `# top
policy:
  oci:
    allow:
      - repository: a/b   # kept
        digests: ["sha256:${'a'.repeat(64)}"]
      - { repository: c/d, digests: ["sha256:${'b'.repeat(64)}"] }
`;
    const ed = new PolicyEditor(text, ['policy'], 'p.yaml');
    expect(ed.commentAbove('oci', 1, 'second')).toBe(true);
    expect(ed.commentAbove('oci', 0, 'first,\n  one line')).toBe(true);
    const out = ed.result();
    expect(diff(text, out)).toEqual({ removed: [], added: ['      # first, one line', '      # second'] });
    expect(out.split('\n')[4]).toBe('      # first, one line');
  });

  it('a flow allow list or a missing entry: false, and nothing is written', () => {
    const flow = `oci:\n  allow: [{ repository: a/b, digests: ["sha256:${'a'.repeat(64)}"] }]\n`;
    const ed = new PolicyEditor(flow, [], 'p.yaml');
    expect(ed.commentAbove('oci', 0, 'x')).toBe(false);
    expect(ed.commentAbove('oci', 3, 'x')).toBe(false);
    expect(ed.changed).toBe(false);
    expect(ed.result()).toBe(flow);
  });
});
