import { z } from 'zod';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:8080');

const httpUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'expected an http(s) URL');

const indexUrl = httpUrl.refine((s) => s.endsWith('/'), 'expected the index URL to end with "/" (e.g. https://pypi.org/simple/)');

const pypiAllow = z
  .object({
    name: z.string(),
    versions: z.string().optional(),
    sha256: z.array(z.string()).optional(),
    prereleases: z.boolean().optional(),
  })
  .strict();

const pypiDeny = z
  .object({
    name: z.string(),
    versions: z.string().optional(),
    reason: z.string().optional(),
  })
  .strict();

export const policySchema = z
  .object({
    pypi: z
      .object({
        internal: z.array(z.string()).optional(),
        allow: z.array(pypiAllow).optional(),
        deny: z.array(pypiDeny).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const configSchema = z
  .object({
    listen: hostPort.default('127.0.0.1:8080'),
    data_dir: z.string().min(1).default('./data'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    pypi: z
      .object({
        upstream: indexUrl.default('https://pypi.org/simple/'),
        internal: indexUrl.optional(),
        file_hosts: z.array(z.string().regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'expected a host name, optionally with :port')).default(['files.pythonhosted.org']),
        index_ttl: z.number().int().min(0).default(600),
        max_page_bytes: z.number().int().min(1024).default(64 * 1024 * 1024),
        timeout: z.number().positive().default(30),
      })
      .strict()
      .prefault({}),
    policy: policySchema.optional(),
    policy_file: z.string().optional(),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type PolicyConfig = z.infer<typeof policySchema>;
