import { z } from 'zod';
import { publisher, signerRefs, signingSchema } from './signing-schema.js';

/** YAML reads an unquoted 2026-01-31T00:00:00Z as a date: accept it as the time it names. */
const instant = z.union([z.string(), z.date().transform((d) => d.toISOString())]);
/** Minimum age (issue 27): a duration ("7d", "36h") or 0; checked in policy/age.ts. */
const minAge = z.union([z.string(), z.literal(0)]);

/** The policy's schema (what config/schema.ts embeds under `policy:` or reads from `policy_file`): each rule's fields, checked with their paths. */

const pypiAllow = z
  .object({
    name: z.string(),
    versions: z.string().optional(),
    sha256: z.array(z.string()).optional(),
    prereleases: z.boolean().optional(),
    require: z.enum(['none', 'attested']).optional(),
    publisher: publisher.optional(),
    min_age: minAge.optional(),
    exclude_newer: instant.optional(),
    on_change: z.enum(['refuse', 'warn']).optional(),
  })
  .strict();

const pypiDeny = z
  .object({
    name: z.string(),
    versions: z.string().optional(),
    reason: z.string().optional(),
  })
  .strict();

const ociAllow = z
  .object({
    repository: z.string(),
    digests: z.array(z.string()).optional(),
    tags: z.record(z.string(), z.string()).optional(),
    require: z.enum(['none', 'signed', 'attested']).optional(),
    signers: signerRefs,
    on_change: z.enum(['refuse', 'warn']).optional(),
    min_age: minAge.optional(),
    exclude_newer: instant.optional(),
  })
  .strict();

const ociDeny = z
  .object({
    repository: z.string(),
    digests: z.array(z.string()).optional(),
    reason: z.string().optional(),
  })
  .strict();

const hfType = z.enum(['model', 'dataset']);

const hfScan = z
  .object({
    pickle: z.enum(['allow-profile', 'deny']).optional(),
    profile: z.enum(['torch-weights', 'torch-numpy']).optional(),
    remote_code: z.enum(['deny', 'allow']).optional(),
    opaque: z.enum(['allow', 'deny']).optional(),
    formats: z.array(z.string()).optional(),
    sha256: z.array(z.string()).optional(),
  })
  .strict();

const hfAllow = z
  .object({
    repo: z.string(),
    type: hfType.optional(),
    commits: z.array(z.string()).optional(),
    refs: z.record(z.string(), z.string()).optional(),
    files: z.array(z.string()).optional(),
    scan: hfScan.optional(),
    require: z.enum(['none', 'signed']).optional(),
    signers: signerRefs,
    signature: z.string().optional(),
    on_change: z.enum(['refuse', 'warn']).optional(),
  })
  .strict();

const hfDeny = z
  .object({
    repo: z.string(),
    type: hfType.optional(),
    files: z.array(z.string()).optional(),
    reason: z.string().optional(),
  })
  .strict();

const refuseLevel = z.enum(['none', 'all', 'low', 'medium', 'high', 'critical']);
const imageSettings = z.object({
  refuse: refuseLevel.optional(),
  fixable_only: z.boolean().optional(),
  unjudged: z.enum(['refuse', 'allow']).optional(),
});

export const policySchema = z
  .object({
    signing: signingSchema.optional(),
    pypi: z
      .object({
        internal: z.array(z.string()).optional(),
        allow: z.array(pypiAllow).optional(),
        deny: z.array(pypiDeny).optional(),
        min_age: minAge.optional(),
        exclude_newer: instant.optional(),
        on_missing_time: z.enum(['refuse', 'allow']).optional(),
      })
      .strict()
      .optional(),
    oci: z
      .object({
        allow: z.array(ociAllow).optional(),
        deny: z.array(ociDeny).optional(),
        min_age: minAge.optional(),
        exclude_newer: instant.optional(),
      })
      .strict()
      .optional(),
    advisories: z
      .object({
        refuse: refuseLevel.optional(),
        images: imageSettings
          .extend({ repositories: z.array(imageSettings.extend({ repository: z.string() }).strict()).optional() })
          .strict()
          .optional(),
        exceptions: z
          .array(
            z
              .object({
                id: z.string().min(1),
                repository: z.string().optional(),
                digest: z.string().optional(),
                reason: z.string().min(1),
                // YAML reads an unquoted 2027-01-31 as a date: accept it as the day it names.
                expires: z.union([z.string(), z.date().transform((d) => d.toISOString().slice(0, 10))]),
              })
              .strict(),
          )
          .optional(),
      })
      .strict()
      .optional(),
    hf: z
      .object({
        min_age: minAge.optional(),
        exclude_newer: instant.optional(),
        on_missing_time: z.enum(['refuse', 'allow']).optional(),
        scan: hfScan.optional(),
        allow: z.array(hfAllow).optional(),
        deny: z.array(hfDeny).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
