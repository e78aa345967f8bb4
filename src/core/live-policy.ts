import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Advisories } from '../policy/advisories.js';
import type { Policy } from '../policy/index.js';

/** The policy's version as a reviewed change names it: its file and the SHA-256 of the bytes it came from. */
export interface PolicyVersion {
  file: string;
  sha256: string;
}

/** The last policy reload: when, and its error if it failed. */
export interface PolicyReload {
  at: number;
  error?: string;
}

/** One consistent view: the policy in force (advisories applied), those advisories, and the version of its file. */
export interface PolicySnapshot {
  readonly policy: Policy;
  readonly advisories: Advisories;
  readonly version: PolicyVersion;
}

/** Reads a policy file's version (its SHA-256) from disk. */
export function policyVersion(file: string): PolicyVersion {
  return { file, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') };
}

/**
 * The policy in force, shared by the front-ends, the image gate and the console. Its state is one
 * immutable snapshot swapped whole: a reader sees the policy, its advisories and its version of
 * the same moment. Every swap builds a new Policy object (withAdvisories), so caches keyed on the
 * policy object (the PyPI page cache, the image gate's memo) never serve across a reload.
 */
export class LivePolicy {
  private state: PolicySnapshot;
  private reload: PolicyReload | null = null;
  private readonly listeners: ((policy: Policy) => void)[] = [];

  /** `policy` as loaded from its file; the advisories are applied here. */
  constructor(policy: Policy, advisories: Advisories, version: PolicyVersion) {
    this.state = { policy: policy.withAdvisories(advisories.seal()), advisories, version };
  }

  /** The policy, advisories and version of one moment (read once per decision that needs more than one of them). */
  current(): PolicySnapshot {
    return this.state;
  }

  get policy(): Policy {
    return this.state.policy;
  }

  get advisories(): Advisories {
    return this.state.advisories;
  }

  get version(): PolicyVersion {
    return this.state.version;
  }

  /** The last reload since start (null: none). */
  get lastReload(): PolicyReload | null {
    return this.reload;
  }

  /** Swap in a reloaded policy (the advisories in force applied to it) and its version, and note the reload. */
  replacePolicy(next: Policy, version: PolicyVersion, at = Date.now()): Policy {
    const { advisories } = this.state;
    this.state = { policy: next.withAdvisories(advisories), advisories, version };
    this.reload = { at };
    for (const fn of this.listeners) fn(this.state.policy);
    return this.state.policy;
  }

  /** Be told of each reloaded policy once it is in force (the background image judge); `fn` must not throw or block. */
  onPolicy(fn: (policy: Policy) => void): void {
    this.listeners.push(fn);
  }

  /** Note a reload that failed: the policy in force stays. */
  reloadFailed(error: string, at = Date.now()): void {
    this.reload = { at, error };
  }

  /** Swap in re-read advisories, applied to the policy in force. */
  replaceAdvisories(advisories: Advisories): void {
    // Its maps built here, once, not by the first pull to read them (advisories.ts).
    advisories.seal();
    const { policy, version } = this.state;
    this.state = { policy: policy.withAdvisories(advisories), advisories, version };
  }
}
