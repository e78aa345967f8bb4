import { PackageURL } from 'packageurl-js';
import { ConfigError } from '../config/load.js';
import { Advisories, type OsvRecord } from '../policy/advisories.js';
import { normalizeName } from '../names/pypi.js';
import type { MetaStore, PullFilter, StoredPullRecord } from '../storage/meta-store.js';

export interface AffectedReport {
  query: string;
  advisory?: { id: string; aliases: string[]; summary: string; packages: string[]; withdrawn: boolean };
  pulls: StoredPullRecord[];
}

const ALL = 1_000_000;

/**
 * "Who pulled the affected artefact?": every pull (served or refused) of what an advisory names,
 * or of one package URL, newest first.
 */
export async function affected(meta: MetaStore, query: string): Promise<AffectedReport> {
  if (query.startsWith('pkg:')) return { query, pulls: await pullsOfPurl(meta, query) };
  const records = (await meta.listAdvisories()).map((j) => JSON.parse(j) as OsvRecord);
  const rec = records.find((r) => r.id === query) ?? records.find((r) => (r.aliases ?? []).includes(query));
  if (!rec) throw new ConfigError(`affected: no imported advisory ${JSON.stringify(query)} (import OSV records with: airlock advisories import PATH)`);
  if (rec.withdrawn) {
    return { query, advisory: { id: rec.id, aliases: rec.aliases ?? [], summary: rec.summary ?? '', packages: [], withdrawn: true }, pulls: [] };
  }
  const adv = new Advisories([rec]);
  const packages = adv.packagesOf(rec);
  const hashes = new Set(adv.hashesOf(rec));
  const rows: StoredPullRecord[] = [];
  for (const name of packages) {
    for (const p of await meta.listPulls({ ecosystem: 'pypi', name, limit: ALL })) {
      const byVersion = p.version ? adv.matchPypi(name, p.version).some((m) => m.id === rec.id) : false;
      if (byVersion || (p.sha256 && hashes.has(p.sha256))) rows.push(p);
    }
  }
  for (const h of hashes) {
    for (const p of await meta.listPulls({ sha256: h, limit: ALL })) if (!rows.some((r) => r.id === p.id)) rows.push(p);
  }
  rows.sort((a, b) => b.id - a.id);
  return { query, advisory: { id: rec.id, aliases: rec.aliases ?? [], summary: rec.summary ?? '', packages, withdrawn: false }, pulls: rows };
}

/** Pulls of one package URL: pkg:pypi/NAME[@VERSION], pkg:huggingface/ORG/NAME[@COMMIT], pkg:oci/NAME[@sha256:...]?repository_url=... */
async function pullsOfPurl(meta: MetaStore, s: string): Promise<StoredPullRecord[]> {
  let p: PackageURL;
  try {
    p = PackageURL.fromString(s);
  } catch (e) {
    throw new ConfigError(`affected: ${JSON.stringify(s)} is not a package URL: ${(e as Error).message}`);
  }
  const f: PullFilter = { limit: ALL };
  if (p.type === 'pypi') {
    Object.assign(f, { ecosystem: 'pypi', name: normalizeName(p.name) });
    if (p.version) f.version = p.version;
  } else if (p.type === 'huggingface') {
    const repo = p.namespace ? `${p.namespace}/${p.name}` : p.name;
    const dataset = p.qualifiers?.repository_type === 'dataset';
    Object.assign(f, { ecosystem: 'hf', name: dataset ? `datasets/${repo}` : repo });
    if (p.version) f.version = p.version;
  } else if (p.type === 'oci') {
    f.ecosystem = 'oci';
    if (p.version?.startsWith('sha256:')) f.sha256 = p.version.slice(7);
    const repoUrl = p.qualifiers?.repository_url;
    if (repoUrl) f.name = repoUrl;
  } else {
    throw new ConfigError(`affected: package URL type ${p.type} is not one Airlock serves (pypi, huggingface, oci)`);
  }
  return meta.listPulls(f);
}
