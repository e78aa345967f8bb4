import { readdirSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../config/load.js';
import { fileHandleBytes } from '../core/bytes.js';
import type { OsvRecord } from '../policy/advisories.js';
import { readEntry, readZip } from '../scan/zip.js';
import type { AdvisoryStore } from '../storage/meta-store.js';

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
  const changed = await meta.putAdvisories(recs.map((r) => ({ id: r.id, modified: r.modified ?? '', record: JSON.stringify(r) })));
  return { read: recs.length, changed, withdrawn: recs.filter((r) => r.withdrawn).length, skipped };
}
