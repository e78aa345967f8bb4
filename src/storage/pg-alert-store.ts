import type pg from 'pg';
import type { AdvisoryKey, AlertRow, AlertStore, NewAlert } from './alert-store.js';
import { alertRow } from './sqlite-alert-store.js';

/** The alert outbox in the same PostgreSQL database (held to test/contract/alert-store.ts); rows are claimed with SKIP LOCKED, so replicas never claim one row twice. */
export class PgAlertStore implements AlertStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly tx: <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>,
  ) {}

  async hasAlertBaseline(): Promise<boolean> {
    return (await this.pool.query('SELECT 1 FROM alert_baseline')).rows.length > 0;
  }

  async takeAlertBaseline(keys: AdvisoryKey[], now: number): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query('INSERT INTO alert_baseline (id, taken_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING', [now]);
      if (r.rowCount === 0) return false;
      await this.mark(c, keys, now);
      return true;
    });
  }

  private async mark(c: pg.PoolClient, keys: AdvisoryKey[], now: number): Promise<void> {
    if (!keys.length) return;
    await c.query(
      'INSERT INTO alert_evaluated (advisory_id, modified, evaluated_at) SELECT *, $3::bigint FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING',
      [keys.map((k) => k.id), keys.map((k) => k.modified), now],
    );
  }

  async listEvaluated(): Promise<AdvisoryKey[]> {
    return (await this.pool.query<{ advisory_id: string; modified: string }>('SELECT advisory_id, modified FROM alert_evaluated')).rows.map((r) => ({
      id: r.advisory_id,
      modified: r.modified,
    }));
  }

  async alertedArtefacts(advisoryId: string): Promise<{ artefact: string; channel: string }[]> {
    return (await this.pool.query('SELECT DISTINCT artefact, channel FROM alert_outbox WHERE advisory_id = $1', [advisoryId])).rows;
  }

  async enqueueAlerts(alerts: NewAlert[], evaluated: AdvisoryKey[], now: number): Promise<number> {
    return this.tx(async (c) => {
      let n = 0;
      for (const a of alerts) {
        const r = await c.query(
          'INSERT INTO alert_outbox (advisory_id, modified, artefact, channel, payload, created_at, next_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (advisory_id, modified, artefact, channel) DO NOTHING',
          [a.advisoryId, a.modified, a.artefact, a.channel, a.payload, now],
        );
        n += r.rowCount ?? 0;
      }
      await this.mark(c, evaluated, now);
      return n;
    });
  }

  async claimAlerts(owner: string, now: number, leaseMs: number, limit: number): Promise<AlertRow[]> {
    const r = await this.pool.query(
      `UPDATE alert_outbox SET claim_owner = $1, claim_until = $2 WHERE id IN (
         SELECT id FROM alert_outbox WHERE delivered_at IS NULL AND next_at <= $3 AND (claim_until IS NULL OR claim_until < $3)
         ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *`,
      [owner, now + leaseMs, now, limit],
    );
    return r.rows.map(alertRow).sort((a, b) => a.id - b.id);
  }

  async finishAlert(id: number, owner: string, outcome: { deliveredAt: number } | { error: string; nextAt: number }): Promise<boolean> {
    const r =
      'deliveredAt' in outcome
        ? await this.pool.query(
            'UPDATE alert_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL, claim_owner = NULL, claim_until = NULL WHERE id = $2 AND claim_owner = $3',
            [outcome.deliveredAt, id, owner],
          )
        : await this.pool.query(
            'UPDATE alert_outbox SET next_at = $1, attempts = attempts + 1, last_error = $2, claim_owner = NULL, claim_until = NULL WHERE id = $3 AND claim_owner = $4',
            [outcome.nextAt, outcome.error, id, owner],
          );
    return (r.rowCount ?? 0) > 0;
  }

  async listAlerts(f: { advisoryId?: string; limit: number }): Promise<AlertRow[]> {
    const r = f.advisoryId
      ? await this.pool.query('SELECT * FROM alert_outbox WHERE advisory_id = $1 ORDER BY id DESC LIMIT $2', [f.advisoryId, f.limit])
      : await this.pool.query('SELECT * FROM alert_outbox ORDER BY id DESC LIMIT $1', [f.limit]);
    return r.rows.map(alertRow);
  }

  async alertCounts(): Promise<{ pending: number; failing: number }> {
    const r = await this.pool.query<{ pending: number; failing: number | null }>(
      'SELECT COUNT(*)::bigint AS pending, SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END)::bigint AS failing FROM alert_outbox WHERE delivered_at IS NULL',
    );
    return { pending: r.rows[0].pending, failing: r.rows[0].failing ?? 0 };
  }
}
