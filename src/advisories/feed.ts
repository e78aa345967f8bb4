import { bufferBytes } from '../core/bytes.js';
import { AirlockError } from '../core/errors.js';
import { slicer } from '../core/turns.js';
import type { OsvRecord } from '../policy/advisories.js';
import type { AdvisoryRow } from '../storage/meta-store.js';
import { readEntry, readZip } from '../scan/zip.js';
import { readBoundedBytes, redact, type UpstreamHttp } from '../upstream/http.js';
import { checkOsvRecord, modifiedSince, normTime, olderThan } from './osv.js';

/** One configured feed: an OSV export in osv.dev's layout (config/advisories-schema.ts). */
export interface FeedSource {
  name: string;
  url: string;
  ecosystem: string;
  incremental: boolean;
}

export interface FeedLimits {
  /** Largest all.zip or modified_id.csv, in bytes. */
  maxBytes: number;
  /** Time for one whole download. */
  timeoutMs: number;
  /** More changed records than this: fetch all.zip instead. */
  maxIncremental: number;
}

/**
 * What a fetch brought: every record verified, one per id, each held as the row it is stored as (its
 * JSON: 20,000 records held parsed until written were ~10 live objects each, and the young
 * generation's collections that copied them stopped the event loop for up to 90 ms at a time, the
 * longest stretches of a sync), and the newest `modified` time among them (normalised, osv.ts).
 */
export interface FeedFetch {
  mode: 'full' | 'incremental';
  records: AdvisoryRow[];
  highWater: string | null;
  /** Files requested (all.zip, modified_id.csv, each record's .json): for the log. */
  requests: number;
}

/** One record in a zip entry may be at most this large (the largest osv.dev records are a few MB). */
const MAX_RECORD_BYTES = 16 << 20;
/** all.zip's records may inflate to this many times advisories.max_bytes (OSV JSON deflates about 5 to 10 times). */
const INFLATE_RATIO = 16;
/** Record files fetched at once by an incremental sync. */
const PARALLEL = 4;

/**
 * Fetches an OSV export through the upstream client (its breaker, its per-host connections, the
 * bounded read with a deadline), only from the source's own host, and verifies everything before
 * returning anything: the zip's structure and every entry's CRC and size (scan/zip.ts), every
 * record's schema (osv.ts). Any failure throws: the caller imports nothing and keeps its data.
 * `signal` cuts a fetch short (a stop of the feeds): the download is abandoned, its connection
 * closed, and reading stops at the next slice; the fetch throws.
 */
export class OsvFeed {
  constructor(
    private readonly http: UpstreamHttp,
    private readonly limits: FeedLimits,
  ) {}

