import type Database from 'better-sqlite3';
import type { AdvisoryKey, AlertRow, AlertStore, NewAlert } from './alert-store.js';

/** The schema step SqliteMetaStore runs for this seam (its tables live in the same database); pg-schema.ts has the same step. */
export const ALERT_MIGRATION = `CREATE TABLE alert_outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     advisory_id TEXT NOT NULL,
     modified TEXT NOT NULL,
     artefact TEXT NOT NULL,
     channel TEXT NOT NULL,
     payload TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     next_at INTEGER NOT NULL,
     delivered_at INTEGER,
     last_error TEXT,
     claim_owner TEXT,
     claim_until INTEGER,
     UNIQUE (advisory_id, modified, artefact, channel)
   );
   CREATE INDEX alert_outbox_due ON alert_outbox (delivered_at, next_at);
   CREATE TABLE alert_evaluated (advisory_id TEXT NOT NULL, modified TEXT NOT NULL, evaluated_at INTEGER NOT NULL, PRIMARY KEY (advisory_id, modified)) WITHOUT ROWID;
   CREATE TABLE alert_baseline (id INTEGER PRIMARY KEY CHECK (id = 1), taken_at INTEGER NOT NULL);`;

interface Row {
  id: number;
  advisory_id: string;
  modified: string;
  artefact: string;
  channel: string;
  payload: string;
  created_at: number;
  attempts: number;
  next_at: number;
  delivered_at: number | null;
  last_error: string | null;
  claim_owner: string | null;
  claim_until: number | null;
}

export const alertRow = (r: Row): AlertRow => ({
  id: r.id,
  advisoryId: r.advisory_id,
  modified: r.modified,
  artefact: r.artefact,
  channel: r.channel,
  payload: r.payload,
  createdAt: r.created_at,
  attempts: r.attempts,
  nextAt: r.next_at,
  deliveredAt: r.delivered_at,
  lastError: r.last_error,
  claimOwner: r.claim_owner,
  claimUntil: r.claim_until,
});

export class SqliteAlertStore implements AlertStore {
  private readonly s;

  constructor(private readonly db: Database.Database) {
    this.s = {
      hasBaseline: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM alert_baseline'),
      baseline: db.prepare('INSERT OR IGNORE INTO alert_baseline (id, taken_at) VALUES (1, ?)'),
      mark: db.prepare('INSERT OR IGNORE INTO alert_evaluated (advisory_id, modified, evaluated_at) VALUES (?, ?, ?)'),
      evaluated: db.prepare<[], { advisory_id: string; modified: string }>('SELECT advisory_id, modified FROM alert_evaluated'),
      alerted: db.prepare<[string], { artefact: string; channel: string }>('SELECT DISTINCT artefact, channel FROM alert_outbox WHERE advisory_id = ?'),
      insert: db.prepare(
        'INSERT OR IGNORE INTO alert_outbox (advisory_id, modified, artefact, channel, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      due: db.prepare<[number, number, number], { id: number }>(
        'SELECT id FROM alert_outbox WHERE delivered_at IS NULL AND next_at <= ? AND (claim_until IS NULL OR claim_until < ?) ORDER BY id LIMIT ?',
      ),
      claim: db.prepare<[string, number, number], Row>('UPDATE alert_outbox SET claim_owner = ?, claim_until = ? WHERE id = ? RETURNING *'),
      delivered: db.prepare(
        'UPDATE alert_outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL, claim_owner = NULL, claim_until = NULL WHERE id = ? AND claim_owner = ?',
      ),
      failed: db.prepare(
        'UPDATE alert_outbox SET next_at = ?, attempts = attempts + 1, last_error = ?, claim_owner = NULL, claim_until = NULL WHERE id = ? AND claim_owner = ?',
      ),
      list: db.prepare<[number], Row>('SELECT * FROM alert_outbox ORDER BY id DESC LIMIT ?'),
      listOf: db.prepare<[string, number], Row>('SELECT * FROM alert_outbox WHERE advisory_id = ? ORDER BY id DESC LIMIT ?'),
      counts: db.prepare<[], { pending: number; failing: number | null }>(
        'SELECT COUNT(*) AS pending, SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) AS failing FROM alert_outbox WHERE delivered_at IS NULL',
      ),
    };
  }

  async hasAlertBaseline(): Promise<boolean> {
    return this.s.hasBaseline.get()!.n > 0;
  }

  async takeAlertBaseline(keys: AdvisoryKey[], now: number): Promise<boolean> {
    return this.db
      .transaction(() => {
        if (this.s.baseline.run(now).changes === 0) return false;
        for (const k of keys) this.s.mark.run(k.id, k.modified, now);
        return true;
      })
      .immediate();
  }

  async listEvaluated(): Promise<AdvisoryKey[]> {
    return this.s.evaluated.all().map((r) => ({ id: r.advisory_id, modified: r.modified }));
  }

  async alertedArtefacts(advisoryId: string): Promise<{ artefact: string; channel: string }[]> {
    return this.s.alerted.all(advisoryId);
  }

  async enqueueAlerts(alerts: NewAlert[], evaluated: AdvisoryKey[], now: number): Promise<number> {
    return this.db
      .transaction(() => {
        let n = 0;
        for (const a of alerts) n += this.s.insert.run(a.advisoryId, a.modified, a.artefact, a.channel, a.payload, now, now).changes;
        for (const k of evaluated) this.s.mark.run(k.id, k.modified, now);
        return n;
      })
      .immediate();
  }

  async claimAlerts(owner: string, now: number, leaseMs: number, limit: number): Promise<AlertRow[]> {
    // One transaction: SQLite runs one writer at a time, so no two callers claim the same row.
    return this.db.transaction(() => this.s.due.all(now, now, limit).map((r) => alertRow(this.s.claim.get(owner, now + leaseMs, r.id)!))).immediate();
  }

  async finishAlert(id: number, owner: string, outcome: { deliveredAt: number } | { error: string; nextAt: number }): Promise<boolean> {
    const r = 'deliveredAt' in outcome ? this.s.delivered.run(outcome.deliveredAt, id, owner) : this.s.failed.run(outcome.nextAt, outcome.error, id, owner);
    return r.changes > 0;
  }

  async listAlerts(f: { advisoryId?: string; limit: number }): Promise<AlertRow[]> {
    return (f.advisoryId ? this.s.listOf.all(f.advisoryId, f.limit) : this.s.list.all(f.limit)).map(alertRow);
  }

  async alertCounts(): Promise<{ pending: number; failing: number }> {
    const r = this.s.counts.get()!;
    return { pending: r.pending, failing: r.failing ?? 0 };
  }
}
