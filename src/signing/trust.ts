import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, type TrustMaterial } from '@sigstore/verify';
import type { TrustRootStore } from '../storage/meta-store.js';

/**
 * Trust material for Sigstore verification (issue 26), all offline: the public-good trusted root
 * shipped in the repository (trust/sigstore-public-good.json), or the newest root imported with
 * `airlock trust import FILE` (kept in the metadata store, so every replica sees it). No TUF or
 * Rekor call is ever made at verification time.
 *
 * The shipped file is the `trusted_root.json` target of the Sigstore public-good TUF repository
 * (tuf-repo-cdn.sigstore.dev) as pinned in @sigstore/tuf 4.0.2's seeds.json (Apache-2.0), decoded
 * unchanged: both Fulcio CAs, Rekor v1 (rekor.sigstore.dev) and v2 (log2025-1), the CT logs and
 * the timestamp authority. Its sha256 is SHIPPED_ROOT_SHA256 below; a test checks the file against it.
 */
export const SHIPPED_ROOT_SHA256 = '6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66';
/** src/signing/ and dist/signing/ are both two levels under the package root. */
export const SHIPPED_ROOT_FILE = new URL('../../trust/sigstore-public-good.json', import.meta.url);
/** A trusted root is a few kilobytes; anything far larger is not one. */
export const MAX_ROOT_BYTES = 1 << 20;
const MEDIA_TYPE = /^application\/vnd\.dev\.sigstore\.trustedroot(\.v\d+\.\d+)?\+json(;version=[0-9.]+)?$/;

export interface LoadedTrustRoot {
  /** sha256 of the root's bytes, 12 hex: recorded beside every result it verified. */
  version: string;
  sha256: string;
  source: 'shipped' | 'imported';
  /** When it was imported (ms), for an imported root. */
  importedAt?: number;
  /** The newest validity start among its keys (CAs, logs, CT logs, TSAs), ms. */
  newestKeyStart: number;
  /** Counts, for the console and the import command's message. */
  cas: number;
  tlogs: number;
  material: TrustMaterial;
  /** Whether at least one CA and one log are valid at `now` (an expired root fails closed). */
  usableAt(now: number): boolean;
}

type ValidFor = { start?: string; end?: string } | undefined;

function ms(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
}

function live(v: ValidFor, now: number): boolean {
  const start = ms(v?.start);
  const end = ms(v?.end);
  return (start === undefined || start <= now) && (end === undefined || end > now);
}

/**
 * Parse and check a trusted root (JSON text): a TrustedRoot by @sigstore/protobuf-specs, with at
 * least one certificate authority and one transparency log whose keys load, not all expired at
 * `now`. Returns a one-line reason instead of throwing.
 */
export function parseTrustRoot(
  text: string,
  now: number,
  meta: { source: 'shipped' | 'imported'; importedAt?: number },
): { ok: true; root: LoadedTrustRoot } | { ok: false; reason: string } {
  if (text.length > MAX_ROOT_BYTES) return { ok: false, reason: `trusted root is ${text.length} bytes; expected a Sigstore trusted_root.json (a few KB)` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `trusted root is not JSON: ${(e as Error).message.split('\n')[0]}` };
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) return { ok: false, reason: 'trusted root is not a JSON object' };
  const j = json as Record<string, unknown>;
  if (typeof j.mediaType !== 'string' || !MEDIA_TYPE.test(j.mediaType))
    return { ok: false, reason: `trusted root has mediaType ${JSON.stringify(j.mediaType)}; expected application/vnd.dev.sigstore.trustedroot+json` };
  for (const k of ['certificateAuthorities', 'tlogs', 'ctlogs', 'timestampAuthorities']) {
    if (j[k] !== undefined && !Array.isArray(j[k])) return { ok: false, reason: `trusted root's ${k} is not a list` };
  }
  let root: TrustedRoot;
  let material: TrustMaterial;
  try {
    root = TrustedRoot.fromJSON(json);
    material = toTrustMaterial(root);
  } catch (e) {
    return { ok: false, reason: `trusted root does not load: ${(e as Error).message.split('\n')[0]}` };
  }
  if (root.certificateAuthorities.length === 0) return { ok: false, reason: 'trusted root has no certificate authority' };
  if (root.tlogs.length === 0) return { ok: false, reason: 'trusted root has no transparency log' };
  const cas = (json as { certificateAuthorities?: { validFor?: ValidFor }[] }).certificateAuthorities ?? [];
  const tlogs = (json as { tlogs?: { publicKey?: { validFor?: ValidFor } }[] }).tlogs ?? [];
  const ctlogs = (json as { ctlogs?: { publicKey?: { validFor?: ValidFor } }[] }).ctlogs ?? [];
  const tsas = (json as { timestampAuthorities?: { validFor?: ValidFor }[] }).timestampAuthorities ?? [];
  const usableAt = (t: number) => cas.some((c) => live(c.validFor, t)) && tlogs.some((l) => live(l.publicKey?.validFor, t));
  if (!usableAt(now)) return { ok: false, reason: 'trusted root has expired: no certificate authority and transparency log are both valid now' };
  const starts = [
    ...cas.map((c) => c.validFor),
    ...tsas.map((c) => c.validFor),
    ...tlogs.map((l) => l.publicKey?.validFor),
    ...ctlogs.map((l) => l.publicKey?.validFor),
  ]
    .map((v) => ms(v?.start))
    .filter((t): t is number => t !== undefined);
  const sha256 = createHash('sha256').update(text).digest('hex');
  return {
    ok: true,
    root: {
      version: sha256.slice(0, 12),
      sha256,
      source: meta.source,
      ...(meta.importedAt !== undefined ? { importedAt: meta.importedAt } : {}),
      newestKeyStart: starts.length ? Math.max(...starts) : 0,
      cas: root.certificateAuthorities.length,
      tlogs: root.tlogs.length,
      material,
      usableAt,
    },
  };
}

