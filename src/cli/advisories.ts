import { readdirSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { olderThan } from '../advisories/osv.js';
import { ConfigError } from '../config/load.js';
import { fileHandleBytes } from '../core/bytes.js';
import type { OsvRecord } from '../policy/advisories.js';
import { ScanError } from '../scan/source.js';
import { readEntry, readZip } from '../scan/zip.js';
import { advisoryBatches } from '../storage/advisory-pages.js';
import type { AdvisoryRow, AdvisoryStore, OlderThan } from '../storage/meta-store.js';

export interface ImportResult {
  read: number;
  changed: number;
  /** Withdrawn records read and stored (new, changed or already as read): a withdrawn copy left out as older is not counted. */
  withdrawn: number;
  /** Records not written because the store holds a newer copy (0 with `replace`). */
  older: number;
  skipped: string[];
}

export interface ImportOptions {
  /**
   * Write every record read, even over a newer stored copy (an operator's deliberate rollback).
   * Without it an older copy is left out: an import of an old checkout or export un-withdrew
   * withdrawn records and undid a feed's updates, and the feeds' later incremental syncs never
   * restored them (they take only what is newer than their mark).
   */
  replace?: boolean;
}

/**
 * A string both stores keep as given: PostgreSQL refuses a NUL (the import stopped there, with the
 * batches before it committed), and a lone surrogate is stored as bytes SQLite reads back as U+FFFD
 * (the paged reader's cursor then jumped past the records after it; PostgreSQL made two ids one).
 */
const storable = (s: string) => !/[\0\uD800-\uDFFF]/u.test(s);
/** OSV ids are short (the feeds take 128 characters); PostgreSQL indexes at most 2,704 bytes of one. */
const MAX_ID = 256;

function parseRecord(text: string, where: string, skipped: string[]): OsvRecord | null {
  let rec: OsvRecord;
  try {
    rec = JSON.parse(text) as OsvRecord;
  } catch {
    skipped.push(`${where}: not JSON`);
    return null;
  }
  if (!rec || typeof rec.id !== 'string' || (rec.affected !== undefined && !Array.isArray(rec.affected))) {
    skipped.push(`${where}: not an OSV record (no id)`);
    return null;
  }
  if (!storable(rec.id) || rec.id.length > MAX_ID) {
    skipped.push(`${where}: an id that cannot be stored as given (a NUL, a lone surrogate, or over ${MAX_ID} characters)`);
    return null;
  }
  // Written to a column of its own (SQLite refused a boolean or an object there, mid-import).
  if (rec.modified != null && (typeof rec.modified !== 'string' || !storable(rec.modified))) {
    skipped.push(`${where}: ${rec.id}: "modified" is not a string`);
    return null;
  }
  // Staging names from the malicious-packages history, before an id was assigned.
  if (/^MAL-0000-/.test(rec.id)) {
    skipped.push(`${where}: staging record ${rec.id}`);
    return null;
  }
  return rec;
}

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (name.endsWith('.json')) yield p;
  }
}

/** The shortest pause between two of an import's write batches (putInTurns): longer than any sleep of SQLite's busy handler in its first 103 ms. */
const PAUSE_MIN_MS = 30;

/**
 * An import stopped by a store error part of the way through (a write lock held past the busy
 * timeout, a dropped connection, a full disk): the batches before it stay written. It ended in a
 * stack trace that said nothing of them; the command says in one line what was written and left
 * out, and that a second run finishes it (the written copies are identical by then: not counted).
 */
export class ImportCutShort extends Error {
  constructor(
    readonly of: number,
    readonly done: { rows: number; changed: number; left: Set<string> },
    cause: unknown,
  ) {
    const why = String((cause as Error)?.message ?? cause).replace(/\s*\n\s*/g, ' ');
    super(
      `stopped by a store error after ${done.rows} of ${of} records (${done.changed} new or changed, ${done.left.size} left out as older than the copy stored): ` +
        `those stay written, the rest were not; run it again to finish (${why})`,
      { cause },
    );
  }
}

/**
 * An import's rows in write batches (storage/advisory-pages.ts). A running server writes its pull
 * rows to the same database and, while another process holds the write lock, waits for it with its
 * event loop stopped (SQLite's busy timeout): one transaction for a 20,000-record import held it
 * 1.4 s. After each batch the import pauses as long as the batch took (a 50% share), and at least
 * PAUSE_MIN_MS: a waiting server does not watch the lock, it tries again after each sleep of its
 * busy handler (1, 2, 5, 10, 15, 20, 25, 25, 25 ms in its first 103 ms of waiting; then 50, 50,
 * then 100 each), and a pause shorter than the sleep under way could pass unseen, the next batch
 * taking the lock again while the server slept on. Without `replace`, a row older than its stored
 * copy is left out (judged by the store inside the batch's transaction), counted only once its
 * batch commits.
 */
