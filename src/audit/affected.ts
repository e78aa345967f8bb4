import { PackageURL } from 'packageurl-js';
import { ConfigError } from '../config/load.js';
import { Advisories, type OsvRecord } from '../policy/advisories.js';
import { normalizeName } from '../names/pypi.js';
import type { Policy } from '../policy/index.js';
import { schemeOf } from '../versions/index.js';
import { advisoryPages } from '../storage/advisory-pages.js';
import type { MetaStore, PullFilter, StoredPullRecord } from '../storage/meta-store.js';
import { eachPull } from '../storage/pull-pages.js';

export interface AffectedImage {
  /** The image manifest's digest. */
  digest: string;
  /** Repositories it was pulled from, and the tags the policy aliases to it (or to an index over it). */
  repositories: string[];
  tags: string[];
  /** The affected packages inside it. */
  packages: { type: string; name: string; version: string; source: string | null }[];
}

export interface AffectedReport {
  query: string;
  advisory?: { id: string; aliases: string[]; summary: string; packages: string[]; withdrawn: boolean };
  /** Images whose inventory holds an affected package (OS packages of the advisory's release, or PyPI packages). */
  images: AffectedImage[];
  /** The pulls, newest first: every one, or the newest `keep` asked for (a console page). */
  pulls: StoredPullRecord[];
  /** Of every pull, however many are listed: how many, how many were served, to how many clients. */
  counts: { pulls: number; served: number; clientsServed: number };
}

/** The pulls of an answer as they are met: counted, and the newest `keep` of them held (all by default). */
class Answer {
  readonly rows: StoredPullRecord[] = [];
  readonly counts = { pulls: 0, served: 0, clientsServed: 0 };
  private readonly clients = new Set<string>();
  constructor(private readonly keep: number) {}

  add(p: StoredPullRecord): void {
    // A folded row (repeated identical refusals) stands for `count` pulls.
    this.counts.pulls += p.count ?? 1;
    if (p.decision === 'allow') {
      this.counts.served += p.count ?? 1;
      this.clients.add(p.client);
    }
    this.rows.push(p);
    if (this.rows.length >= 2 * this.keep) this.trim();
  }

  private trim(): void {
    this.rows.sort((a, b) => b.id - a.id);
    if (this.rows.length > this.keep) this.rows.length = this.keep;
  }

  done(): { pulls: StoredPullRecord[]; counts: AffectedReport['counts'] } {
    this.trim();
    this.counts.clientsServed = this.clients.size;
    return { pulls: this.rows, counts: this.counts };
  }
}

/** The inventory fields matching reads (src/image Inventory). */
interface StoredInventory {
  os?: { ecosystem?: string };
  packages: { type: string; name: string; version: string; source?: string; sourceVersion?: string }[];
}

const TYPE_OF_SCHEME: Record<string, string> = { deb: 'deb', apk: 'apk', rpm: 'rpm' };

/** The imported record `query` names: by id, else (the first) by alias or upstream id; the stored records read a page at a time (advisory-pages.ts). */
async function storedAdvisory(meta: MetaStore, query: string): Promise<OsvRecord | undefined> {
  let byAlias: OsvRecord | undefined;
  for await (const page of advisoryPages<OsvRecord>(meta)) {
    for (const r of page) {
      if (r.id === query) return r;
      if (!byAlias && [...(r.aliases ?? []), ...(r.upstream ?? [])].includes(query)) byAlias = r;
    }
  }
  return byAlias;
}

/**
 * "Who pulled the affected artefact?": every pull (served or refused) of what an advisory names,
 * or of one package URL, newest first; with `keep`, every pull counted and the newest `keep` listed.
 * `known`: the advisories the server has in force (the console), looked in first; only a record
 * not among them (withdrawn) is looked for in the store, whose records are read and parsed a page
 * at a time (storage/advisory-pages.ts: the server's event loop turns between pages).
 */
export async function affected(meta: MetaStore, query: string, policy?: Policy, keep = Number.POSITIVE_INFINITY, known?: Advisories): Promise<AffectedReport> {
  const answer = new Answer(keep);
  if (query.startsWith('pkg:')) {
    await eachPull(meta, purlFilter(query), (p) => answer.add(p));
    return { query, images: [], ...answer.done() };
  }
  const rec = known?.find(query) ?? (await storedAdvisory(meta, query));
  if (!rec) throw new ConfigError(`affected: no imported advisory ${JSON.stringify(query)} (import OSV records with: airlock advisories import PATH)`);
  if (rec.withdrawn) {
    return {
      query,
      advisory: { id: rec.id, aliases: rec.aliases ?? [], summary: rec.summary ?? '', packages: [], withdrawn: true },
      images: [],
      ...answer.done(),
    };
  }
  const adv = new Advisories([rec]);
  const packages = adv.packagesOf(rec);
  const hashes = new Set(adv.hashesOf(rec));
  // Every row of the named packages, then the rows of the listed hashes and of the images' digests:
  // a row under a named package was met by the first pass; any other may be met twice (two
  // affected images can share a parent index), so those are kept by id.
  const names = new Set(packages);
  for (const name of names) {
    await eachPull(meta, { ecosystem: 'pypi', name }, (p) => {
      const byVersion = p.version ? adv.matchPypi(name, p.version).some((m) => m.id === rec.id) : false;
      if (byVersion || (p.sha256 && hashes.has(p.sha256))) answer.add(p);
    });
  }
  const ids = new Set<number>();
  const addOnce = (p: StoredPullRecord) => {
    if ((p.ecosystem === 'pypi' && names.has(p.name)) || ids.has(p.id)) return;
    ids.add(p.id);
    answer.add(p);
  };
  for (const h of hashes) await eachPull(meta, { sha256: h }, addOnce);
  const images = await affectedImages(meta, adv, rec, policy);
  for (const img of images) {
    const digests = new Set([img.digest]);
    for (const repo of img.repositories) for (const p of await meta.getOciParents(repo, img.digest)) digests.add(p.parent);
    for (const d of digests) await eachPull(meta, { ecosystem: 'oci', sha256: d.slice(7) }, addOnce);
  }
  const osPackages = adv.osPackagesOf(rec).map((p) => `${p.ecosystem} ${p.name}`);
  return {
    query,
    advisory: {
      id: rec.id,
      aliases: [...new Set([...(rec.aliases ?? []), ...(rec.upstream ?? [])])],
      summary: rec.summary ?? '',
      packages: [...packages, ...osPackages],
      withdrawn: false,
    },
    images,
    ...answer.done(),
  };
}

