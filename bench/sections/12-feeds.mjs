// Section 12. Advisory feeds (issue 28): an OSV export on loopback in osv.dev's layout (all.zip written by
// Python's zipfile, test/helpers/make_osv_zip.py; modified_id.csv; one .json per record). A fresh
// server per round takes the full sync, serves a pull, then a new advisory affecting that release
// appears in the feed: the time until the next pull is refused (the scheduled incremental sync,
// advisories.interval 5 s, then the apply, advisories.poll 1 s) is the feed-change-to-applied time.
// The same rounds have a JSON webhook channel (notify.webhooks, HMAC-signed) at a receiver on
// loopback: the time from the feed change to the alert's arrival is the feed-change-to-alert time.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { median, sleep } from '../lib/proc.mjs';

export async function run(ctx) {
  const { ROOT, S, work, WARMUP, startAirlock, row, target } = ctx;
  const { createServer } = await import('node:http');
  const feedDir = join(work, 'osv-feed');
  const recs = new Map();
  const putRec = (r) => recs.set(r.id, r);
  putRec({ id: 'PYSEC-BENCH-0', modified: '2026-11-01T00:00:00Z', affected: [{ package: { ecosystem: 'PyPI', name: 'nothing' }, versions: ['1'] }] });
  const asked = [];
  const feed = createServer((req, res) => {
    const [, eco, file] = decodeURIComponent(new URL(req.url, 'http://x').pathname).split('/');
    asked.push(file);
    if (eco !== 'PyPI') return void res.writeHead(404).end();
    if (file === 'all.zip') {
      rmSync(feedDir, { recursive: true, force: true });
      mkdirSync(feedDir, { recursive: true });
      for (const r of recs.values()) writeFileSync(join(feedDir, `${r.id}.json`), JSON.stringify(r));
      execFileSync('python3', [join(ROOT, 'test', 'helpers', 'make_osv_zip.py'), join(work, 'osv-all.zip'), feedDir]);
      return void res.writeHead(200).end(readFileSync(join(work, 'osv-all.zip')));
    }
    if (file === 'modified_id.csv') {
      const lines = [...recs.values()].sort((a, b) => (a.modified < b.modified ? 1 : -1)).map((r) => `${r.modified},${r.id}\n`);
      return void res.writeHead(200).end(lines.join(''));
    }
    const r = recs.get(file.replace(/\.json$/, ''));
    return void (r ? res.writeHead(200).end(JSON.stringify(r)) : res.writeHead(404).end());
  });
  await new Promise((r) => feed.listen(0, '127.0.0.1', r));
  const feedUrl = `http://127.0.0.1:${feed.address().port}/`;
  const statusOf = async (url) => {
    const r = await fetch(url);
    await r.arrayBuffer();
    return r.status;
  };
  // The webhook receiver: when each alert (by advisory id) arrived.
  const alertAt = new Map();
  const receiver = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      try {
        const id = JSON.parse(Buffer.concat(chunks).toString()).advisory?.id;
        if (id && !alertAt.has(id)) alertAt.set(id, at);
      } catch {}
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${receiver.address().port}/hook`;
  const applyMs = [];
  const alertMs = [];
  for (let round = 0; round < Math.max(S.reps, 3); round++) {
    const a = await startAirlock({ feed: feedUrl, hook: hookUrl });
    if ((await statusOf(a.fileUrl(WARMUP))) !== 200) throw new Error('section 12: the release was refused before the advisory');
    // The full sync has run once the first all.zip was asked for and a little time passed; wait for it.
    for (let i = 0; i < 100 && !asked.includes('all.zip'); i++) await sleep(50);
    await sleep(500);
    const id = `GHSA-bench-${round}`;
    putRec({
      id,
      modified: new Date().toISOString(),
      severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
      affected: [{ package: { ecosystem: 'PyPI', name: WARMUP.project }, versions: ['1.0'] }],
    });
    const t0 = performance.now();
    let status = 200;
    while (status !== 403 && performance.now() - t0 < 30_000) {
      await sleep(50);
      status = await statusOf(a.fileUrl(WARMUP));
    }
    const ms = performance.now() - t0;
    // The alert: one per advisory and release, sent once the next evaluation after the apply has queued it.
    while (!alertAt.has(id) && performance.now() - t0 < 30_000) await sleep(20);
    if (!alertAt.has(id)) throw new Error('section 12: no alert arrived at the receiver within 30 s');
    alertMs.push(alertAt.get(id) - t0);
    await a.stop();
    recs.delete(id);
    asked.length = 0;
    if (status !== 403) throw new Error(`section 12: the advisory was not applied within 30 s (status ${status})`);
    applyMs.push(ms);
  }
  row('advisory feed: change to pull refused', 'interval 5 s, poll 1 s (incremental)', {
    ms: median(applyMs),
    minMs: Math.min(...applyMs),
    maxMs: Math.max(...applyMs),
  });
  row('advisory feed: change to alert received', 'JSON webhook on loopback (HMAC-signed)', {
    ms: median(alertMs),
    minMs: Math.min(...alertMs),
    maxMs: Math.max(...alertMs),
  });
  target(
    'a feed change is applied within advisories.interval + poll + 2 s',
    Math.max(...applyMs) <= 8000,
    `${(Math.max(...applyMs) / 1000).toFixed(1)} s (worst of ${applyMs.length})`,
  );
  await new Promise((r) => feed.close(r));
  await new Promise((r) => receiver.close(r));
}
