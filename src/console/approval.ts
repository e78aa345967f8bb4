import type { StoredPullRecord } from '../storage/meta-store.js';

/** What would approve a refused pull: the command that writes it into the policy, and the YAML it writes, or why nothing should. */
export interface Approval {
  command?: string;
  yaml?: string;
  /** When the answer is not a pin (an advisory exception, a scan override) or nothing at all. */
  note: string;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Pure: from a refusal row to the reviewed change that would approve it (nothing is written here). */
export function approvalFor(r: StoredPullRecord): Approval {
  const code = r.code ?? '';
  if (code === 'digest_mismatch' || code === 'file_host' || code === 'internal_name' || code === 'internal_missing') {
    return {
      note: 'Nothing to approve: the upstream served something other than what the index or manifest names, or the name belongs to the internal index. Investigate the upstream.',
    };
  }
  if (code === 'bad_token' || code === 'upstream_failed' || code === 'too_many_downloads' || code === 'client_gone') {
    return { note: 'Not a policy refusal: nothing to approve.' };
  }
  if ((code === 'advisory' || code === 'unjudged') && r.ecosystem === 'oci') {
    return {
      note: 'Refused by an advisory. Rebuild on a fixed base image, or add a reviewed exception with a reason and an expiry:',
      yaml: `policy:\n  advisories:\n    exceptions:\n      - id: ADVISORY-ID   # from the reason\n        repository: ${r.name}\n        reason: "why this is acceptable"\n        expires: YYYY-MM-DD`,
    };
  }
  if (code === 'advisory') {
    return { note: 'Refused by an advisory: use a fixed version (the reason names it). The level that refuses is policy.advisories.refuse.' };
  }
  if (code === 'content_refused' || code === 'format_mismatch') {
    return {
      note: 'Refused by model-file inspection. Approving it means trusting this exact file after review:',
      yaml: r.sha256 ? `policy:\n  hf:\n    allow:\n      - repo: ${r.name}\n        scan:\n          sha256: ["${r.sha256}"]` : undefined,
    };
  }
  if (r.ecosystem === 'pypi' && r.version) {
    return {
      command: `airlock pin pypi ${q(`${r.name}==${r.version}`)}`,
      yaml: `policy:\n  pypi:\n    allow:\n      - name: ${r.name}\n        versions: "==${r.version}"\n        sha256: [...]   # the release's file hashes, written by the command`,
      note: 'Pins this release with its file hashes (the command checks them upstream).',
    };
  }
  if (r.ecosystem === 'oci' && r.version) {
    const ref = r.version.startsWith('sha256:') ? `${r.name}@${r.version}` : `${r.name}:${r.version}`;
    return {
      command: `airlock pin oci ${ref}`,
      yaml: r.version.startsWith('sha256:')
        ? `policy:\n  oci:\n    allow:\n      - repository: ${r.name}\n        digests: ["${r.version}"]`
        : `policy:\n  oci:\n    allow:\n      - repository: ${r.name}\n        tags: { ${JSON.stringify(r.version)}: "sha256:..." }   # the digest the tag names today, written by the command`,
      note: 'Pins this image by digest (a tag is pinned to the digest it names today).',
    };
  }
  if (r.ecosystem === 'hf' && r.version) {
    return {
      command: `airlock pin hf ${r.name}@${r.version}`,
      yaml: `policy:\n  hf:\n    allow:\n      - repo: ${r.name.replace(/^datasets\//, '')}${r.name.startsWith('datasets/') ? '\n        type: dataset' : ''}\n        commits: ["${r.version}"]   # a branch is pinned to its commit by the command`,
      note: 'Pins this repository at one commit.',
    };
  }
  return { note: 'No approval can be derived from this record (no version was asked for).' };
}
