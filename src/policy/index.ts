import { HfPolicy, type HfPolicyInput } from './hf.js';
import { OciPolicy, type OciPolicyInput } from './oci.js';
import { PypiPolicy, type PypiPolicyInput } from './pypi.js';

export interface PolicyInput {
  pypi?: PypiPolicyInput;
  oci?: OciPolicyInput;
  hf?: HfPolicyInput;
}

/** The whole compiled policy. Pure data and decisions: no I/O, no clock, no environment. */
export class Policy {
  readonly pypi: PypiPolicy;
  readonly oci: OciPolicy;
  readonly hf: HfPolicy;

  constructor(input: PolicyInput) {
    this.pypi = new PypiPolicy(input.pypi ?? {}, ['pypi']);
    this.oci = new OciPolicy(input.oci ?? {}, ['oci']);
    this.hf = new HfPolicy(input.hf ?? {}, ['hf']);
  }
}

export { PypiPolicy } from './pypi.js';
export { OciPolicy, canonicalRepository } from './oci.js';
export { HfPolicy } from './hf.js';
export type { Decision, RefusalCode } from './types.js';
export { PolicyError } from './types.js';
