import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/auth/tokens.js';
import { appendPulls, PRUNE_BATCH, verifyChain } from '../../src/core/chain.js';
import type { PullRecord } from '../../src/storage/meta-store.js';
import { SqliteMetaStore } from '../../src/storage/sqlite-meta-store.js';
import { startAirlock } from '../helpers/airlock.js';
import { consoleLogin } from '../helpers/console-login.js';

/**
 * The record's guarantees through a running server (SQLite): pruning never stops it from serving,
 * and the console's page of an artefact sees every pull of it.
 */
const DAY = 86_400_000;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A data directory whose record holds `batches` prune batches of rows forty days old, then 100 recent rows. */
function pastRetention(batches: number): { data: string; path: string; cut: number } {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-prune-start-'));
  dirs.push(dir);
  const data = join(dir, 'data');
  mkdirSync(data);
  const path = join(data, 'airlock.db');
  new SqliteMetaStore(path).close();
  const now = Date.now();
  const db = new Database(path);
  const ins = db.prepare("INSERT INTO pulls (ts, client, ecosystem, name, cache, decision) VALUES (?, 'ci', 'pypi', ?, 'hit', 'allow')");
  db.transaction(() => {
    for (let i = 0; i < batches * PRUNE_BATCH; i++) ins.run(now - 40 * DAY + i, `p${i % 100}`);
    for (let i = 0; i < 100; i++) ins.run(now - DAY + i, 'recent');
  })();
  db.close();
  return { data, path, cut: now - 30 * DAY };
}

describe('pruning never stops the server', () => {
  it('a server whose record is past retention listens and answers while the prune it starts with runs, and the prune still ends', async () => {
    // Ten batches of rows forty days old (a record whose retention was just set, or a server down a
    // while): startServer awaited the whole prune before it listened.
    const { data, cut } = pastRetention(10);
    const a = await startAirlock('records:\n  retention_days: 30\n', { dataDir: data });
    try {
      const old = async () => (await a.airlock.meta.listPulls({ until: cut, limit: 1 })).length;
      // Listening, with the prune under way: old rows are left, and a request is answered meanwhile.
      expect(await old()).toBe(1);
      expect((await fetch(`${a.url}/-/healthz`)).status).toBe(200);
      expect(await old()).toBe(1);
      // The prune goes on in the background to its end.
      for (let i = 0; i < 600 && (await old()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await old()).toBe(0);
      expect((await a.airlock.meta.listPulls({ name: 'recent', limit: 1000 })).length).toBe(100);
      expect((await verifyChain(a.airlock.meta)).problem).toBeUndefined();
    } finally {
      await a.stop();
    }
  }, 120_000);

  it('a server stopped while its prune runs ends the prune after its batch: the record verifies, and the rest waits for the next prune', async () => {
    const { data, path, cut } = pastRetention(10);
    const a = await startAirlock('records:\n  retention_days: 30\n', { dataDir: data });
    await a.stop();
    const meta = new SqliteMetaStore(path);
    try {
      expect((await meta.listPulls({ until: cut, limit: 1 })).length).toBe(1);
      expect((await verifyChain(meta)).problem).toBeUndefined();
    } finally {
      await meta.close();
    }
  }, 120_000);
});

describe('who pulled it, in the console', () => {
  it('the page of an artefact counts every pull of it and names what allowed it, past its newest 1,000 pulls (here all refusals)', async () => {
    const a = await startAirlock('auth:\n  admin: token\n');
    try {
      const token = await new Authenticator(a.airlock.meta).create('sec-team', true);
      const sha256 = 'b'.repeat(64);
      const pull = (i: number, extra: Partial<PullRecord>): PullRecord => ({
        ts: Date.now() - 100_000 + i,
        client: `gpu-${i % 7}`,
        ecosystem: 'hf',
        name: 'org/model',
        version: 'c'.repeat(40),
        filename: 'model.safetensors',
        sha256,
        size: 1234,
        cache: 'hit',
        decision: 'allow',
        ...extra,
      });
      // Served 1,500 times; then refused after a rescan, and its clients retried 1,200 times (the
      // model alert links to this page, "with every pull of it").
      await appendPulls(a.airlock.meta, [
        ...Array.from({ length: 1500 }, (_, i) => pull(i, { rule: 'hf.allow[0]' })),
        ...Array.from({ length: 1200 }, (_, i) => pull(1500 + i, { decision: 'deny', code: 'content_refused', reason: 'refused after rescan' })),
      ]);
      const ui = (p: string) => `${a.url}/-/ui${p}`;
      const cookie = (await consoleLogin(a.url, token)).cookie!;
      const res = await fetch(ui(`/artefact?ecosystem=hf&name=org/model&sha256=${sha256}`), { headers: { cookie } });
      expect(res.status).toBe(200);
      const body = await res.text();
      expect(body).toContain('Pulls (2700, 1200 refused)');
      expect(body).toContain('The newest 1,000 of 2,700 rows are shown');
      expect(body).toContain('<code>hf.allow[0]</code>');
      expect(body).not.toContain('no pull was allowed');
      expect(body).not.toContain('Not served');
      // The SBOM fragment counts every served pull.
      expect(/airlock:pulls&quot;,\s*&quot;value&quot;: &quot;(\d+)&quot;/.exec(body)?.[1]).toBe('1500');
    } finally {
      await a.stop();
    }
  }, 60_000);
});
