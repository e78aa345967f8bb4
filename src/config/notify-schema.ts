import { z } from 'zod';

const url = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'expected an http(s) URL')
  // Credentials in the URL would be echoed by fetch's errors into the log, the outbox and the console (and fetch refuses them).
  .refine((s) => !URL.canParse(s) || (!new URL(s).username && !new URL(s).password), 'a webhook URL may not carry credentials (user:password@)');

/** A notification channel (issue 28): a generic JSON webhook signed with HMAC-SHA256, or a Slack-compatible incoming webhook. */
const webhook = z
  .object({
    /** Names the channel in the outbox, the console and the metrics. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a short name (letters, digits, _ . -)'),
    url,
    /** json: Airlock's alert document, signed; slack: { text, blocks } for a Slack (or Mattermost, ...) incoming webhook. */
    format: z.enum(['json', 'slack']).default('json'),
    /** Environment variable holding the HMAC secret (json: required; never written in the file). */
    secret_env: z.string().optional(),
  })
  .strict()
  .refine((w) => w.format !== 'json' || w.secret_env, { message: 'a json webhook needs secret_env (its body is signed)', path: ['secret_env'] });

/** notify: where alerts about newly affected artefacts go, and how their delivery is retried. */
export const notifySchema = z
  .object({
    webhooks: z
      .array(webhook)
      .default([])
      .refine((ws) => new Set(ws.map((w) => w.name)).size === ws.length, 'webhook names must be unique'),
    /** Seconds before the first retry of a failed delivery; each further failure doubles it, up to retry_max_seconds. */
    retry_initial_seconds: z.number().positive().default(5),
    retry_max_seconds: z.number().positive().default(3600),
    /** Seconds a receiver may take to answer one delivery. */
    timeout_seconds: z.number().positive().default(10),
    /** Seconds between two looks at the outbox for due alerts, on each replica. */
    poll_seconds: z.number().positive().default(2),
  })
  .strict()
  .prefault({});

export type NotifyConfig = z.infer<typeof notifySchema>;
