import { isRecordCode, type RecordCode } from '../core/record-codes.js';
import type { LookalikeWarning } from '../names/lookalike.js';
import { parseSignature } from '../signing/record.js';
import type { StoredPullRecord } from '../storage/meta-store.js';

/** What would approve a refused pull: the command that writes it into the policy, and the YAML it writes, or why nothing should. */
export interface Approval {
  command?: string;
  yaml?: string;
  /** When the answer is not a pin (an advisory exception, a scan override) or nothing at all. */
  note: string;
  /** The name looks like a known one (names/lookalike.ts): what it imitates and why, shown beside the approval. */
  lookalike?: string;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

type Answer = (r: StoredPullRecord) => Approval;

const INVESTIGATE: Answer = () => ({
  note: 'Nothing to approve: the upstream served something other than what the index or manifest names, or points outside the allowed hosts. Investigate the upstream.',
});
const NOT_POLICY: Answer = () => ({ note: 'Not a policy refusal: nothing to approve.' });
const CONFUSION: Answer = (r) => ({
  note: `Nothing to approve: ${r.name} is an internal name and the internal index lacks it; the public project of that name is never served (dependency confusion). Publish it to the internal index, or take the name out of policy.pypi.internal if it is not yours.`,
});
const NO_SHA: Answer = () => ({
  note: 'Nothing to approve: the index gives no sha256 for this file, so it cannot be verified. Ask the index to publish hashes.',
});
const TOO_LARGE: Answer = (r) => ({
  note: `Over this mirror's size limit, not refused by the policy: no pin approves it. To serve it, raise hf.max_file_bytes above ${r.size ?? 'its size'} bytes in the config and restart Airlock (files over 50 GB need Xet, which Airlock does not mirror).`,
  yaml: r.size ? `hf:\n  max_file_bytes: ${r.size}` : undefined,
});
const MALFORMED: Answer = () => ({ note: 'A malformed request (no client sends it): nothing to approve. Look at the client that sent it.' });

const ADVISORY: Answer = (r) =>
  r.ecosystem === 'oci'
    ? {
        note: 'Refused by an advisory. Rebuild on a fixed base image, or add a reviewed exception with a reason and an expiry:',
        yaml: `policy:\n  advisories:\n    exceptions:\n      - id: ADVISORY-ID   # from the reason\n        repository: ${r.name}\n        reason: "why this is acceptable"\n        expires: YYYY-MM-DD`,
      }
    : { note: 'Refused by an advisory: use a fixed version (the reason names it). The level that refuses is policy.advisories.refuse.' };

const CONTENT: Answer = (r) => ({
  note: 'Refused by model-file inspection. Approving it means trusting this exact file after review:',
  yaml: r.sha256 ? `policy:\n  hf:\n    allow:\n      - repo: ${r.name}\n        scan:\n          sha256: ["${r.sha256}"]` : undefined,
});

/**
 * A signature refusal (issue 26): what to do depends on what was found. A changed signer
 * (continuity) is accepted with `airlock trust accept`; a missing or broken trusted root is
 * imported; a signer the rule does not name is added to the rule's signers (or publisher) after
 * review; nothing signed is the publisher's to fix.
 */
const SIGNATURE: Answer = (r) => {
  const reason = r.reason ?? '';
  const sig = parseSignature(r.signature);
  if (reason.startsWith('signer changed:')) {
    const accept = /airlock trust accept \S+ \S+(?: --identity '[^']*')?/.exec(reason)?.[0];
    return {
      ...(accept ? { command: accept } : {}),
      note: "The signer changed from the one earlier versions were verified under: the signal of a hijacked account. Review who published this version; if the change is legitimate, accept the new signer (the command records it for this project), and narrow the rule's signers to it.",
    };
  }
  if (/trusted root/i.test(reason))
    return {
      command: 'airlock trust import FILE',
      note: "No usable Sigstore trusted root verified it (missing, broken or expired). Import the current trusted_root.json (a rotation of the public-good root, or your private Sigstore's), then reload (SIGHUP).",
    };
  if (r.code === 'unsigned')
    return {
      note: "No signature was found where the rule requires one. Ask the publisher to sign (PyPI: publish with a trusted publisher, which attests; images: cosign; models: model.sig). Nothing is pinned for it: only after review, set the rule's require: none.",
    };
  const who = sig?.publisher
    ? `        publisher: { ${sig.publisher.kind}: ${sig.publisher.repository}, workflow: ${sig.publisher.workflow} }`
    : sig?.identity && / /.test(sig.identity) && !/^(key|ca):/.test(sig.identity)
      ? `        signers:\n          - issuer: ${sig.identity.slice(0, sig.identity.indexOf(' '))}\n            subject: ${sig.identity.slice(sig.identity.indexOf(' ') + 1)}`
      : null;
  return {
    note: `Refused by a signing rule${sig?.identity ? `: signed by ${sig.identity}, which the rule does not accept` : ' (the reason names the rule and what was found)'}. Nothing is pinned for it. If, after review, this signer is legitimate, add it to the rule${who ? ' (beside what it names now):' : "'s signers or publisher (docs/signing.md)."}`,
    ...(who
      ? {
          yaml: `policy:\n  ${r.ecosystem}:\n    allow:\n      - ${r.ecosystem === 'pypi' ? 'name' : r.ecosystem === 'oci' ? 'repository' : 'repo'}: ${r.name}\n${who}`,
        }
      : {}),
  };
};

/** A policy refusal the policy can lift: the pin that approves what was asked for. */
const PIN: Answer = (r) => {
  if (r.ecosystem === 'pypi' && r.version) {
    return {
      command: `airlock pin pypi ${q(`${r.name}==${r.version}`)}`,
      yaml: `policy:\n  pypi:\n    allow:\n      - name: ${r.name}\n        versions: "==${r.version}"\n        sha256: [...]   # the release's file hashes, written by the command`,
      note: 'Pins this release with its file hashes (the command checks them upstream).',
    };
  }
  // A refused project page: pip names no version, so the pin takes the release pip would (the
  // newest final one) and prints which, with its hashes, before the reviewed policy is written.
  if (r.ecosystem === 'pypi' && r.code === 'not_allowlisted') {
    return {
      command: `airlock pin pypi ${q(r.name)}`,
      yaml: `policy:\n  pypi:\n    allow:\n      - name: ${r.name}\n        versions: "==VERSION"   # the newest final release today, chosen and printed by the command\n        sha256: [...]       # its file hashes, written by the command`,
      note: 'No version was asked for (a project page): pins the newest final release with its file hashes (the command names the version).',
    };
  }
  // A registry Airlock has no upstream for (oci/upstream.ts): no pin can name it until it is configured.
  if (r.ecosystem === 'oci' && r.rule === 'oci.registries') {
    const registry = r.name.split('/', 1)[0];
    return {
      yaml: `oci:\n  registries:\n    ${registry}:\n      url: https://${registry}\n      blob_hosts: [...]   # the hosts it redirects blob downloads to`,
      note: `The registry ${registry} is not configured: add it to oci.registries (and restart Airlock), then pin the image (airlock pin oci ${r.name}:TAG).`,
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
    // "HEAD" is what a request that names no revision asks for: the repository's default branch.
    const rev = r.version === 'HEAD' ? 'main' : r.version;
    return {
      command: `airlock pin hf ${r.name}@${rev}`,
      yaml: `policy:\n  hf:\n    allow:\n      - repo: ${r.name.replace(/^datasets\//, '')}${r.name.startsWith('datasets/') ? '\n        type: dataset' : ''}\n        commits: ["${rev}"]   # a branch is pinned to its commit by the command`,
      note: 'Pins this repository at one commit.',
    };
  }
  return NONE(r);
};
/** Too new (issue 27): waiting approves it by itself; a reviewed exact pin with hashes approves it now. */
const TOO_NEW: Answer = (r) => {
  // An image's tag: the clock is Airlock's first sight of the digest; a pull by digest is the override.
  if (r.ecosystem === 'oci')
    return {
      note: `The digest this tag names is younger than its minimum age, counted from when Airlock first saw it (the reason says how old, which rule, and when the tag serves it without any change). To take it now, review the image, then pull it by digest${r.sha256 ? ` (${r.name}@sha256:${r.sha256})` : ''}: a pull by digest overrides min_age.`,
    };
  const pin = PIN(r);
  if (!pin.command)
    return {
      note: 'Younger than its minimum age (the reason says how old, which rule, and when it is served): wait, or pin it exactly with its hashes after review.',
    };
  return {
    ...pin,
    note: 'Younger than its minimum age, or without an upload time (the reason says how old, which rule, and when it is served without any change). To take it now, review this release, then pin it exactly with its hashes: an exact pin overrides min_age.',
  };
};
const NONE: Answer = () => ({ note: 'No approval can be derived from this record (no version was asked for).' });

/** Every code a row can carry, and what would approve it: a code without an entry does not compile. */
const ANSWERS: Record<RecordCode, Answer> = {
  not_allowlisted: PIN,
  version_not_allowed: PIN,
  hash_not_pinned: PIN,
  tag_not_pinned: PIN,
  digest_not_pinned: PIN,
  not_referenced: PIN,
  denied: PIN,
  advisory: ADVISORY,
  unjudged: ADVISORY,
  content_refused: CONTENT,
  unsigned: SIGNATURE,
  bad_signature: SIGNATURE,
  too_new: TOO_NEW,
  internal_missing: CONFUSION,
  no_sha256: NO_SHA,
  digest_mismatch: INVESTIGATE,
  file_host: INVESTIGATE,
  too_large: TOO_LARGE,
  bad_token: NOT_POLICY,
  bad_request: MALFORMED,
  upstream_failed: NOT_POLICY,
  too_many_downloads: NOT_POLICY,
  client_gone: NOT_POLICY,
  rate_limited: NOT_POLICY,
  disk_reserve: NOT_POLICY,
};

/**
 * Pure: from a refusal row to the reviewed change that would approve it (nothing is written here).
 * `lookalikes`: the warnings for its name; a pin of a look-alike is shown with the warning (the
 * command refuses it without --accept-lookalike), and a look-alike of an internal name has no approval.
 */
export function approvalFor(r: StoredPullRecord, lookalikes: LookalikeWarning[] = []): Approval {
  // Rows written before codes existed (or by another version) fall back to what their fields say.
  const a = (isRecordCode(r.code) ? ANSWERS[r.code] : PIN)(r);
  if (!a.command || lookalikes.length === 0) return a;
  const why = lookalikes.map((w) => w.reason).join('; ');
  const internal = lookalikes.find((w) => w.source === 'internal');
  if (internal)
    return {
      lookalike: `Look-alike of the internal name ${internal.like}: ${why}.`,
      note: `Nothing to approve: a near copy of an internal name is how dependency confusion starts, and airlock pin refuses it whatever the flag. If ${r.name} is yours, add it to policy.pypi.internal.`,
    };
  return {
    ...a,
    lookalike: `Look-alike: ${why}. airlock pin refuses it unless --accept-lookalike is given (a comment beside the entry then records it); check the name first.`,
  };
}