async function putInTurns(meta: AdvisoryStore, rows: AdvisoryRow[], replace: boolean): Promise<{ rows: number; changed: number; left: Set<string> }> {
  // `left`: the ids left out as older (one row per id: keepNewest), committed batches only.
  const done = { rows: 0, changed: 0, left: new Set<string>() };
  let older: string[] = [];
  // Asked by the store of a record with a stored copy, once per write.
  const counted: OlderThan = (given, held, id) => {
    const is = olderThan(given, held);
    if (is) older.push(id);
    return is;
  };
  let took = -1;
  for (const batch of advisoryBatches(rows)) {
    if (took >= 0) await sleep(Math.max(PAUSE_MIN_MS, took));
    const t0 = performance.now();
    older = [];
    try {
      done.changed += await meta.putAdvisories(batch, undefined, replace ? undefined : counted);
    } catch (e) {
      throw new ImportCutShort(rows.length, done, e);
    }
    for (const id of older) done.left.add(id);
    done.rows += batch.length;
    took = performance.now() - t0;
  }
  return done;
}

/**
 * One record per id: the newest by `modified`, the later read when as new. An import with two
 * copies of a record (an osv.dev export beside a checkout of its source) wrote both, one after the
 * other, on every run: a re-import changed it again, the older could end in force, and between two
 * batches the other was (a withdrawn record live again).
 */
function keepNewest(byId: Map<string, { rec: OsvRecord; where: string }>, rec: OsvRecord | null, where: string, skipped: string[]): void {
  if (!rec) return;
  const had = byId.get(rec.id);
  const modified = (r: OsvRecord) => (typeof r.modified === 'string' ? r.modified : '');
  if (had) {
    const older = olderThan(modified(rec), modified(had.rec));
    skipped.push(`${older ? where : had.where}: ${rec.id}: another copy is kept (${older ? had.where : where}, the newer or the later read)`);
    if (older) return;
  }
  byId.set(rec.id, { rec, where });
}

/**
 * Import OSV records: a directory tree of .json files (ossf/malicious-packages, a checkout of
 * advisories) or the per-ecosystem zip that osv.dev exports (PyPI/all.zip). Withdrawn records
 * are stored but never match. A record older than the stored copy is left out (counted in `older`)
 * unless `opts.replace`: the stores compare inside each batch's transaction, as a feed sync's writes do.
 */
export async function importAdvisories(meta: AdvisoryStore, path: string, opts: ImportOptions = {}): Promise<ImportResult> {
  const skipped: string[] = [];
  const byId = new Map<string, { rec: OsvRecord; where: string }>();
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ConfigError(`advisories import: ${path}: no such file or directory`);
  }
  if (st.isDirectory()) {
    for (const f of walk(path)) {
      keepNewest(byId, parseRecord(readFileSync(f, 'utf8'), f, skipped), f, skipped);
    }
  } else if (path.endsWith('.zip')) {
    const fh = await open(path, 'r');
    try {
      const src = fileHandleBytes(fh, st.size);
      for (const e of await readZip(src)) {
        if (!e.name.endsWith('.json')) continue;
        const where = `${path}:${e.name}`;
        keepNewest(byId, parseRecord((await readEntry(src, e, 16 << 20)).toString('utf8'), where, skipped), where, skipped);
      }
    } catch (e) {
      // Not a zip, cut short, or an entry that fails its CRC: the operator's file, said in one line.
      if (e instanceof ScanError) throw new ConfigError(`advisories import: ${path}: ${e.message}`);
      throw e;
    } finally {
      await fh.close();
    }
  } else {
    keepNewest(byId, parseRecord(readFileSync(path, 'utf8'), path, skipped), path, skipped);
  }
  const recs = [...byId.values()].map((k) => k.rec);
  const { changed, left } = await putInTurns(
    meta,
    recs.map((r) => ({ id: r.id, modified: r.modified ?? '', record: JSON.stringify(r) })),
    opts.replace === true,
  );
  // Withdrawn among the records now stored as read: a withdrawn copy left out (older) is not kept.
  return { read: recs.length, changed, withdrawn: recs.filter((r) => r.withdrawn && !left.has(r.id)).length, older: left.size, skipped };
}
