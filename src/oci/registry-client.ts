import { AirlockError } from '../core/errors.js';
import { header, readBounded, redact, upstreamUrlAllowed, type GetOptions, type UpstreamHttp, type UpstreamResponse } from '../upstream/http.js';

export interface RegistryConfig {
  /** The registry as clients name it: docker.io, ghcr.io, registry.corp:5000. */
  key: string;
  url: string;
  blobHosts: string[];
  authHosts: string[];
  username?: string;
  password?: string;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parse a WWW-Authenticate header (RFC 7235 auth-params; quoted strings with escapes). */
export function parseChallenge(h: string | undefined): Challenge | null {
  if (!h) return null;
  const m = /^\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*(.*)$/s.exec(h);
  if (!m) return null;
  const params: Record<string, string> = {};
  const re = /([A-Za-z][A-Za-z0-9._-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  const rest = m[2];
  re.lastIndex = 0;
  let p: RegExpExecArray | null;
  while (re.lastIndex < rest.length && (p = re.exec(rest))) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Tokens are renewed this long before they expire, so a request never goes out on a dying token. */
const EXPIRY_MARGIN_MS = 10_000;
/** The token spec's default lifetime when the server gives none (and distribution's minimum). */
const DEFAULT_TOKEN_SECONDS = 60;
const MAX_TOKEN_BODY = 64 * 1024;

/**
 * One upstream registry: the Bearer token flow (anonymous or with configured credentials),
 * tokens cached per scope until shortly before they expire, concurrent token fetches coalesced,
 * and every URL (token realm, blob redirect) checked against the registry's own hosts.
 */
export class RegistryClient {
  private readonly base: URL;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pendingTokens = new Map<string, Promise<CachedToken>>();
  /** Token requests made (for tests and metrics). */
  tokenFetches = 0;

  constructor(
    readonly cfg: RegistryConfig,
    private readonly http: UpstreamHttp,
    private readonly now: () => number = Date.now,
  ) {
    this.base = new URL(cfg.url.endsWith('/') ? cfg.url : `${cfg.url}/`);
  }

  get host(): string {
    return this.base.host;
  }

  /** Hosts a request for this registry may touch: the registry itself and its blob CDN hosts. */
  allowUrl = (u: URL): boolean => upstreamUrlAllowed(u, this.base, this.cfg.blobHosts);

  /** The token realm: the registry's host name (any port) or one of its auth_hosts. */
  private allowRealm(u: URL): boolean {
    return upstreamUrlAllowed(u, this.base, this.cfg.authHosts, (x) => x.hostname === this.base.hostname);
  }

  private basicAuth(): string | undefined {
    if (this.cfg.username === undefined || this.cfg.password === undefined) return undefined;
    return `Basic ${Buffer.from(`${this.cfg.username}:${this.cfg.password}`).toString('base64')}`;
  }

  /**
   * GET or HEAD `/v2/<name>/<path>` upstream. Answers 401 by running the token flow once; the
   * caller gets whatever the registry answers then (redirects already followed, hop-checked).
   */
  async request(
    name: string,
    path: string,
    opts: { method?: 'GET' | 'HEAD'; accept?: string; signal?: AbortSignal; transfer?: GetOptions['transfer'] } = {},
  ): Promise<UpstreamResponse> {
    const url = new URL(`v2/${name}/${path}`, this.base);
    const scope = `repository:${name}:pull`;
    const headers: Record<string, string> = {};
    if (opts.accept) headers.accept = opts.accept;
    const cached = this.cachedToken(scope);
    if (cached) headers.authorization = `Bearer ${cached}`;
    else if (this.basicAuth() && this.basicPreferred) headers.authorization = this.basicAuth()!;
    let res = await this.http.get(url, {
      method: opts.method,
      headers,
      signal: opts.signal,
      transfer: opts.transfer,
      allowUrl: this.allowUrl,
      maxRedirects: 10,
    });
    if (res.status !== 401) return res;
    const challenge = parseChallenge(header(res.headers, 'www-authenticate'));
    res.body.resume();
    if (!challenge) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${this.cfg.key} answered 401 without a WWW-Authenticate challenge`);
    if (challenge.scheme === 'basic') {
      const basic = this.basicAuth();
      if (!basic)
        throw new AirlockError(
          'UPSTREAM_BAD_RESPONSE',
          `${this.cfg.key} asks for a username and password; set username_env and password_env for it in oci.registries`,
          { status: 502 },
        );
      this.basicPreferred = true;
      headers.authorization = basic;
    } else if (challenge.scheme === 'bearer') {
      const tok = await this.fetchToken(challenge, scope, opts.signal);
      headers.authorization = `Bearer ${tok.token}`;
    } else {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${this.cfg.key} asks for ${challenge.scheme} authentication, which Airlock does not speak`);
    }
    res = await this.http.get(url, { method: opts.method, headers, signal: opts.signal, transfer: opts.transfer, allowUrl: this.allowUrl, maxRedirects: 10 });
    if (res.status === 401) {
      res.body.resume();
      this.tokens.delete(this.tokenKey(challenge, scope));
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${this.cfg.key} refused Airlock's credentials for ${name} (401 after authenticating)`);
    }
    return res;
  }

  private basicPreferred = false;

  private tokenKey(ch: Challenge, scope: string): string {
    return `${ch.params.realm}|${ch.params.service ?? ''}|${scope}`;
  }

  private cachedToken(scope: string): string | undefined {
    // Looked up by scope alone: one realm per registry in practice; the key below keeps realms apart.
    const now = this.now();
    for (const [k, t] of this.tokens) {
      if (!k.endsWith(`|${scope}`)) continue;
      if (t.expiresAt - EXPIRY_MARGIN_MS > now) return t.token;
      this.tokens.delete(k);
    }
    return undefined;
  }

  private fetchToken(ch: Challenge, scope: string, signal?: AbortSignal): Promise<CachedToken> {
    const key = this.tokenKey(ch, scope);
    const pending = this.pendingTokens.get(key);
    if (pending) return pending;
    const p = this.requestToken(ch, scope, signal).finally(() => this.pendingTokens.delete(key));
    this.pendingTokens.set(key, p);
    return p;
  }

  private async requestToken(ch: Challenge, scope: string, signal?: AbortSignal): Promise<CachedToken> {
    let realm: URL;
    try {
      realm = new URL(ch.params.realm ?? '');
    } catch {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${this.cfg.key} sent a token challenge without a usable realm`);
    }
    // A registry may not send Airlock (and its credentials) to an arbitrary host: realm pinning.
    if (!this.allowRealm(realm)) {
      throw new AirlockError(
        'UPSTREAM_HOST_NOT_ALLOWED',
        `${this.cfg.key} sent Airlock to token realm ${redact(realm)}, which is neither the registry's host nor in its auth_hosts`,
      );
    }
    if (ch.params.service) realm.searchParams.set('service', ch.params.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    const basic = this.basicAuth();
    if (basic) headers.authorization = basic;
    this.tokenFetches++;
    const res = await this.http.get(realm, { headers, signal, allowUrl: (u) => this.allowRealm(u), maxRedirects: 3 });
    const text = await readBounded(res.body, MAX_TOKEN_BODY);
    if (res.status !== 200) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `token service ${realm.host} answered ${res.status} for ${scope}`);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `token service ${realm.host} answered with something other than JSON`);
    }
    const token = typeof body.token === 'string' ? body.token : typeof body.access_token === 'string' ? body.access_token : undefined;
    if (!token) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `token service ${realm.host} answered without a token`);
    const seconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? Math.max(body.expires_in, DEFAULT_TOKEN_SECONDS) : DEFAULT_TOKEN_SECONDS;
    const t = { token, expiresAt: this.now() + seconds * 1000 };
    this.tokens.set(this.tokenKey(ch, scope), t);
    return t;
  }
}

/** A client for one configured registry (oci.registries.<key>), credentials read from the environment. */
export function registryFromConfig(
  key: string,
  r: { url: string; blob_hosts: string[]; auth_hosts: string[]; username_env?: string; password_env?: string },
  http: UpstreamHttp,
  env: Record<string, string | undefined> = process.env,
): RegistryClient {
  return new RegistryClient(
    {
      key,
      url: r.url,
      blobHosts: r.blob_hosts,
      authHosts: r.auth_hosts,
      username: r.username_env ? env[r.username_env] : undefined,
      password: r.password_env ? env[r.password_env] : undefined,
    },
    http,
  );
}