  /** The whole export (all.zip). */
  async full(s: FeedSource, signal?: AbortSignal): Promise<FeedFetch> {
    const zip = await this.fetch(s, 'all.zip', this.limits.maxBytes, signal);
    const src = bufferBytes(zip);
    const records: AdvisoryRow[] = [];
    // Read, inflated, parsed and checked in slices: 20,000 records at once stopped the server's event loop ~1.4 s (core/turns.ts).
    const slice = slicer();
    let entries;
    try {
      entries = await readZip(src, slice);
    } catch (e) {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: all.zip is not a sound zip archive (truncated or corrupt): ${(e as Error).message}`);
    }
    // The records are held in memory until imported: all of them together may inflate to INFLATE_RATIO x max_bytes.
    // Checked before inflating anything (readEntry holds each entry to the size the directory declares).
    const maxInflated = this.limits.maxBytes * INFLATE_RATIO;
    const inflated = entries.reduce((n, e) => (e.name.endsWith('.json') ? n + e.size : n), 0);
    if (inflated > maxInflated)
      throw new AirlockError(
        'UPSTREAM_BAD_RESPONSE',
        `${s.name}: all.zip's records inflate to ${inflated} bytes, over ${maxInflated} (${INFLATE_RATIO} x advisories.max_bytes)`,
      );
    let highWater: string | null = null;
    const at = new Map<string, number>();
    for (const e of entries) {
      await slice();
      signal?.throwIfAborted();
      if (!e.name.endsWith('.json')) continue;
      let text: string;
      try {
        text = (await readEntry(src, e, MAX_RECORD_BYTES)).toString('utf8');
      } catch (err) {
        throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: all.zip: ${(err as Error).message}`);
      }
      const rec = this.check(s, text, `all.zip:${e.name}`);
      if (!rec) continue;
      keepNewest(records, at, rec);
      highWater = newer(highWater, rec.modified);
    }
    if (entries.length > 0 && records.length === 0) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: all.zip holds no OSV record`);
    return { mode: 'full', records, highWater, requests: 1 };
  }

  /**
   * What changed after `since` (modified_id.csv, then each changed record); null when that is more than maxIncremental records.
   * A record listed at the mark itself is fetched unless `known` (the store's modified times by id) already holds it at that time.
   */
  async changed(s: FeedSource, since: string, known?: (ids: string[]) => Promise<Map<string, string>>, signal?: AbortSignal): Promise<FeedFetch | null> {
    const csv = (await this.fetch(s, 'modified_id.csv', this.limits.maxBytes, signal)).toString('utf8');
    let todo: { id: string; modified: string }[];
    try {
      todo = modifiedSince(csv, since, { ecosystem: s.ecosystem, notAfter: notAfter() });
    } catch (e) {
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: ${(e as Error).message}`);
    }
    const atMark = todo.filter((t) => t.modified === since).map((t) => t.id);
    if (atMark.length && known) {
      const have = await known(atMark);
      todo = todo.filter((t) => t.modified !== since || normTime(have.get(t.id) ?? '') !== t.modified);
    }
    if (todo.length > this.limits.maxIncremental) return null;
    const records: AdvisoryRow[] = [];
    const at = new Map<string, number>();
    for (let i = 0; i < todo.length; i += PARALLEL) {
      signal?.throwIfAborted();
      const batch = await Promise.all(
        todo.slice(i, i + PARALLEL).map(async ({ id }) => {
          const rec = this.check(s, (await this.fetch(s, `${id}.json`, MAX_RECORD_BYTES, signal)).toString('utf8'), `${id}.json`);
          if (rec && rec.id !== id) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: ${id}.json holds record ${rec.id}`);
          return rec;
        }),
      );
      for (const r of batch) if (r) keepNewest(records, at, r);
    }
    // The mark moves to the newest time the index listed, even for a staging record skipped.
    const listed = todo.reduce<string | null>((m, t) => (m === null || t.modified > m ? t.modified : m), null);
    return { mode: 'incremental', records, highWater: listed ?? since, requests: 1 + todo.length };
  }

  /** A record verified, null for a staging record (MAL-0000-...); throws on anything else wrong. */
  private check(s: FeedSource, text: string, where: string): OsvRecord | null {
    const rec = checkOsvRecord(text, where);
    if (typeof rec === 'string') throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: ${rec}`);
    const modified = normTime(rec.modified!)!;
    if (modified > notAfter()) throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: ${where}: ${rec.id} is modified in the future (${modified})`);
    return /^MAL-0000-/.test(rec.id) ? null : rec;
  }

  private async fetch(s: FeedSource, file: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
    const base = new URL(s.url.endsWith('/') ? s.url : `${s.url}/`);
    const url = new URL(`${encodeURIComponent(s.ecosystem)}/${file}`, base);
    // The signal also ends a body being read: Node's request, aborted after its response, destroys the response.
    const res = await this.http.get(url, { allowUrl: (u) => u.host === base.host && (u.protocol === base.protocol || u.protocol === 'https:'), signal });
    if (res.status !== 200) {
      res.body.resume();
      throw new AirlockError('UPSTREAM_BAD_RESPONSE', `${s.name}: ${redact(url)} answered ${res.status}`);
    }
    return readBoundedBytes(res.body, maxBytes, this.limits.timeoutMs);
  }
}

/** Clocks may differ this much: a feed time later than now by more is refused (it would hold the high-water mark past later changes). */
const CLOCK_SKEW_MS = 5 * 60_000;

/** The latest acceptable feed time, normalised (osv.ts normTime). */
export function notAfter(now = Date.now()): string {
  return normTime(new Date(now + CLOCK_SKEW_MS).toISOString())!;
}

/**
 * `r` as the row it is stored as, one per id (`at`: the index of each id's row): an export may hold
 * a record twice (under two paths of all.zip); the newer copy is kept, the later read when as new
 * (as `airlock advisories import` does). Both written, the one in a later batch, or the later of one
 * batch, was stored whatever its age, and the sync counted two changes.
 */
function keepNewest(rows: AdvisoryRow[], at: Map<string, number>, r: OsvRecord): void {
  const row = { id: r.id, modified: r.modified ?? '', record: JSON.stringify(r) };
  const i = at.get(r.id);
  if (i === undefined) at.set(r.id, rows.push(row) - 1);
  else if (!olderThan(row.modified, rows[i].modified)) rows[i] = row;
}

/** The newer of `m` and a record's `modified`, normalised (osv.ts normTime). */
function newer(m: string | null, modified: string | undefined): string | null {
  const t = modified ? normTime(modified) : null;
  return t && (m === null || t > m) ? t : m;
}
