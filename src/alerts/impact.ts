import { affectedImages, InventoryCache } from '../audit/affected.js';
import { Advisories, type AdvisoryMatch, type OsvRecord } from '../policy/advisories.js';
import type { Policy } from '../policy/index.js';
import type { MetaStore, StoredPullRecord } from '../storage/meta-store.js';
import { eachPull } from '../storage/pull-pages.js';

/**
 * "What changed, for whom" (issue 28): for one advisory, the artefacts Airlock served that it
 * affects, each with the clients that pulled it and when. PyPI releases come from the pull record
 * (every served file of an affected version, or a file whose hash a MAL- record lists); images
 * from their stored inventories (audit/affected.ts affectedImages, the same answer `airlock
 * affected` gives; the image gate re-judges them itself on their next pull).
 */
export interface ClientPulls {
  client: string;
  pulls: number;
  /** First and last served pull (ms). */
  first: number;
  last: number;
}

export interface Impact {
  /** The outbox key: "pkg:pypi/NAME@VERSION" or "oci:sha256:...". */
  artefact: string;
  kind: 'pypi' | 'oci' | 'hf';
  /** The package (PyPI name; for an image, the affected packages inside it). */
  ecosystem: string;
  packages: { name: string; version: string }[];
  fixed: string | null;
  severity: AdvisoryMatch['severity'];
  malicious: boolean;
  /** PyPI: the files served (name and sha256); an image: its manifest digest. */
  files: { filename: string | null; sha256: string }[];
  /** An image: the repositories it was pulled from and the tags the policy aliases to it. */
  repositories: string[];
  tags: string[];
  clients: ClientPulls[];
}

/** Pulls counted per client as rows are read (pull-pages.ts): no row is kept. */
export class ClientTally {
  private readonly by = new Map<string, ClientPulls>();

  add(p: StoredPullRecord): void {
    const last = p.lastTs ?? p.ts;
    const c = this.by.get(p.client);
    if (!c) this.by.set(p.client, { client: p.client, pulls: p.count ?? 1, first: p.ts, last });
    else Object.assign(c, { pulls: c.pulls + (p.count ?? 1), first: Math.min(c.first, p.ts), last: Math.max(c.last, last) });
  }

  list(): ClientPulls[] {
    return [...this.by.values()].sort((a, b) => a.client.localeCompare(b.client));
  }
}

export function clientsOf(pulls: StoredPullRecord[]): ClientPulls[] {
  const t = new ClientTally();
  for (const p of pulls) t.add(p);
  return t.list();
}

/**
 * The artefacts one (not withdrawn) advisory affects among those served, and who pulled them.
 * `inventories`: parsed inventories shared across the advisories of one evaluation pass.
 */
export async function impactOf(meta: MetaStore, rec: OsvRecord, policy?: Policy, inventories: InventoryCache = new InventoryCache(meta)): Promise<Impact[]> {
  if (rec.withdrawn) return [];
  const adv = new Advisories([rec]);
  const out: Impact[] = [];
  const pypi = new Map<string, { name: string; version: string; match: AdvisoryMatch; clients: ClientTally; files: Map<string, string | null> }>();
  const addPypi = (p: StoredPullRecord) => {
    // A PEP 658 metadata file (pip reads it while resolving) is not the release itself.
    if (p.decision !== 'allow' || !p.version || p.filename?.endsWith('.metadata')) return;
    const match = adv.matchPypi(p.name, p.version, p.sha256 ?? undefined).find((m) => m.id === rec.id);
    if (!match) return;
    const key = `pkg:pypi/${p.name}@${p.version}`;
    const e = pypi.get(key) ?? { name: p.name, version: p.version, match, clients: new ClientTally(), files: new Map<string, string | null>() };
    e.clients.add(p);
    if (p.sha256) e.files.set(p.sha256, p.filename ?? null);
    pypi.set(key, e);
  };
  // Every row of the named packages, then the rows of the listed hashes under other names: a row
  // counts once, and nothing is held per row (a popular release has 100,000s of them).
  const names = new Set(adv.packagesOf(rec).filter((n) => !n.includes(' '))); // "<ecosystem> <name>": an OS package, images below
  // Not filtered by decision in the query: the (decision, ecosystem, id) index would walk every served row; addPypi keeps the served ones.
  for (const name of names) await eachPull(meta, { ecosystem: 'pypi', name }, addPypi);
  for (const h of adv.hashesOf(rec)) await eachPull(meta, { ecosystem: 'pypi', sha256: h }, (p) => names.has(p.name) || addPypi(p));
  for (const [artefact, e] of [...pypi].sort(([a], [b]) => a.localeCompare(b))) {
    out.push({
      artefact,
      kind: 'pypi',
      ecosystem: 'PyPI',
      packages: [{ name: e.name, version: e.version }],
      fixed: e.match.fixed ?? null,
      severity: e.match.severity,
      malicious: e.match.malicious,
      files: [...e.files].map(([sha256, filename]) => ({ filename, sha256 })).sort((a, b) => a.sha256.localeCompare(b.sha256)),
      repositories: [],
      tags: [],
      clients: e.clients.list(),
    });
  }
  for (const img of await affectedImages(meta, adv, rec, policy, inventories)) {
    const digests = new Set([img.digest]);
    for (const repo of img.repositories) for (const p of await meta.getOciParents(repo, img.digest)) digests.add(p.parent);
    const clients = new ClientTally();
    let served = 0;
    for (const d of digests) await eachPull(meta, { ecosystem: 'oci', sha256: d.slice(7), decision: 'allow' }, (p) => (served++, clients.add(p)));
    if (!served) continue;
    const inv = await inventories.get(img.digest);
    const ecosystem = inv?.os?.ecosystem ?? 'PyPI';
    const matches = img.packages.flatMap((p) =>
      (p.type === 'pypi'
        ? adv.matchPypi(p.name, p.version)
        : adv.matchOs(ecosystem, { name: p.name, version: p.version, source: p.source ?? undefined })
      ).filter((m) => m.id === rec.id),
    );
    out.push({
      artefact: `oci:${img.digest}`,
      kind: 'oci',
      ecosystem: img.packages.every((p) => p.type === 'pypi') ? 'PyPI' : ecosystem,
      packages: img.packages.map((p) => ({ name: p.name, version: p.version })),
      fixed: matches.find((m) => m.fixed)?.fixed ?? null,
      severity: matches[0]?.severity ?? {},
      malicious: matches.some((m) => m.malicious),
      files: [{ filename: null, sha256: img.digest }],
      repositories: img.repositories,
      tags: img.tags,
      clients: clients.list(),
    });
  }
  return out;
}
