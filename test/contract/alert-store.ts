import { describe, expect, it } from 'vitest';
import type { AlertStore, NewAlert } from '../../src/storage/alert-store.js';

/**
 * The contract every AlertStore backend must pass (the alert outbox, issue 28). Call it from a
 * backend's test file with a factory that returns a fresh, empty store.
 */
export function alertStoreContract(name: string, fresh: () => Promise<AlertStore>): void {
  const alert = (artefact: string, extra: Partial<NewAlert> = {}): NewAlert => ({
    advisoryId: 'PYSEC-1',
    modified: '2026-12-01T00:00:00Z',
    artefact,
    channel: 'sec',
    payload: JSON.stringify({ artefact }),
    ...extra,
  });

  describe(`AlertStore contract: ${name}`, () => {
    it('takes the baseline once: the first call marks the advisories evaluated, later ones mark nothing', async () => {
      const s = await fresh();
      expect(await s.hasAlertBaseline()).toBe(false);
      expect(await s.takeAlertBaseline([{ id: 'A', modified: '1' }], 10)).toBe(true);
      expect(await s.hasAlertBaseline()).toBe(true);
      expect(await s.takeAlertBaseline([{ id: 'B', modified: '1' }], 11)).toBe(false);
      expect(await s.listEvaluated()).toEqual([{ id: 'A', modified: '1' }]);
    });

    it('enqueues idempotently on (advisory, modified, artefact, channel) and marks the advisories evaluated in the same call', async () => {
      const s = await fresh();
      const key = { id: 'PYSEC-1', modified: '2026-12-01T00:00:00Z' };
      expect(await s.enqueueAlerts([alert('pkg:pypi/a@1'), alert('pkg:pypi/a@2')], [key], 100)).toBe(2);
      // A second replica computing the same impact: nothing new.
      expect(await s.enqueueAlerts([alert('pkg:pypi/a@1', { payload: '{"other":1}' }), alert('pkg:pypi/a@2')], [key], 200)).toBe(0);
      // Another channel, or the advisory modified: new rows.
      expect(await s.enqueueAlerts([alert('pkg:pypi/a@1', { channel: 'slack' }), alert('pkg:pypi/a@1', { modified: '2026-12-02T00:00:00Z' })], [], 300)).toBe(
        2,
      );
      expect(await s.listEvaluated()).toEqual([key]);
      const rows = await s.listAlerts({ advisoryId: 'PYSEC-1', limit: 10 });
      expect(rows).toHaveLength(4);
      expect(rows[rows.length - 1]).toMatchObject({
        artefact: 'pkg:pypi/a@1',
        channel: 'sec',
        payload: '{"artefact":"pkg:pypi/a@1"}',
        createdAt: 100,
        nextAt: 100,
        attempts: 0,
      });
      expect((await s.alertedArtefacts('PYSEC-1')).sort((a, b) => (a.artefact + a.channel).localeCompare(b.artefact + b.channel))).toEqual([
        { artefact: 'pkg:pypi/a@1', channel: 'sec' },
        { artefact: 'pkg:pypi/a@1', channel: 'slack' },
        { artefact: 'pkg:pypi/a@2', channel: 'sec' },
      ]);
      expect(await s.listAlerts({ advisoryId: 'OTHER', limit: 10 })).toEqual([]);
      expect(await s.alertCounts()).toEqual({ pending: 4, failing: 0 });
    });

    it('claims each due row for one owner until its claim expires, and only the owner finishes it', async () => {
      const s = await fresh();
      await s.enqueueAlerts([alert('x'), alert('y')], [], 1000);
      const a = await s.claimAlerts('r1', 1000, 500, 10);
      expect(a.map((r) => r.artefact)).toEqual(['x', 'y']);
      expect(a[0]).toMatchObject({ claimOwner: 'r1', claimUntil: 1500 });
      expect(await s.claimAlerts('r2', 1200, 500, 10)).toEqual([]);
      expect(await s.finishAlert(a[0].id, 'r2', { deliveredAt: 1200 })).toBe(false);
      expect(await s.finishAlert(a[0].id, 'r1', { deliveredAt: 1300 })).toBe(true);
      // r1 died holding y: its claim expires and r2 takes it over.
      const b = await s.claimAlerts('r2', 1600, 500, 10);
      expect(b.map((r) => r.artefact)).toEqual(['y']);
      expect(await s.finishAlert(b[0].id, 'r1', { deliveredAt: 1700 })).toBe(false);
      expect(await s.finishAlert(b[0].id, 'r2', { error: 'HTTP 500', nextAt: 5000 })).toBe(true);
      expect(await s.alertCounts()).toEqual({ pending: 1, failing: 1 });
      // Backoff: not due before nextAt.
      expect(await s.claimAlerts('r2', 4999, 500, 10)).toEqual([]);
      const c = await s.claimAlerts('r3', 5000, 500, 10);
      expect(c).toHaveLength(1);
      expect(c[0]).toMatchObject({ attempts: 1, lastError: 'HTTP 500' });
      expect(await s.finishAlert(c[0].id, 'r3', { deliveredAt: 5100 })).toBe(true);
      const rows = await s.listAlerts({ limit: 10 });
      expect(rows.map((r) => [r.artefact, r.deliveredAt, r.attempts, r.lastError, r.claimOwner])).toEqual([
        ['y', 5100, 2, null, null],
        ['x', 1300, 1, null, null],
      ]);
      expect(await s.claimAlerts('r4', 10_000, 500, 10)).toEqual([]);
      expect(await s.alertCounts()).toEqual({ pending: 0, failing: 0 });
    });

    it('never hands one row to two claimants at once', async () => {
      const s = await fresh();
      await s.enqueueAlerts(
        Array.from({ length: 20 }, (_, i) => alert(`a${i}`)),
        [],
        1,
      );
      const got = await Promise.all(['p', 'q', 'r', 's'].map((o) => s.claimAlerts(o, 2, 60_000, 7)));
      const ids = got.flat().map((r) => r.id);
      expect(ids).toHaveLength(20);
      expect(new Set(ids).size).toBe(20);
    });
  });
}
