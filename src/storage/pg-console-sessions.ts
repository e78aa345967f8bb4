import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { ConsoleSessionRecord, ConsoleSessionStore } from './meta-store.js';

/** Console sessions in PostgreSQL (the console_sessions and console_secret tables of pg-schema.ts), shared by every replica. */
export class PgConsoleSessions implements ConsoleSessionStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly tx: <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>,
  ) {}

  async createConsoleSession(s: { key: string; tokenHash: string; expiresAt: number }, now: number): Promise<void> {
    await this.tx(async (c) => {
      await c.query('DELETE FROM console_sessions WHERE expires_at <= $1', [now]);
      await c.query('INSERT INTO console_sessions (key, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)', [s.key, s.tokenHash, now, s.expiresAt]);
    });
  }

  async findConsoleSession(key: string): Promise<ConsoleSessionRecord | null> {
    // The session and its token in one lookup: the sessions' primary key, then the tokens' unique hash.
    const { rows } = await this.pool.query<{ name: string; hash: string; admin: boolean; created_at: number; revoked_at: number | null; expires_at: number }>(
      `SELECT t.name, t.hash, t.admin, t.created_at, t.revoked_at, s.expires_at
       FROM console_sessions s JOIN tokens t ON t.hash = s.token_hash WHERE s.key = $1`,
      [key],
    );
    const r = rows[0];
    if (!r) return null;
    return { expiresAt: r.expires_at, token: { name: r.name, hash: r.hash, admin: r.admin, createdAt: r.created_at, revokedAt: r.revoked_at } };
  }

  async endConsoleSession(key: string): Promise<boolean> {
    return ((await this.pool.query('DELETE FROM console_sessions WHERE key = $1', [key])).rowCount ?? 0) > 0;
  }

  async consoleSecret(): Promise<string> {
    // Two statements, not one: the SELECT must see the row a replica racing this one committed first.
    await this.pool.query('INSERT INTO console_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING', [randomBytes(32).toString('base64url')]);
    return (await this.pool.query<{ secret: string }>('SELECT secret FROM console_secret WHERE id = 1')).rows[0].secret;
  }
}
