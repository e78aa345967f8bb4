import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { OsvFeed, type FeedSource } from '../../src/advisories/feed.js';
import { AdvisoryFeeds } from '../../src/advisories/sync.js';
import type { Logger } from '../../src/obs/logger.js';
import { Advisories, type OsvRecord } from '../../src/policy/advisories.js';
import { Policy } from '../../src/policy/index.js';
import { LivePolicy } from '../../src/core/live-policy.js';
import { applyAdvisoryChanges, readAdvisories, reloadAdvisories } from '../../src/reload.js';
import type { AdvisoryStore, LeaseStore, MetaStore } from '../../src/storage/meta-store.js';
import { UpstreamHttp } from '../../src/upstream/http.js';

/** What the advisory attacks share (test/unit/break-advpages.test.ts, test/integration/break-advpages.test.ts). */
export const quiet = { info() {}, warn() {}, error() {}, debug() {} } as never;

export const PKGS = 12;
/** A record of `id` at version `v`: it affects pkgN at exactly `${v}.0` (N from the id), so a stale or lost version matches differently. */
export function rec(id: string, v: number, withdrawn = false): OsvRecord {
  let h = 0;
  for (const c of id) h = (h * 31 + c.codePointAt(0)!) >>> 0;
  return {
    id,
    modified: `2026-01-01T00:00:${String(v % 60).padStart(2, '0')}Z`,
    ...(withdrawn ? { withdrawn: '2026-02-01T00:00:00Z' } : {}),
    affected: [{ package: { ecosystem: 'PyPI', name: `pkg${h % PKGS}` }, versions: [`${v}.0`] }],
  } as OsvRecord;
}
export const row = (r: OsvRecord) => ({ id: r.id, modified: r.modified ?? '', record: JSON.stringify(r) });

/** What an index answers, for every package and version the records above can name. */
export function answers(a: Advisories, versions: number): string {
  const out: string[] = [`size=${a.size} withdrawn=${a.withdrawn}`];
  for (let p = 0; p < PKGS; p++)
    for (let v = 0; v < versions; v++) {
      const ids = a
        .matchPypi(`pkg${p}`, `${v}.0`)
        .map((m) => m.id)
        .sort();
      if (ids.length) out.push(`pkg${p}@${v}: ${ids.join(',')}`);
    }
  return out.join('\n');
}
/** The index built from every stored record read at once (the reference). */
export const atOnce = async (m: Pick<AdvisoryStore, 'listAdvisories'>) => new Advisories((await m.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord));

/** A tiny deterministic PRNG (the failures must replay). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0), s / 2 ** 32);
}

/** A directory tree of OSV files under `dir` (an import's input). */
export function osvDir(dir: string, name: string, files: [string, unknown][]): string {
  const root = join(dir, name);
  for (const [f, body] of files) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), typeof body === 'string' ? body : JSON.stringify(body));
  }
  return root;
}

/** The server's notice of advisory changes over `meta`, with no feed: `inForce()` is what it last applied (reload.ts). */
export function noticing(meta: AdvisoryStore): { feeds: AdvisoryFeeds; inForce: () => Advisories } {
  let inForce = new Advisories();
  const feeds = new AdvisoryFeeds({
    meta: meta as MetaStore,
    feed: {} as never,
    sources: [],
    intervalMs: 3_600_000,
    pollMs: 0,
    maxAgeMs: 0,
    apply: async () => {
      inForce = await readAdvisories(meta as MetaStore);
      return inForce.size;
    },
    owner: 'test',
    log: quiet,
  });
  return { feeds, inForce: () => inForce };
}

/**
 * Syncs of `sources` (OSV exports on loopback, test/helpers/osv-feed.ts) into `meta` as the server
 * runs them, but only when a test asks (syncNow, tick): no timer, no poll.
 */
export function feedsOver(
  meta: AdvisoryStore & LeaseStore,
  sources: FeedSource[],
  o: { apply?: (signal: AbortSignal) => Promise<number>; maxBytes?: number; maxIncremental?: number; timeoutMs?: number; owner?: string; log?: Logger } = {},
): AdvisoryFeeds {
  return new AdvisoryFeeds({
    meta,
    feed: new OsvFeed(new UpstreamHttp({ headersTimeoutMs: 5000 }), {
      maxBytes: o.maxBytes ?? 64 << 20,
      timeoutMs: o.timeoutMs ?? 30_000,
      maxIncremental: o.maxIncremental ?? 1000,
    }),
    sources,
    intervalMs: 3_600_000,
    pollMs: 0,
    maxAgeMs: 0,
    apply: o.apply ?? (async () => 0),
    owner: o.owner ?? 'test',
    log: o.log ?? quiet,
  });
}

/** An all.zip answered whole. */
export const wholeExport = (zip: Buffer) => (res: ServerResponse) => void res.writeHead(200, { 'content-type': 'application/zip' }).end(zip);

/**
 * A slow all.zip (the feed-stop tests): its first KB, then a byte every 50 ms, a transfer far from
 * its end. `respond` answers a request with it; `started` once it has; `closed` once the client hangs up.
 */
export function dripExport(zip: Buffer): { respond: (res: ServerResponse) => void; started: Promise<void>; closed: Promise<void> } {
  let started!: () => void;
  let closed!: () => void;
  return {
    started: new Promise<void>((r) => (started = r)),
    closed: new Promise<void>((r) => (closed = r)),
    respond: (res) => {
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': zip.length });
      res.write(zip.subarray(0, 1024));
      let at = 1024;
      const drip = setInterval(() => res.write(zip.subarray(at, ++at)), 50);
      res.on('close', () => (clearInterval(drip), closed()));
      started();
    },
  };
}

/** A logger that keeps each line's level, message and fields. */
export function recordingLog(): { log: Logger; lines: { level: string; msg: string; obj: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, msg, obj });
  return { log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as never, lines };
}

/**
 * A replica as server.ts builds one over `meta`: its policy in force (`policy`, none by default), its
 * feeds' notice applying through applyAdvisoryChanges from the generation last told (no source, not
 * started: a test calls notice()), and its SIGHUP's re-read.
 */
export async function replicaOver(meta: MetaStore, o: { policy?: Policy; owner?: string } = {}) {
  const live = new LivePolicy(o.policy ?? new Policy({}), await readAdvisories(meta), { file: 'x', sha256: 'x' });
  const feeds = new AdvisoryFeeds({
    meta,
    feed: {} as never,
    sources: [],
    intervalMs: 3_600_000,
    pollMs: 0,
    maxAgeMs: 0,
    apply: (signal, ids) => applyAdvisoryChanges(meta, live, quiet, ids, signal),
    owner: o.owner ?? 't',
    log: quiet,
  });
  (feeds as unknown as { generation: number }).generation = await meta.advisoriesTold();
  const sighup = async () => {
    if ((await feeds.notice()).length) return live.advisories.size;
    return reloadAdvisories(meta, live, quiet, feeds.signal).catch((e) => {
      if (feeds.signal.aborted) return live.advisories.size;
      throw e;
    });
  };
  return { live, feeds, sighup, generation: () => (feeds as unknown as { generation: number }).generation };
}
