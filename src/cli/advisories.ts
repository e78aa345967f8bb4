import { readdirSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { ConfigError } from '../config/load.js';
import { fileHandleBytes } from '../core/bytes.js';
import type { OsvRecord } from '../policy/advisories.js';
import { readEntry, readZip } from '../scan/zip.js';
import type { AdvisoryRow, AdvisoryStore } from '../storage/meta-store.js';

export interface ImportResult {
  read: number;
  changed: number;
  withdrawn: number;
  skipped: string[];
}

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

/**
 * Rows per write transaction of an import. A running server writes its pull rows to the same
 * database and, while another process holds the write lock, waits for it with its event loop
 * stopped (SQLite's busy timeout): one transaction for a 20,000-record import held it 1.4 s, and
 * every client of the server waited that long. A batch holds it for milliseconds, and the import
 * then pauses as long as the batch took, so the server's writes get in between (a 50% share).
 * Each batch is a generation of its own: a server may apply an import in parts, never a torn record.
 */
const IMPORT_BATCH = 250;

async function putInTurns(meta: AdvisoryStore, rows: AdvisoryRow[]): Promise<number> {
  let changed = 0;
  for (let at = 0; at < rows.length; at += IMPORT_BATCH) {
    const t0 = performance.now();
    changed += await meta.putAdvisories(rows.slice(at, at + IMPORT_BATCH));
    if (at + IMPORT_BATCH < rows.length) await sleep(Math.min(50, performance.now() - t0));
  }
  return changed;
}

/**
 * Import OSV records: a directory tree of .json files (ossf/malicious-packages, a checkout of
 * advisories) or the per-ecosystem zip that osv.dev exports (PyPI/all.zip). Withdrawn records
 * are stored but never match.
 */
export async function importAdvisories(meta: AdvisoryStore, path: string): Promise<ImportResult> {
  const skipped: string[] = [];
  const recs: OsvRecord[] = [];
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ConfigError(`advisories import: ${path}: no such file or directory`);
  }
  if (st.isDirectory()) {
    for (const f of walk(path)) {
      const r = parseRecord(readFileSync(f, 'utf8'), f, skipped);
      if (r) recs.push(r);
    }
  } else if (path.endsWith('.zip')) {
    const fh = await open(path, 'r');
    try {
      const src = fileHandleBytes(fh, st.size);
      for (const e of await readZip(src)) {
        if (!e.name.endsWith('.json')) continue;
        const r = parseRecord((await readEntry(src, e, 16 << 20)).toString('utf8'), `${path}:${e.name}`, skipped);
        if (r) recs.push(r);
      }
    } finally {
      await fh.close();
    }
  } else {
    const r = parseRecord(readFileSync(path, 'utf8'), path, skipped);
    if (r) recs.push(r);
  }
  const changed = await putInTurns(
    meta,
    recs.map((r) => ({ id: r.id, modified: r.modified ?? '', record: JSON.stringify(r) })),
  );
  return { read: recs.length, changed, withdrawn: recs.filter((r) => r.withdrawn).length, skipped };
}
