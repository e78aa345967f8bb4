import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pino } from 'pino';
import tar from 'tar-stream';
import { loadConfig, ConfigError, type LoadedConfig } from '../config/load.js';
import type { LayerFacts } from '../image/facts.js';
import { applyLayers, type Inventory } from '../image/inventory.js';
import { readLayer } from '../image/layer.js';
import { openMeta, withOciUpstream } from '../backends.js';
import { LivePolicy } from '../core/live-policy.js';
import { loadTrustRoots, readAdvisories } from '../reload.js';
import { ImageSignatures, type SignatureVerdict } from '../oci/signatures.js';
import { checkDigest, parseImageRef } from '../names/oci.js';
import { imageLayers, ImageInventories } from '../oci/inventory.js';
import { ManifestError, indexEntries, parseManifest } from '../oci/reference.js';
import type { Advisories } from '../policy/advisories.js';
import type { RefuseLevel } from '../policy/advisories.js';
import type { ImageVerdict, Policy } from '../policy/index.js';

/**
 * `airlock image check`: the image gate where builds run. The image comes from a local OCI
 * layout or a `docker save` archive (named as skopeo names them: oci:DIR[:TAG],
 * docker-archive:FILE), or from a registry through the mirror's own stores and upstreams
 * (docker://REGISTRY/NAME:TAG, or a plain reference), whose inventory is then stored for the
 * server too. Each platform's inventory is judged with the configured policy and advisories.
 */
export interface PlatformReport {
  digest: string;
  platform?: string;
  os?: string;
  packages: number;
  verdict: ImageVerdict;
  /** The image config's `created`: chosen by the image's author, shown, never trusted (oci.min_age counts from firstSeen). */
  created?: string;
}

/**
 * The signature check (issue 26), when the allow rule approving the image's digest requires
 * `signed` or `attested`: the server's own gate (src/oci/signatures.ts: referrers API, tag
 * schemes, offline verification against the stored or shipped trusted root) run against the
 * upstream. A local layout or archive is not looked up (its signatures live in a registry).
 */
export interface SignatureReport {
  rule: string;
  require: 'signed' | 'attested';
  /** True: verified; false: refused; null: not checked (see reason). */
  ok: boolean | null;
  /** The verified signer ("issuer subject", key:..., ca:...), or the one that failed when known. */
  signer?: string;
  source?: string;
  bundleDigest?: string;
  tlogIndex?: string;
  reason?: string;
}

export interface ImageCheckReport {
  source: string;
  repository: string;
  platforms: PlatformReport[];
  signature?: SignatureReport;
  /** A registry image: its top digest and when Airlock first saw it (ISO time; null: not yet seen), what oci.min_age counts from. */
  firstSeen?: { digest: string; at: string | null };
}

