import type Database from 'better-sqlite3';
import type { SignerRecord } from './meta-store.js';

/**
 * What the SQLite store remembers of first sightings, shared by every process on the database
 * (the first writer wins): the signer each project was first verified under (issue 26) and when
 * each OCI manifest digest was first seen (issue 27, oci.min_age). A base of SqliteMetaStore,
 * which gives it the database.
 */
export abstract class SqliteRemembered {
  protected abstract readonly db: Database.Database;

  async getSigner(ecosystem: string, project: string): Promise<SignerRecord | null> {
    const r = this.db
      .prepare<[string, string], { identity: string; version: string | null; recorded_at: number }>(
        'SELECT identity, version, recorded_at FROM signers WHERE ecosystem = ? AND project = ?',
      )
      .get(ecosystem, project);
    return r ? { identity: r.identity, version: r.version, recordedAt: r.recorded_at } : null;
  }

  async recordSigner(ecosystem: string, project: string, s: { identity: string; version: string | null }): Promise<SignerRecord> {
    // One statement, the row inserted or the one there (a no-op update returns it): a `trust forget` in another process could come between two.
    const r = this.db
      .prepare<[string, string, string, string | null, number], { identity: string; version: string | null; recorded_at: number }>(
        'INSERT INTO signers VALUES (?, ?, ?, ?, ?) ON CONFLICT (ecosystem, project) DO UPDATE SET identity = signers.identity RETURNING identity, version, recorded_at',
      )
      .get(ecosystem, project, s.identity, s.version, Date.now())!;
    return { identity: r.identity, version: r.version, recordedAt: r.recorded_at };
  }

  async setSigner(ecosystem: string, project: string, s: { identity: string; version: string | null } | null): Promise<boolean> {
    return this.db
      .transaction(() => {
        const had = this.db.prepare('DELETE FROM signers WHERE ecosystem = ? AND project = ?').run(ecosystem, project).changes > 0;
        if (s) this.db.prepare('INSERT INTO signers VALUES (?, ?, ?, ?, ?)').run(ecosystem, project, s.identity, s.version, Date.now());
        return had;
      })
      .immediate();
  }

  async recordOciFirstSeen(digest: string, at: number): Promise<number> {
    this.db.prepare('INSERT OR IGNORE INTO oci_first_seen (digest, first_seen) VALUES (?, ?)').run(digest, at);
    return (await this.getOciFirstSeen(digest))!;
  }

  async getOciFirstSeen(digest: string): Promise<number | null> {
    return this.db.prepare<[string], { first_seen: number }>('SELECT first_seen FROM oci_first_seen WHERE digest = ?').get(digest)?.first_seen ?? null;
  }
}
