import { afterEach, describe, expect, it } from 'vitest';
import { advisoriesApplied, clearAdvisoriesAppliedHooks, onAdvisoriesApplied, type AdvisoriesChange } from '../../src/advisories/applied.js';

describe('advisoriesApplied', () => {
  afterEach(() => clearAdvisoriesAppliedHooks());
  it('runs every hook in order with the change, and a failing hook neither stops the others nor throws', async () => {
    const seen: string[] = [];
    const errors: string[] = [];
    onAdvisoriesApplied(async (c) => void seen.push(`a:${c.source}:${c.changedIds.join('+')}`));
    onAdvisoriesApplied(async () => {
      throw new Error('receiver down');
    });
    onAdvisoriesApplied(async (c) => void seen.push(`c:${c.changedIds.length}`));
    const log = { error: (o: { err: string }) => errors.push(o.err) } as never;
    const change: AdvisoriesChange = { changedIds: ['PYSEC-1', 'GHSA-x'], source: 'osv-pypi' };
    await expect(advisoriesApplied(change, log)).resolves.toBeUndefined();
    expect(seen).toEqual(['a:osv-pypi:PYSEC-1+GHSA-x', 'c:2']);
    expect(errors).toEqual(['receiver down']);
  });
});
