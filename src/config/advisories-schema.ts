import { z } from 'zod';

/** An OSV ecosystem directory name as osv.dev exports it (PyPI, Debian, crates.io, Alpine, "Rocky Linux"...). */
const ecosystem = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9 .:_-]{0,63}$/, 'expected an OSV ecosystem name as the export names its directory, e.g. PyPI or Debian');

/**
 * One advisory feed: an OSV export in osv.dev's layout, `<url>/<ecosystem>/all.zip` (every record),
 * `<url>/<ecosystem>/modified_id.csv` (`<modified>,<id>` per record, newest first) and
 * `<url>/<ecosystem>/<id>.json` (one record): osv.dev's own bucket or any mirror of it.
 */
const source = z
  .object({
    /** The name its syncs are recorded, measured and shown under; default osv-<ecosystem> (lower case, spaces as dashes). */
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected a short lower-case name: letters, digits, . _ -')
      .optional(),
    url: z
      .string()
      .refine((s) => {
        try {
          const u = new URL(s);
          return (u.protocol === 'http:' || u.protocol === 'https:') && !u.search && !u.hash;
        } catch {
          return false;
        }
      }, "expected the export's base http(s) URL, e.g. https://osv-vulnerabilities.storage.googleapis.com/")
      .default('https://osv-vulnerabilities.storage.googleapis.com/'),
    ecosystem,
    /** After the first (full) sync, fetch modified_id.csv and only the records changed since; false: all.zip every time. */
    incremental: z.boolean().default(true),
  })
  .strict();

export const advisoriesSchema = z
  .object({
    sources: z.array(source).default([]),
    /** Seconds between syncs of each source (a failed sync is retried after at most 5 minutes). */
    interval: z.number().int().min(5).default(3600),
    /** Seconds after which a source's data is stale: a warning on /-/readyz (0: never). */
    max_age: z.number().int().min(0).default(86_400),
    /** Largest all.zip (and modified_id.csv) accepted, in bytes; the archive is held in memory while it is verified. */
    max_bytes: z
      .number()
      .int()
      .min(1024)
      .default(512 * 1024 * 1024),
    /** Seconds allowed for one download (all.zip whole, or one record). */
    timeout: z.number().positive().default(600),
    /** An incremental sync that would fetch more records than this fetches all.zip instead. */
    max_incremental: z.number().int().min(1).default(1000),
    /** Seconds between checks of the metadata store for advisories imported elsewhere (another replica, or by hand); 0: never. */
    poll: z.number().min(0).default(10),
  })
  .strict()
  .superRefine((a, ctx) => {
    const seen = new Set<string>();
    a.sources.forEach((s, i) => {
      const n = sourceName(s);
      if (seen.has(n))
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['sources', i, 'name'], message: `two sources are named ${n}: give each its own name` });
      seen.add(n);
    });
  })
  .prefault({});

export type AdvisorySourceConfig = z.infer<typeof source>;
export type AdvisoriesConfig = z.infer<typeof advisoriesSchema>;

/** A source's name: its own, else osv-<ecosystem> in lower case with spaces and colons as dashes. */
export function sourceName(s: { name?: string; ecosystem: string }): string {
  return s.name ?? `osv-${s.ecosystem.toLowerCase().replace(/[ :]+/g, '-')}`;
}
