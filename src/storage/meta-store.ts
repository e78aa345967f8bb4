import type { InventoryStore } from './inventory-store.js';

/**
 * The metadata seam: blob descriptors, cached index pages and pull records.
 * Methods are async although the embedded SQLite backend is synchronous, so that a
 * PostgreSQL backend (several replicas sharing state) can drop in without changing callers.
 */
export interface BlobRecord {
  sha256: string;
  size: number;
  createdAt: number;
}

export interface CachedPage {
  /** e.g. "pypi:public:requests" */
  key: string;
  /** Parsed, normalised model as JSON (never the upstream bytes). */
  body: string;
  fetchedAt: number;
  etag?: string | null;
}

/** 'audit' rows are the record's own events (retention pruning), chained like the rest. */
export type Ecosystem = 'pypi' | 'hf' | 'oci' | 'audit';
export type CacheState = 'hit' | 'miss' | 'join' | 'none';
export type Decision = 'allow' | 'deny' | 'error';

export interface PullRecord {
  ts: number;
  client: string;
  ecosystem: Ecosystem;
  name: string;
  version?: string | null;
  filename?: string | null;
  sha256?: string | null;
  size?: number | null;
  cache: CacheState;
  decision: Decision;
  reason?: string | null;
  rule?: string | null;
  requestId?: string | null;
  /** The content inspection behind the decision (JSON: format, imports, findings), when there was one. */
  scan?: string | null;
}

export interface StoredPullRecord extends PullRecord {
  id: number;
  /** Hash chain: the previous row's hash, and sha256(prevHash + "\n" + this row's content). */
  prevHash?: string | null;
  hash?: string | null;
}

export interface ChainReport {
  rows: number;
  /** Rows written before the chain existed (no hash), at the start of the table. */
  unchained: number;
  /** The newest row's hash: keep it somewhere else to detect deletion of the newest rows. */
  head: string | null;
  /** The first problem found, naming the row. */
  problem?: { id: number; kind: 'altered' | 'deleted' | 'inserted'; message: string };
}

export interface PullFilter {
  ecosystem?: Ecosystem;
  name?: string;
  version?: string;
  sha256?: string;
  decision?: Decision;
  since?: number;
  until?: number;
  limit?: number;
}

/** A verified manifest's descriptor; its bytes are a blob in the BlobStore under the same sha256. */
export interface OciManifestRecord {
  /** "sha256:<hex>" */
  digest: string;
  mediaType: string;
  size: number;
}

/** An edge from a verified manifest to what it references, per repository (index -> manifest -> blobs). */
export interface OciLink {
  digest: string;
  size: number;
  kind: 'manifest' | 'blob';
}

export interface TokenRecord {
  name: string;
  /** sha256 of the secret (hex); the secret itself is never stored. */
  hash: string;
  admin: boolean;
  createdAt: number;
  revokedAt: number | null;
}

export interface MetaStore {
  /** Image inventories (layer facts, per-manifest inventories): a seam of its own. */
  readonly inventories: InventoryStore;
  getBlob(sha256: string): Promise<BlobRecord | null>;
  putBlob(rec: BlobRecord): Promise<void>;
  deleteBlob(sha256: string): Promise<void>;
  getPage(key: string): Promise<CachedPage | null>;
  putPage(page: CachedPage): Promise<void>;
  /** Append pull records, in order, atomically (one transaction for the batch). */
  recordPulls(recs: PullRecord[]): Promise<void>;
  listPulls(filter: PullFilter): Promise<StoredPullRecord[]>;
  getOciManifest(digest: string): Promise<OciManifestRecord | null>;
  /** Store a verified manifest's descriptor and its references within `repo`, atomically. */
  putOciManifest(repo: string, m: OciManifestRecord, children: OciLink[]): Promise<void>;
  /** Links from an approved manifest to what refers to it (referrers), within `repo`. */
  addOciLinks(repo: string, parent: string, children: OciLink[]): Promise<void>;
  /** The verified manifests of `repo` that reference `digest`, with the size they declare for it. */
  getOciParents(repo: string, digest: string): Promise<{ parent: string; size: number; kind: OciLink['kind'] }[]>;
  /** Another name for a stored blob, e.g. ("git-blob", <sha1>) -> sha256 for Hub files verified by git oid. */
  /** The stored content-inspection report of a blob (JSON) and the scanner version that wrote it. */
  getScan(sha256: string): Promise<{ scanner: string; report: string } | null>;
  putScan(sha256: string, scanner: string, report: string): Promise<void>;
  /** Every blob that has a scan report (for rescans). */
  listScans(): Promise<{ sha256: string; scanner: string }[]>;
  /** Walk the hash chain of pull records from the first row, and name the first row that breaks it. */
  verifyChain(): Promise<ChainReport>;
  /** Delete records older than `before` (ms) and append a chained 'audit/prune' event anchoring what was removed. */
  prunePulls(before: number, client: string): Promise<number>;
  createToken(t: { name: string; hash: string; admin: boolean }): Promise<void>;
  findToken(hash: string): Promise<TokenRecord | null>;
  listTokens(): Promise<TokenRecord[]>;
  revokeToken(name: string): Promise<boolean>;
  /** Imported advisories (OSV JSON), upserted by id; returns how many were new or changed. */
  putAdvisories(recs: { id: string; modified: string; record: string }[]): Promise<number>;
  listAdvisories(): Promise<string[]>;
  getAlias(kind: string, key: string): Promise<string | null>;
  putAlias(kind: string, key: string, sha256: string): Promise<void>;
  close(): Promise<void>;
}
