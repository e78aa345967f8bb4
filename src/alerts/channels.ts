import { createHmac } from 'node:crypto';
import { ConfigError } from '../config/load.js';
import type { NotifyConfig } from '../config/notify-schema.js';
import { VERSION } from '../version.js';
import { slackMessage, type AlertDocument } from './message.js';

/**
 * The notification channels (notify.webhooks): a generic JSON webhook, whose body is signed with
 * HMAC-SHA256 over `<timestamp>.<body>` (X-Airlock-Timestamp, X-Airlock-Signature: sha256=<hex>)
 * so a receiver can check it came from Airlock and reject a replay (a timestamp too old, or a
 * delivery id seen before), and a Slack-compatible incoming webhook ({ text, blocks }).
 */
export interface Channel {
  name: string;
  /** Send one alert; resolves when the receiver answered 2xx, rejects with why otherwise. */
  send(d: AlertDocument, delivery: { id: string; attempt: number }): Promise<void>;
}

/** The signature header's value for a body sent at `timestamp` (seconds). */
export function signBody(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

async function post(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'user-agent': `airlock/${VERSION}`, ...headers },
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (err.cause?.code ?? err.cause?.message ?? err.message);
    // The URL (its credentials, a Slack hook's secret path) never goes into the error: it is logged and kept in the outbox.
    throw new Error(
      why
        .split(url)
        .join('<webhook url>')
        .replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '<url>'),
    );
  }
  await res.body?.cancel().catch(() => {});
  if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
}

/** The configured channels, their secrets read from the environment (a missing one stops the start, saying which). */
export function channelsFrom(notify: NotifyConfig, env: Record<string, string | undefined> = process.env): Channel[] {
  const timeoutMs = notify.timeout_seconds * 1000;
  return notify.webhooks.map((w, i) => {
    if (w.format === 'slack') {
      return { name: w.name, send: (d) => post(w.url, JSON.stringify(slackMessage(d)), {}, timeoutMs) };
    }
    const secret = env[w.secret_env!];
    if (!secret) throw new ConfigError(`notify.webhooks[${i}] (${w.name}): secret_env names ${w.secret_env}, which is not set or empty`);
    return {
      name: w.name,
      send: (d, delivery) => {
        const body = JSON.stringify(d);
        const ts = String(Math.floor(Date.now() / 1000));
        return post(
          w.url,
          body,
          { 'x-airlock-event': d.event, 'x-airlock-delivery': delivery.id, 'x-airlock-timestamp': ts, 'x-airlock-signature': signBody(secret, ts, body) },
          timeoutMs,
        );
      },
    };
  });
}