/**
 * Parsed stored inventories, by manifest digest, shared by the advisories of one evaluation pass
 * (alerts/evaluate.ts): a pass over 1,000 Debian advisories would otherwise read and parse every
 * image's inventory again for each advisory naming one of its packages. Kept for the pass only,
 * and bounded by the packages held (about 250 bytes each parsed): once `maxPackages` are held, a
 * further inventory is parsed for the call and not kept (never evicting, so a pass that walks more
 * images than fit still keeps those it holds, rather than each evicting the next one needed).
 */
export class InventoryCache {
  private readonly parsed = new Map<string, StoredInventory | null>();
  private held = 0;
  constructor(
    private readonly meta: MetaStore,
    private readonly maxPackages = 250_000,
  ) {}

  async get(digest: string): Promise<StoredInventory | null> {
    if (this.parsed.has(digest)) return this.parsed.get(digest) ?? null;
    const s = await this.meta.inventories.getInventory(digest);
    const inv = s ? (JSON.parse(s.inventory) as StoredInventory) : null;
    const size = inv?.packages.length ?? 0;
    if (this.held + size <= this.maxPackages) {
      this.parsed.set(digest, inv);
      this.held += size;
    }
    return inv;
  }
}

/** Images (by stored inventory) holding a package the advisory affects, at an affected version. */
export async function affectedImages(
  meta: MetaStore,
  adv: Advisories,
  rec: OsvRecord,
  policy: Policy | undefined,
  inventories: InventoryCache = new InventoryCache(meta),
): Promise<AffectedImage[]> {
  const candidates = new Map<string, AffectedImage>();
  const inventory = (digest: string) => inventories.get(digest);
  const add = (digest: string, pkg: AffectedImage['packages'][number]) => {
    const img = candidates.get(digest) ?? { digest, repositories: [], tags: [], packages: [] };
    if (!img.packages.some((p) => p.type === pkg.type && p.name === pkg.name)) img.packages.push(pkg);
    candidates.set(digest, img);
  };
  for (const { ecosystem, name } of adv.osPackagesOf(rec)) {
    const scheme = schemeOf(ecosystem);
    if (!scheme) continue;
    for (const row of await meta.inventories.imagesWithPackage(TYPE_OF_SCHEME[scheme], name)) {
      const inv = await inventory(row.digest);
      if (inv?.os?.ecosystem !== ecosystem) continue;
      const pkg = inv.packages.find((p) => p.type === TYPE_OF_SCHEME[scheme] && p.name === row.name && p.version === row.version);
      if (pkg && adv.matchOs(ecosystem, pkg).some((m) => m.id === rec.id))
        add(row.digest, { type: pkg.type, name: pkg.name, version: pkg.version, source: pkg.source ?? null });
    }
  }
  for (const name of adv.packagesOf(rec)) {
    for (const row of await meta.inventories.imagesWithPackage('pypi', name)) {
      if (adv.matchPypi(name, row.version).some((m) => m.id === rec.id)) add(row.digest, { type: 'pypi', name: row.name, version: row.version, source: null });
    }
  }
  for (const img of candidates.values()) {
    const repositories = new Set<string>();
    await eachPull(meta, { ecosystem: 'oci', sha256: img.digest.slice(7) }, (p) => repositories.add(p.name));
    img.repositories = [...repositories].sort();
    if (policy) {
      for (const repo of img.repositories) {
        const digests = new Set([img.digest, ...(await meta.getOciParents(repo, img.digest)).map((p) => p.parent)]);
        for (const tag of policy.oci.tags(repo)) {
          const d = policy.oci.resolveTag(repo, tag).digest;
          if (d && digests.has(d)) img.tags.push(`${repo}:${tag}`);
        }
      }
    }
  }
  return [...candidates.values()].sort((a, b) => a.digest.localeCompare(b.digest));
}

/** The search for pulls of one package URL: pkg:pypi/NAME[@VERSION], pkg:huggingface/ORG/NAME[@COMMIT], pkg:oci/NAME[@sha256:...]?repository_url=... */
function purlFilter(s: string): PullFilter {
  let p: PackageURL;
  try {
    p = PackageURL.fromString(s);
  } catch (e) {
    throw new ConfigError(`affected: ${JSON.stringify(s)} is not a package URL: ${(e as Error).message}`);
  }
  const f: PullFilter = {};
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
  return f;
}
