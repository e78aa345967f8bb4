import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { ConsoleSessionRecord, ConsoleSessionStore } from './meta-store.js';

interface SessionRow {
  name: string;
  hash: string;
  admin: number;
  created_at: number;
  revoked_at: number | null;
  expires_at: number;
}

/** Console sessions in the embedded SQLite database (the console_sessions and console_secret tables of sqlite-schema.ts). */
export class SqliteConsoleSessions implements ConsoleSessionStore {
  private readonly find;
  private readonly end;

  constructor(private readonly db: Database.Database) {
    // The session and its token in one lookup: the sessions' primary key, then the tokens' unique hash.
    this.find = db.prepare<[string], SessionRow>(
      `SELECT t.name, t.hash, t.admin, t.created_at, t.revoked_at, s.expires_at
       FROM console_sessions s JOIN tokens t ON t.hash = s.token_hash WHERE s.key = ?`,
    );
    this.end = db.prepare('DELETE FROM console_sessions WHERE key = ?');
  }

  async createConsoleSession(s: { key: string; tokenHash: string; expiresAt: number }, now: number): Promise<void> {
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM console_sessions WHERE expires_at <= ?').run(now);
        this.db.prepare('INSERT INTO console_sessions (key, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)').run(s.key, s.tokenHash, now, s.expiresAt);
      })
      .immediate();
  }

  async findConsoleSession(key: string): Promise<ConsoleSessionRecord | null> {
    const r = this.find.get(key);
    if (!r) return null;
    return { expiresAt: r.expires_at, token: { name: r.name, hash: r.hash, admin: r.admin === 1, createdAt: r.created_at, revokedAt: r.revoked_at } };
  }

  async endConsoleSession(key: string): Promise<boolean> {
    return this.end.run(key).changes > 0;
  }

  async consoleSecret(): Promise<string> {
    // A read once the secret exists: no write lock to wait for while another process holds it.
    const get = this.db.prepare<[], { secret: string }>('SELECT secret FROM console_secret WHERE id = 1');
    const had = get.get();
    if (had) return had.secret;
    this.db.prepare('INSERT OR IGNORE INTO console_secret (id, secret) VALUES (1, ?)').run(randomBytes(32).toString('base64url'));
    return get.get()!.secret;
  }
}
