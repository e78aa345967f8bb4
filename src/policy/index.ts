import { OciPolicy, type OciPolicyInput } from './oci.js';
import { PypiPolicy, type PypiPolicyInput } from './pypi.js';

export interface PolicyInput {
  pypi?: PypiPolicyInput;
  oci?: OciPolicyInput;
}

/** The whole compiled policy. Pure data and decisions: no I/O, no clock, no environment. */
export class Policy {
  readonly pypi: PypiPolicy;
  readonly oci: OciPolicy;

  constructor(input: PolicyInput) {
    this.pypi = new PypiPolicy(input.pypi ?? {}, ['pypi']);
    this.oci = new OciPolicy(input.oci ?? {}, ['oci']);
  }
}

export { PypiPolicy } from './pypi.js';
export { OciPolicy, canonicalRepository } from './oci.js';
export type { Decision, RefusalCode } from './types.js';
export { PolicyError } from './types.js';
