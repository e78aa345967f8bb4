import { createHash, randomBytes } from 'node:crypto';
import type { TokenStore } from '../storage/meta-store.js';

export interface Identity {
  name: string;
  admin: boolean;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/**
 * A new client token: "hf_" and 40 base62 characters (~238 bits). The prefix is what
 * @huggingface/hub requires of a token; pip, skopeo and curl do not mind it.
 */
export function newToken(): string {
  const bytes = randomBytes(48);
  let out = 'hf_';
  for (let i = 0; out.length < 43; i++) {
    const b = bytes[i % bytes.length];
    if (b < 248) out += BASE62[b % 62];
    else bytes[i % bytes.length] = randomBytes(1)[0];
  }
  return out;
}

export function tokenHash(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The secret a client presents, as each client sends it: `Authorization: Bearer <token>`
 * (Hugging Face clients, OCI after the token flow, curl) or HTTP Basic (pip and uv with
 * `http://name:token@host/...`, OCI token requests): the password, or the user name when the
 * password is empty.
 */
export function presentedSecret(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const [scheme, value] = authorization.trim().split(/\s+/, 2);
  if (!value) return undefined;
  if (/^bearer$/i.test(scheme)) return value;
  if (/^basic$/i.test(scheme)) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return decoded || undefined;
    const pass = decoded.slice(colon + 1);
    return pass || decoded.slice(0, colon) || undefined;
  }
  return undefined;
}

/** Tokens are stored only as SHA-256 hashes; lookups compare the hashes in constant time. */
export class Authenticator {
  constructor(private readonly meta: TokenStore) {}

  async identify(secret: string): Promise<Identity | null> {
    if (secret.length > 512) return null;
    // Looked up by the SHA-256 of the secret, as stored. What the lookup's timing could reveal is
    // about that hash, which does not lead back to the random secret (40 base62 characters, ~238
    // bits). Comparing the found hash with the one looked up again could never fail: not done.
    const t = await this.meta.findToken(tokenHash(secret));
    if (!t || t.revokedAt !== null) return null;
    return { name: t.name, admin: t.admin };
  }

  async create(name: string, admin: boolean): Promise<string> {
    const secret = newToken();
    await this.meta.createToken({ name, hash: tokenHash(secret), admin });
    return secret;
  }
}
