import type { Context } from 'hono';
import { presentedSecret } from '../auth/tokens.js';
import { Refusal, requestName } from '../http/refusal.js';
import { sendBytes, type AppEnv } from '../http/send.js';
import type { OciDeps } from './context.js';
import { API_VERSION, errorBody, OciError } from './errors.js';

const CHALLENGE = { 'www-authenticate': 'Basic realm="airlock"' };

/**
 * The registry token endpoint (docker login, skopeo --creds, containerd host credentials):
 * HTTP Basic with a client token in, that token back as the bearer token. Airlock's tokens are
 * long-lived and revocable, so no second, short-lived secret is minted.
 *
 * No credentials is the challenge (401, no row: how clients are asked to log in). A wrong or
 * revoked secret is a refusal on record like one anywhere else (bad_token, named by the request
 * path, never the secret): this path is open in app.ts, so the app's identity check never sees it.
 */
export async function tokenEndpoint(d: OciDeps, c: Context<AppEnv>): Promise<Response> {
  const secret = presentedSecret(c.req.header('authorization'));
  if (!secret) {
    return sendBytes(
      c,
      401,
      { ...API_VERSION, 'content-type': 'application/json', ...CHALLENGE, 'cache-control': 'no-store' },
      errorBody('UNAUTHORIZED', 'log in with a client token as the password (airlock token create --name NAME)'),
    );
  }
  const id = await d.authenticator.identify(secret);
  if (!id) {
    const reason = 'the token presented is not valid (unknown or revoked)';
    throw new Refusal({
      status: 401,
      code: 'bad_token',
      rule: 'auth.oci',
      reason,
      row: { name: requestName(c) },
      answer: new OciError(401, 'UNAUTHORIZED', reason, CHALLENGE),
    });
  }
  return sendBytes(
    c,
    200,
    { 'content-type': 'application/json', 'cache-control': 'no-store' },
    Buffer.from(JSON.stringify({ token: secret, access_token: secret, expires_in: 3600, issued_at: new Date().toISOString() })),
  );
}