let shipped: LoadedTrustRoot | undefined;

/** The shipped public-good root (read once). Throws only if the installation is broken (the file missing or altered). */
export function shippedTrustRoot(): LoadedTrustRoot {
  if (shipped) return shipped;
  const text = readFileSync(SHIPPED_ROOT_FILE, 'utf8');
  const r = parseTrustRoot(text, Date.now(), { source: 'shipped' });
  if (!r.ok) throw new Error(`shipped trusted root ${SHIPPED_ROOT_FILE.pathname}: ${r.reason}`);
  if (r.root.sha256 !== SHIPPED_ROOT_SHA256)
    throw new Error(`shipped trusted root ${SHIPPED_ROOT_FILE.pathname} has sha256 ${r.root.sha256}, expected ${SHIPPED_ROOT_SHA256}`);
  shipped = r.root;
  return shipped;
}

/**
 * Which root verifies: the newest imported one, else the shipped one. `refresh()` reads the
 * store again (at start and on reload); a stored root that no longer parses (edited in the
 * database) is reported by `problem` and nothing verifies (fail closed) rather than falling back.
 */
export class TrustRoots {
  private root: LoadedTrustRoot | null = null;
  problem: string | null = null;

  constructor(private readonly store: Pick<TrustRootStore, 'latestTrustRoot'> | null) {}

  async refresh(now = Date.now()): Promise<LoadedTrustRoot | null> {
    const stored = this.store ? await this.store.latestTrustRoot() : null;
    if (!stored) {
      try {
        this.root = shippedTrustRoot();
        this.problem = null;
      } catch (e) {
        this.root = null;
        this.problem = (e as Error).message;
      }
      return this.root;
    }
    if (this.root?.source === 'imported' && this.root.sha256 === stored.sha256 && this.root.importedAt === stored.importedAt) return this.root;
    // An imported root was valid when imported; expiry since is checked at verification (usableAt).
    const r = parseTrustRoot(stored.root, stored.importedAt, { source: 'imported', importedAt: stored.importedAt });
    this.root = r.ok ? r.root : null;
    this.problem = r.ok ? null : `imported trusted root ${stored.sha256.slice(0, 12)}: ${r.reason}`;
    return this.root;
  }

  /** The root in use, or null (none loaded, or the stored one is broken: see `problem`). */
  current(): LoadedTrustRoot | null {
    return this.root;
  }

  /** trustVersion of the root in use (12 hex), or null. */
  get version(): string | null {
    return this.root?.version ?? null;
  }

  /**
   * The root's age in seconds, for the airlock_trust_root_age_seconds metric and the console:
   * since its import for an imported root, since the newest validity start of its keys for the
   * shipped one (how long ago its newest key material appeared). null when no root is loaded.
   */
  ageSeconds(now = Date.now()): number | null {
    if (!this.root) return null;
    const since = this.root.importedAt ?? this.root.newestKeyStart;
    return Math.max(0, Math.floor((now - since) / 1000));
  }
}

/** For `airlock trust import`: check a file's text and store it. Returns the loaded root or a one-line reason. */
export async function importTrustRoot(
  store: TrustRootStore,
  text: string,
  now = Date.now(),
): Promise<{ ok: true; root: LoadedTrustRoot } | { ok: false; reason: string }> {
  const r = parseTrustRoot(text, now, { source: 'imported', importedAt: now });
  if (!r.ok) return r;
  await store.putTrustRoot({ sha256: r.root.sha256, root: text });
  return r;
}
