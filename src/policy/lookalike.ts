import { LookalikeIndex, type KnownName, type LookalikeEcosystem } from '../names/lookalike.js';
import type { Policy } from './index.js';

/**
 * The look-alike index of one ecosystem for a policy (names/lookalike.ts): the policy's own names
 * and, for PyPI, its internal names (globs, and the matcher that says a name is internal), then
 * whatever else the caller knows (the record's names by pulls, the shipped popular lists), in
 * that order of seriousness. Pure: the caller reads the lists.
 */
export function lookalikeIndex(policy: Policy, eco: LookalikeEcosystem, others: KnownName[]): LookalikeIndex {
  const own = eco === 'pypi' ? policy.pypi.names().allowed : eco === 'hf' ? policy.hf.repos() : policy.oci.repositories();
  const known: KnownName[] = [...own.map((name) => ({ name, source: 'policy' as const })), ...others];
  if (eco !== 'pypi') return new LookalikeIndex(eco, known);
  return new LookalikeIndex(eco, known, { globs: policy.pypi.names().internal, isInternal: (n) => policy.pypi.internalRule(n) !== null });
}