/** The `created` of an image manifest's config blob (author-chosen, shown only), or undefined when it has none or it cannot be read. */
async function createdOf(manifest: Buffer, read: (digest: string, size: number | undefined) => Promise<Buffer | null>): Promise<string | undefined> {
  try {
    const config = (JSON.parse(manifest.toString('utf8')) as { config?: { digest?: string; size?: number } }).config;
    if (!config?.digest || !checkDigest(config.digest).ok) return undefined;
    const bytes = await read(config.digest, config.size);
    const created = bytes ? (JSON.parse(bytes.toString('utf8')) as { created?: unknown }).created : undefined;
    return typeof created === 'string' ? created.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}

interface Manifestish {
  digest: string;
  bytes: Buffer;
  platform?: string;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The image manifests under a top-level manifest or index of a local layout, with their platforms. */
async function platformsOf(top: Manifestish, get: (digest: string) => Promise<Buffer>): Promise<Manifestish[]> {
  const parsed = parseManifest(top.bytes, undefined);
  if (!parsed.isIndex) return [top];
  const out: Manifestish[] = [];
  for (const m of indexEntries(top.bytes)) {
    if (m.attestation) continue;
    const bytes = await get(m.digest);
    if (sha256(bytes) !== m.digest) throw new ConfigError(`image check: ${m.digest} does not match its bytes`);
    out.push({ digest: m.digest, bytes, platform: m.platform });
  }
  return out;
}

/** A local OCI layout: blobs by digest under DIR/blobs/sha256. */
async function fromLayout(dir: string, tag: string | undefined): Promise<{ platforms: Manifestish[]; layer: (digest: string) => Promise<LayerFacts> }> {
  const indexFile = join(dir, 'index.json');
  if (!existsSync(indexFile)) throw new ConfigError(`image check: ${dir} is not an OCI layout (no index.json)`);
  const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const pick = tag ? index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag) : index.manifests;
  if (pick.length !== 1) throw new ConfigError(`image check: ${dir} has ${pick.length} images${tag ? ` tagged ${tag}` : ''}; name one as oci:${dir}:TAG`);
  const blob = (digest: string) => {
    const c = checkDigest(digest);
    if (!c.ok) throw new ConfigError(`image check: ${c.reason}`);
    return join(dir, 'blobs', 'sha256', digest.slice(7));
  };
  const get = async (d: string) => readFileSync(blob(d));
  const topBytes = await get(pick[0].digest);
  const platforms = await platformsOf({ digest: pick[0].digest, bytes: topBytes }, get);
  return { platforms, layer: (d) => readLayer(createReadStream(blob(d)), d) };
}

/**
 * A `docker save` archive: one pass over the tar reads every member that is a layer (its
 * manifest.json usually comes last, so facts are kept by member path and ordered afterwards).
 */
async function fromDockerArchive(file: string): Promise<{ platforms: Manifestish[]; layer: (digest: string) => Promise<LayerFacts> }> {
  if (!existsSync(file) || !statSync(file).isFile()) throw new ConfigError(`image check: ${file}: no such file`);
  const facts = new Map<string, LayerFacts>();
  let manifest: { Config: string; Layers: string[]; RepoTags?: string[] }[] | undefined;
  const extract = tar.extract();
  createReadStream(file).pipe(extract);
  for await (const entry of extract) {
    const name = entry.header.name.replace(/^\.\//, '');
    if (name === 'manifest.json') {
      const chunks: Buffer[] = [];
      for await (const c of entry as unknown as Readable) chunks.push(c as Buffer);
      manifest = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } else if (entry.header.type === 'file' && !name.endsWith('.json') && name !== 'repositories' && name !== 'oci-layout') {
      // Any other file may be a layer (docker: <id>/layer.tar or <hex>.tar; Docker 25+ and skopeo: blobs/sha256/<hex>); readLayer tells.
      facts.set(name, await readLayer(entry as unknown as Readable, `${file}:${name}`));
    }
    entry.resume();
  }
  if (!manifest?.[0]) throw new ConfigError(`image check: ${file} is not a docker save archive (no manifest.json)`);
  if (manifest.length > 1) throw new ConfigError(`image check: ${file} holds ${manifest.length} images; save one image per archive`);
  const layers = manifest[0].Layers;
  const missing = layers.find((l) => !facts.has(l));
  if (missing) throw new ConfigError(`image check: ${file} lists layer ${missing} but does not hold it`);
  // Layers are named by path here; the inventory is built from them directly (see checkImage).
  const fake = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 0 },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l, size: 0 })),
    }),
  );
  return { platforms: [{ digest: `docker-archive:${manifest[0].RepoTags?.[0] ?? file}`, bytes: fake }], layer: async (d) => facts.get(d)! };
}

async function localInventory(p: Manifestish, layer: (d: string) => Promise<LayerFacts>): Promise<Inventory> {
  const doc = JSON.parse(p.bytes.toString('utf8')) as { layers?: { digest: string }[] };
  const refs = imageLayers(p.bytes) ?? [];
  const facts: LayerFacts[] = [];
  for (const l of refs.length ? refs : (doc.layers ?? [])) facts.push(await layer(l.digest));
  return applyLayers(facts);
}

/**
 * A registry image, through the mirror's configured stores, blob cache and OCI upstream service,
 * as the server would pull it: manifests fetched once and verified, layers filled through the
 * verified cache (its leases, budget and size limit), the inventory stored for the server.
 */
