import { PypiPolicy, type PypiPolicyInput } from './pypi.js';

export interface PolicyInput {
  pypi?: PypiPolicyInput;
}

/** The whole compiled policy. Pure data and decisions: no I/O, no clock, no environment. */
export class Policy {
  readonly pypi: PypiPolicy;

  constructor(input: PolicyInput) {
    this.pypi = new PypiPolicy(input.pypi ?? {}, ['pypi']);
  }
}

export { PypiPolicy } from './pypi.js';
export type { Decision, RefusalCode } from './types.js';
export { PolicyError } from './types.js';
