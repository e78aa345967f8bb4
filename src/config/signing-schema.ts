import { z } from 'zod';

/** Signers (issue 26): the policy compiler (policy/signing.ts) checks their combinations. */
const signer = z
  .object({
    issuer: z.string().optional(),
    subject: z.string().optional(),
    subject_pattern: z.string().optional(),
    key: z.string().optional(),
    key_file: z.string().optional(),
    ca: z.string().optional(),
    ca_file: z.string().optional(),
  })
  .strict();
export const signerRefs = z.array(z.union([z.string(), signer])).optional();
export const publisher = z
  .object({ github: z.string().optional(), gitlab: z.string().optional(), workflow: z.string(), environment: z.string().optional() })
  .strict();

/** policy.signing: named signers, and what a change of signer does (continuity). */
export const signingSchema = z.object({ signers: z.record(z.string(), signer).optional(), on_change: z.enum(['refuse', 'warn']).optional() }).strict();