async function fromRegistry(
  loaded: LoadedConfig,
  reference: string,
  judge: (repo: string, p: Manifestish, inv: Inventory) => PlatformReport,
  policy: Policy,
  advisories: Advisories,
): Promise<{ repository: string; platforms: PlatformReport[]; signature?: SignatureReport; firstSeen: { digest: string; at: string | null } }> {
  const usage = 'expected REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:DIGEST';
  const parsed = parseImageRef(reference.replace(/^docker:\/\//, ''), loaded.config.oci.default_registry);
  if (!parsed.ok) throw new ConfigError(`image check: ${parsed.reason}; ${usage}`);
  const ref = parsed.ref;
  if (!ref.tag && !ref.digest) throw new ConfigError(`image check: ${usage}, got ${JSON.stringify(reference)}`);
  return withOciUpstream(loaded, async ({ upstream, cache, meta }) => {
    const t = upstream.targetOf(ref);
    const top = await upstream.resolve(t, ref);
    const platforms = await upstream.platforms(t, top);
    // The signature gate, as the server runs it, when the rule approving this digest requires one.
    let signature: SignatureReport | undefined;
    const decision = policy.oci.decideDigest(ref.repository, top.digest);
    const req = decision.rule ? policy.oci.requirement(decision.rule) : null;
    if (req && req.require !== 'none') {
      const log = pino({ level: 'silent' });
      const live = new LivePolicy(loaded.policy, advisories, { file: loaded.policyFile, sha256: '' });
      const trust = await loadTrustRoots(meta, log);
      const sigs = new ImageSignatures({ upstream, cache, meta, live, log, maxManifestBytes: loaded.config.oci.max_manifest_bytes, trust });
      signature = { rule: req.rule, require: req.require, ...signatureOf(await sigs.check(t, top.digest, req)) };
    }
    const inventories = new ImageInventories(cache, meta.inventories, pino({ level: 'silent' }));
    try {
      const out: PlatformReport[] = [];
      // The config blob (small), through the verified cache, for its author-chosen `created`.
      const config = async (digest: string, size: number | undefined) => {
        await (
          await cache.ensure({ sha256: digest.slice(7), size, open: (signal) => upstream.openBlob(t, digest, signal) })
        ).stored;
        return cache.readSmall(digest.slice(7), loaded.config.oci.max_manifest_bytes);
      };
      for (const p of platforms) {
        const inv = await inventories.inventory(p.digest, imageLayers(p.bytes) ?? [], (l) => (signal) => upstream.openBlob(t, l.digest, signal));
        const created = await createdOf(p.bytes, config);
        out.push({ ...judge(ref.repository, p, inv), ...(created ? { created } : {}) });
      }
      const seen = await meta.getOciFirstSeen(top.digest);
      const firstSeen = { digest: top.digest, at: seen === null ? null : new Date(seen).toISOString() };
      return { repository: ref.repository, platforms: out, ...(signature ? { signature } : {}), firstSeen };
    } finally {
      inventories.close();
    }
  });
}

/** A verdict of the signature gate as the report shows it. */
function signatureOf(v: SignatureVerdict): Omit<SignatureReport, 'rule' | 'require'> {
  return {
    ok: v.ok,
    ...(v.identity ? { signer: v.identity } : {}),
    ...(v.source ? { source: v.source } : {}),
    ...(v.bundleDigest ? { bundleDigest: v.bundleDigest } : {}),
    ...(v.tlogIndex ? { tlogIndex: v.tlogIndex } : {}),
    ...(v.reason ? { reason: v.reason } : {}),
  };
}

export async function checkImage(
  configFile: string,
  source: string,
  opts: { failOn?: RefuseLevel; repository?: string; now?: number } = {},
): Promise<ImageCheckReport> {
  const loaded = loadConfig(configFile);
  const meta = await openMeta(loaded, { create: true });
  let advisories: Advisories;
  try {
    advisories = await readAdvisories(meta);
  } finally {
    await meta.close();
  }
  const policy = loaded.policy.withAdvisories(advisories);
  const judge = (repo: string, p: Manifestish, inv: Inventory): PlatformReport => ({
    digest: p.digest,
    ...(p.platform ? { platform: p.platform } : {}),
    ...(inv.os ? { os: inv.os.prettyName ?? inv.os.id } : {}),
    packages: inv.packages.length,
    verdict: policy.images.judge(repo, [p.digest], inv, advisories, opts.now ?? Date.now(), opts.failOn),
  });
  try {
    if (source.startsWith('oci:') || source.startsWith('docker-archive:')) {
      const isOci = source.startsWith('oci:');
      const rest = source.slice(isOci ? 4 : 15);
      // oci:DIR[:TAG]: a tag follows the last colon unless that colon is part of the path.
      const colon = isOci ? rest.lastIndexOf(':') : -1;
      const [dir, tag] = colon > 0 && !rest.slice(colon + 1).includes('/') ? [rest.slice(0, colon), rest.slice(colon + 1)] : [rest, undefined];
      const local = isOci ? await fromLayout(dir, tag) : await fromDockerArchive(rest);
      const repository = opts.repository ?? `local/${dir.split('/').filter(Boolean).pop() ?? 'image'}`;
      const platforms: PlatformReport[] = [];
      for (const p of local.platforms) platforms.push(judge(repository, p, await localInventory(p, local.layer)));
      const top = local.platforms.length === 1 ? local.platforms[0].digest : undefined;
      const decision = top ? policy.oci.decideDigest(repository, top) : undefined;
      const req = decision?.rule ? policy.oci.requirement(decision.rule) : null;
      if (!req || req.require === 'none') return { source, repository, platforms };
      const reason = `not checked: ${req.rule} requires ${req.require === 'attested' ? 'an attestation' : 'a signature'}, which lives in a registry; check docker://${repository}@${top}`;
      return { source, repository, platforms, signature: { rule: req.rule, require: req.require, ok: null, reason } };
    }
    const r = await fromRegistry(loaded, source, judge, policy, advisories);
    return { source, ...r };
  } catch (e) {
    if (e instanceof ManifestError) throw new ConfigError(`image check: ${e.message}`);
    throw e;
  }
}

/** The findings as a table: one line per advisory and package, worst first. */
export function formatReport(rep: ImageCheckReport): string {
  const lines: string[] = [];
  for (const p of rep.platforms) {
    const v = p.verdict;
    lines.push(
      `${rep.repository}@${p.digest}${p.platform ? ` (${p.platform})` : ''}: ${p.os ?? 'no OS release'}, ${p.packages} packages, ${v.findings.length} advisories`,
    );
    if (p.created) lines.push(`created: ${p.created} (chosen by the image's author: shown, not trusted)`);
    if (v.findings.length) lines.push(['SEVERITY', 'ID', 'PACKAGE', 'INSTALLED', 'FIXED', 'STATUS'].join('\t'));
    for (const f of v.findings) {
      const sev = f.malicious ? 'MALICIOUS' : (f.severity.label ?? 'UNKNOWN');
      const status = f.excepted ? `excepted (${f.excepted})` : f.refusing ? 'FAIL' : 'below threshold';
      lines.push(
        [
          sev,
          f.id,
          f.package.source && f.package.source !== f.package.name ? `${f.package.name} (${f.package.source})` : f.package.name,
          f.package.version,
          f.fixed ?? '-',
          status,
        ].join('\t'),
      );
    }
    for (const n of v.notes) lines.push(`note: ${n}`);
    lines.push(v.decision.allow ? 'result: pass' : `result: FAIL: ${v.decision.reason}`);
  }
  if (rep.firstSeen)
    lines.push(
      `first seen by Airlock: ${rep.firstSeen.at ?? 'not yet (the first pull through the server records it)'} (${rep.firstSeen.digest}; oci.min_age counts from it)`,
    );
  const sg = rep.signature;
  if (sg) {
    const what = sg.require === 'attested' ? 'attestation' : 'signature';
    if (sg.ok === true)
      lines.push(
        `${what}: verified (${sg.rule}): signer ${sg.signer ?? 'unknown'}${sg.source ? `, found by ${sg.source}` : ''}${sg.bundleDigest ? `, bundle ${sg.bundleDigest}` : ''}`,
      );
    else if (sg.ok === false) lines.push(`${what}: FAIL: ${sg.reason ?? 'refused'}`);
    else lines.push(`${what}: ${sg.reason}`);
  }
  return lines.join('\n') + '\n';
}
