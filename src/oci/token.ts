import type { Context } from 'hono';
import { presentedSecret } from '../auth/tokens.js';
import { sendBytes, type AppEnv } from '../http/send.js';
import type { OciDeps } from './context.js';
import { API_VERSION, errorBody } from './errors.js';

/**
 * The registry token endpoint (docker login, skopeo --creds, containerd host credentials):
 * HTTP Basic with a client token in, that token back as the bearer token. Airlock's tokens are
 * long-lived and revocable, so no second, short-lived secret is minted.
 */
export async function tokenEndpoint(d: OciDeps, c: Context<AppEnv>): Promise<Response> {
  const secret = presentedSecret(c.req.header('authorization'));
  const id = secret ? await d.authenticator.identify(secret) : null;
  if (!id || !secret) {
    return sendBytes(
      c,
      401,
      { ...API_VERSION, 'content-type': 'application/json', 'www-authenticate': 'Basic realm="airlock"', 'cache-control': 'no-store' },
      errorBody(
        'UNAUTHORIZED',
        secret ? 'the token presented is not valid (unknown or revoked)' : 'log in with a client token as the password (airlock token create --name NAME)',
      ),
    );
  }
  return sendBytes(
    c,
    200,
    { 'content-type': 'application/json', 'cache-control': 'no-store' },
    Buffer.from(JSON.stringify({ token: secret, access_token: secret, expires_in: 3600, issued_at: new Date().toISOString() })),
  );
}
