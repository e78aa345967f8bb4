import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NewlyRefused } from '../../src/hf/rescan.js';
import { SCANNER_VERSION } from '../../src/scan/index.js';
import { startAirlock, type TestAirlock } from '../helpers/airlock.js';
import { FakeHub, hfUpstream, sha256hex } from '../helpers/fake-hub.js';
import { rawGet } from '../helpers/http.js';
import { Receiver } from '../helpers/receiver.js';
import { R, hex, torchZip } from '../helpers/model-files.js';

/**
 * After a scanner upgrade, the server judges cached model files again in the background at a
 * bounded rate (hf.rescan_per_minute) and reports the ones the policy in force now refuses. An
 * older scanner that missed an import is simulated by the report it would have stored: the
 * checkpoint's real globals with the dangerous one left out.
 */
describe('background rescan after a scanner upgrade', () => {
  const hub = new FakeHub();
  const rx = new Receiver();
  const evil = torchZip(hex(R.R2), {});
  const benign = torchZip(hex(R.R10));
  let commit: string;
  let dataDir: string;
  let first: TestAirlock;
  let second: TestAirlock | undefined;

  const notify = () => `notify:\n  webhooks:\n    - { name: sec, url: "${rx.url('/hook')}", secret_env: AIRLOCK_TEST_HOOK_SECRET }\n  poll_seconds: 0.1\n`;
  const yaml = (reviewed: string[], perMinute: number) => `${hfUpstream(hub, `  rescan_per_minute: ${perMinute}\n`)}${notify()}policy:
  hf:
    allow:
      - repo: acme/ckpt
        refs: { main: "${commit}" }
        scan: { sha256: [${reviewed.map((s) => `"${s}"`).join(', ')}] }
`;

  beforeAll(async () => {
    process.env.AIRLOCK_TEST_HOOK_SECRET = 'rescan-alert-secret';
    await Promise.all([hub.start(), rx.start()]);
    commit = hub.commit('model', 'acme/ckpt', [
      { path: 'old.bin', bytes: evil, lfs: true },
      { path: 'pytorch_model.bin', bytes: benign, lfs: true },
    ]);
    // A reviewer once accepted old.bin by its sha256; both files are served and cached.
    first = await startAirlock(yaml([sha256hex(evil)], 0));
    dataDir = join(first.dir, 'data');
    for (const p of ['old.bin', 'pytorch_model.bin']) expect((await rawGet(`${first.url}/hf/acme/ckpt/resolve/main/${p}`)).status).toBe(200);
    await first.airlock.cache.idle();
    await first.stop();
  });

  afterAll(async () => {
    await second?.stop();
    await hub.stop();
    await rx.stop();
  });

  it('re-judges every file an older scanner judged, at the configured rate, and reports the newly refused one', async () => {
    const db = new Database(join(dataDir, 'airlock.db'));
    const missed = {
      scanner: 'airlock-scan/0',
      format: 'torch-zip',
      pickle: true,
      globals: ['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2'],
      findings: [],
    };
    db.prepare('INSERT OR REPLACE INTO scans (sha256, scanner, report, scanned_at) VALUES (?, ?, ?, 0)').run(
      sha256hex(evil),
      'airlock-scan/0',
      JSON.stringify(missed),
    );
    db.prepare("UPDATE scans SET scanner = 'airlock-scan/0' WHERE sha256 = ?").run(sha256hex(benign));
    db.close();

    // The review is withdrawn; the server starts with the new scanner, two files a second at most.
    const reported: NewlyRefused[] = [];
    const started = Date.now();
    second = await startAirlock(yaml([], 120), { dataDir });
    second.airlock.onModelFileRefused((n) => void reported.push(n));
    expect(await second.airlock.rescanned()).toBe(1);
    // Two files at 120 a minute: the second waits half a second after the first began.
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);

    expect(reported.map((n) => [n.repo, n.path, n.sha256])).toEqual([['acme/ckpt', 'old.bin', sha256hex(evil)]]);
    expect(reported[0].decision.reason).toMatch(/posix\.system/);
    const check = new Database(join(dataDir, 'airlock.db'));
    const scanners = check.prepare('SELECT scanner FROM scans').all() as { scanner: string }[];
    check.close();
    expect(scanners.map((s) => s.scanner)).toEqual([SCANNER_VERSION, SCANNER_VERSION]);
    const metrics = await second.airlock.metrics.registry.getSingleMetricAsString('airlock_model_rescans_total');
    expect(metrics).toMatch(/outcome="rescanned"} 2/);
    expect(metrics).toMatch(/outcome="refused"} 1/);

    // One alert through the outbox, naming the file, its repository, the reason and the client that pulled it.
    await rx.until(() => rx.delivered('/hook').length >= 1);
    await second.airlock.alerting!.idle();
    const sent = rx.delivered('/hook');
    expect(sent).toHaveLength(1);
    const doc = JSON.parse(sent[0].body);
    expect(doc).toMatchObject({
      event: 'airlock.model.refused',
      advisory: { id: SCANNER_VERSION },
      artefact: { key: `hf:sha256:${sha256hex(evil)}`, kind: 'hf', files: [{ filename: 'old.bin', sha256: sha256hex(evil) }], repositories: ['acme/ckpt'] },
    });
    expect(doc.advisory.summary).toMatch(/posix\.system/);
    expect(doc.clients.map((c: { client: string }) => c.client)).toEqual(['127.0.0.1']);
    expect(doc.incident_url).toContain(`/-/ui/artefact?ecosystem=hf&name=acme%2Fckpt&sha256=${sha256hex(evil)}`);

    const now = await rawGet(`${second.url}/hf/acme/ckpt/resolve/main/old.bin`);
    expect(now.status).toBe(403);
    expect((await rawGet(`${second.url}/hf/acme/ckpt/resolve/main/pytorch_model.bin`)).status).toBe(200);
  });
});
