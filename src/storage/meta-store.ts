import type { AlertStore } from './alert-store.js';
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

/**
 * A blob's chunk digests (core/chunks.ts): SHA-256 of each `chunkSize` chunk, 32 bytes each, in
 * order, and `sum`, which binds the list to the blob's digest and size (a list altered or cut short
 * no longer matches it and is not used).
 */
export interface ChunkList {
  chunkSize: number;
  digests: Buffer;
  sum: string;
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
/** A pull record's decisions; what the record's searches (admin API, CLI, console) accept. */
export const DECISIONS = ['allow', 'deny', 'error'] as const;
export type Decision = (typeof DECISIONS)[number];
/** Whether `s` is one of DECISIONS. */
export const isDecision = (s: unknown): s is Decision => (DECISIONS as readonly unknown[]).includes(s);
/** How many pulls these rows stand for: a folded row (core/fold.ts) is `count` of them. */
export const pullsIn = (rows: readonly { count?: number | null }[]): number => rows.reduce((n, r) => n + (r.count ?? 1), 0);

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
  /**
   * Why a row is not a plain allow, as a stable code: one of core/record-codes.ts RecordCode when
   * written (the recorder takes only those), stored as text; what the console and `--code` filter
   * by. Rows written before codes existed have none.
   */
  code?: string | null;
  /**
   * A folded row (core/fold.ts): `count` identical refusals of one client, the first at `ts`, the
   * last at `lastTs`, written as one row when its window closed. Absent on a row that stands for
   * one event. Both are covered by the chain when present.
   */
  count?: number | null;
  lastTs?: number | null;
  /**
   * What verified the artefact's signature (issue 26), as compact JSON text (signing/record.ts
   * RecordSignature: identity, publisher, bundle digest, log index and time, trust version); on a
   * signature refusal, what was found. Covered by the chain when present; older rows have none.
   */
  signature?: string | null;
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
  code?: string;
  /** Rows with an id below this (keyset pagination, newest first). */
  before?: number;
  /** Rows with an id at or above this (where a paged answer's last page ends, pull-pages.ts). */
  from?: number;
  /** The oldest rows first (pull-pages.ts asks for the oldest matching row once, to know where to stop). */
  oldestFirst?: boolean;
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
  /** 'referrer': listed as a signature object of the parent (referrers API, signature tag), not part of it. */
  kind: 'manifest' | 'blob' | 'referrer';
}

export interface TokenRecord {
  name: string;
  /** sha256 of the secret (hex); the secret itself is never stored. */
  hash: string;
  admin: boolean;
  createdAt: number;
  revokedAt: number | null;
}

/** Blob descriptors: which verified blobs the BlobStore holds, and their sizes. */
export interface BlobIndex {
  getBlob(sha256: string): Promise<BlobRecord | null>;
  putBlob(rec: BlobRecord): Promise<void>;
  /** Forget a blob's descriptor and its chunk list. */
  deleteBlob(sha256: string): Promise<void>;
  /** The blob's chunk list, or null when it has none (cached before chunk lists, or not cached). */
  getChunks(sha256: string): Promise<ChunkList | null>;
  /** Store (or replace) a blob's chunk list; written before the blob's descriptor by a fill. */
  putChunks(sha256: string, list: ChunkList): Promise<void>;
  /** Descriptors in digest order, a page at a time after `after` (for `airlock store verify`). */
  listBlobs(after: string, limit: number): Promise<BlobRecord[]>;
  /** Mark blobs as used at `at` (ms; an older mark never replaces a newer one). A new blob is used at its creation. */
  touchBlobs(sha256s: string[], at: number): Promise<void>;
  /** How many blobs are stored and their total size. */
  blobTotals(): Promise<{ count: number; bytes: number }>;
  /** The least recently used descriptors first (eviction candidates). */
  leastRecentlyUsed(limit: number): Promise<(BlobRecord & { usedAt: number })[]>;
}

/** Index pages and repository metadata, parsed and normalised, by key. */
export interface PageCache {
  getPage(key: string): Promise<CachedPage | null>;
  putPage(page: CachedPage): Promise<void>;
}

/** The chained row a prune leaves, given the last row it removed and how many it removed (core/chain.ts writes it). */
export type PruneAnchor = (last: { id: number; hash: string | null }, removed: number) => PullRecord;

/** How a row joins the hash chain, given the head it follows (core/chain.ts decides; the store only runs it). */
export type ChainLink = (head: string | null, rec: PullRecord) => { prevHash: string; hash: string };

/**
 * The pull record, stored in order. The chain's rules live above this seam (core/chain.ts); a
 * backend runs `link` for each row atomically with reading the head it follows, so concurrent
 * writers still make one chain.
 */
export interface PullLog {
  /** Append rows, in order, atomically (one transaction for the batch), each linked to the one before. */
  appendPulls(recs: PullRecord[], link: ChainLink): Promise<void>;
  /** Rows matching the filter, newest first: at most `limit` (default 1000) and at most MAX_PULL_PAGE; pull-pages.ts reads them all. */
  listPulls(filter: PullFilter): Promise<StoredPullRecord[]>;
  /** Every row, oldest first (chain verification). */
  scanPulls(): AsyncIterable<StoredPullRecord>;
  /**
   * Rows counted per UTC day (ms at midnight), ecosystem and decision, from the day `since` (ms)
   * falls in, oldest day first. Kept as a running summary as rows are written, so it costs the
   * same with a million rows as with ten.
   */
  dailyCounts(since: number): Promise<{ day: number; ecosystem: Ecosystem; decision: Decision; count: number }[]>;
  /**
   * Delete the rows older than `before` (ms) and append `anchor(last removed row, count)`, linked,
   * in one transaction; returns how many rows were removed (0, and no anchor, when none were).
   * At most `maxRows` of the oldest rows go in one call (through the newest row older than `before`
   * among them), and none after row `through` (the head when the prune began): core/chain.ts calls
   * again while a call removes any.
   */
  prunePulls(before: number, anchor: PruneAnchor, link: ChainLink, maxRows?: number, through?: number): Promise<number>;
  /**
   * The record's size: rows, and an estimate of the bytes they take (their text plus a fixed
   * per-row allowance for hashes, numbers and indexes: pull-rows.ts ROW_BYTES_SQL), kept as a
   * running total as rows are written and pruned.
   */
  pullSize(): Promise<{ rows: number; bytes: number }>;
  /**
   * Delete the oldest rows until the record's estimated size is at most `maxBytes`, and append
   * `anchor(last removed row, count)`, linked, in one transaction (as prunePulls); returns how many
   * rows were removed (0, and no anchor, when the record is already within it). At most `maxRows`
   * rows go in one call, as prunePulls.
   */
  prunePullsToSize(maxBytes: number, anchor: PruneAnchor, link: ChainLink, maxRows?: number): Promise<number>;
}

/** Verified OCI manifests and their links per repository (index -> manifest -> blobs, referrers). */
export interface OciStore {
  getOciManifest(digest: string): Promise<OciManifestRecord | null>;
  /** Store a verified manifest's descriptor and its references within `repo`, atomically. */
  putOciManifest(repo: string, m: OciManifestRecord, children: OciLink[]): Promise<void>;
  /** Links from an approved manifest to what refers to it (referrers), within `repo`. */
  addOciLinks(repo: string, parent: string, children: OciLink[]): Promise<void>;
  /** The verified manifests of `repo` that reference `digest`, with the size they declare for it. */
  getOciParents(repo: string, digest: string): Promise<{ parent: string; size: number; kind: OciLink['kind'] }[]>;
  /**
   * When Airlock first saw a manifest digest (epoch ms; issue 27, oci.min_age): recorded at `at`
   * when none is, the first writer winning (also between replicas); returns the time recorded.
   */
  recordOciFirstSeen(digest: string, at: number): Promise<number>;
  /** The recorded first sight of a manifest digest, or null when Airlock has not seen it. */
  getOciFirstSeen(digest: string): Promise<number | null>;
}

/** Content-inspection reports of blobs (JSON) and the scanner version that wrote each. */
export interface ScanStore {
  getScan(sha256: string): Promise<{ scanner: string; report: string } | null>;
  putScan(sha256: string, scanner: string, report: string): Promise<void>;
  /** Every blob that has a scan report (for rescans). */
  listScans(): Promise<{ sha256: string; scanner: string }[]>;
}

/** Client tokens, by the hash of their secret. */
export interface TokenStore {
  createToken(t: { name: string; hash: string; admin: boolean }): Promise<void>;
  findToken(hash: string): Promise<TokenRecord | null>;
  listTokens(): Promise<TokenRecord[]>;
  /** Revoke the live token of that name, ending its console sessions in the same transaction. */
  revokeToken(name: string): Promise<boolean>;
}

/** A console session as stored: its token (joined in the same lookup) and its expiry. */
export interface ConsoleSessionRecord {
  token: TokenRecord;
  expiresAt: number;
}

/**
 * Console sessions (console/session.ts), shared by every replica: a row per live session, keyed
 * by a hash of the id its cookie carries, so a logout on one replica ends the session on all.
 */
export interface ConsoleSessionStore {
  /** Record a session of the token whose secret hashes to `tokenHash`; sessions expired by `now` are removed in the same call. */
  createConsoleSession(s: { key: string; tokenHash: string; expiresAt: number }, now: number): Promise<void>;
  /** The session and its token, in one indexed lookup; null when there is none (ended, pruned, never made). */
  findConsoleSession(key: string): Promise<ConsoleSessionRecord | null>;
  /** End a session (logout); true when it existed. */
  endConsoleSession(key: string): Promise<boolean>;
  /** The console's secret (random, made once by whichever replica asks first, the same for all): keys the login form's nonce. */
  consoleSecret(): Promise<string>;
}

/** Imported Sigstore trusted roots (issue 26, `airlock trust import`): the newest wins over the shipped one, on every replica. */
export interface TrustRootStore {
  /** Add a root (its JSON text, with its sha256 in hex); importing the same root again makes it the newest. */
  putTrustRoot(r: { sha256: string; root: string }): Promise<void>;
  /** The most recently imported root, or null when none was imported. */
  latestTrustRoot(): Promise<{ sha256: string; root: string; importedAt: number } | null>;
}

/** The signer a project was first verified under (issue 26, continuity): what a later version's signer is compared with. */
export interface SignerRecord {
  /** signing/continuity.ts continuityIdentity: the publisher or identity, without what changes per release (the ref). */
  identity: string;
  /** The version, commit or digest it was first verified on. */
  version: string | null;
  recordedAt: number;
}

/** The recorded signer of each (ecosystem, project), shared by every replica. */
export interface SignerStore {
  getSigner(ecosystem: string, project: string): Promise<SignerRecord | null>;
  /** Record the signer when none is recorded (the first wins, also between replicas); returns what is recorded now. */
  recordSigner(ecosystem: string, project: string, s: { identity: string; version: string | null }): Promise<SignerRecord>;
  /** Accept a signer after review: replace what is recorded, or forget it (null: the next verified pull records its signer); true when one was recorded. */
  setSigner(ecosystem: string, project: string, s: { identity: string; version: string | null } | null): Promise<boolean>;
}

/** One advisory to store: its id, OSV `modified` time and the record's JSON. */
export interface AdvisoryRow {
  id: string;
  modified: string;
  record: string;
}

/**
 * Whether a copy of a record modified at `given` is older than the stored one, modified at `held`
 * (both as the records gave them), and is not to replace it. Asked inside the write's transaction,
 * after every other writer's: checked before it, a newer copy another replica committed meanwhile
 * was overwritten (a record rolled back, un-withdrawn). `id`: the record's, for a caller that counts
 * which it left out (an import's output line).
 */
export type OlderThan = (given: string, held: string, id: string) => boolean;

/** One sync of an advisory feed (issue 28): what was fetched from a source, and what came of it. */
export interface AdvisorySync {
  source: string;
  startedAt: number;
  finishedAt: number;
  /** changed: records imported; unchanged: fetched and verified, nothing new; failed: nothing imported (`error` says why). */
  outcome: 'changed' | 'unchanged' | 'failed';
  mode: 'full' | 'incremental';
  /** Records new or changed by this sync. */
  changed: number;
  /** The newest `modified` time of the source known after this sync (the next incremental sync takes what is newer). */
  highWater: string | null;
  error: string | null;
}

/** Which recorded syncs `advisorySyncs` reads. */
export interface SyncQuery {
  source?: string;
  limit: number;
  good?: boolean;
}

/**
 * Imported advisories (OSV JSON), the feed syncs that brought them, and a generation number that
 * grows with every import that changed something, so every replica notices and applies it.
 */
export interface AdvisoryStore {
  /**
   * Upsert by id in one transaction; returns how many were new or changed (and bumps the generation
   * when any were). `source`: the feed sync writing them in batches before its last (recordAdvisorySync),
   * told as that source's change (advisoryChangesSince); none: an import by hand. `older`: rows it
   * finds older than the stored copy are skipped.
   */
  putAdvisories(recs: AdvisoryRow[], source?: string, older?: OlderThan): Promise<number>;
  listAdvisories(): Promise<string[]>;
  /**
   * Up to `limit` advisories by id after `after` (null for the first page: '' is an id an import
   * may store), in id order, and no more once the records before one come to `maxChars` (at least
   * one row): a reader of every record that does not hold them all at once (advisory-pages.ts).
   */
  advisoryPage(after: string | null, limit: number, maxChars?: number): Promise<{ id: string; record: string }[]>;
  /** The stored records of those of `ids` that are stored (what a notice of a few changed ids re-reads, reload.ts). */
  advisoryRecords(ids: string[]): Promise<{ id: string; record: string }[]>;
  /** The stored `modified` time of each of `ids` that is stored (as the record gave it). */
  advisoriesModified(ids: string[]): Promise<Map<string, string>>;
  /**
   * A feed sync's last write, in one transaction: its last batch of records upserted (none for a
   * failed sync), the generation bumped when any changed, and the sync recorded with `sync.changed`
   * (the rows its earlier batches changed, putAdvisories) plus these. Returns the ids this call changed.
   */
  recordAdvisorySync(recs: AdvisoryRow[], sync: AdvisorySync, older?: OlderThan): Promise<string[]>;
  /** Recorded syncs, newest first (of one source, or all; `good`: only those that did not fail, however many failed since). */
  advisorySyncs(opts: SyncQuery): Promise<(AdvisorySync & { id: number; generation: number })[]>;
  /** The generation now: 0 before any change; grows by one per import that changed something. */
  advisoryGeneration(): Promise<number>;
  /** The newest generation whose changes some replica applied and told its hooks of (advisories/applied.ts). */
  advisoriesTold(): Promise<number>;
  /** Note that the changes up to `generation` were applied and told (never moves back). */
  markAdvisoriesTold(generation: number): Promise<void>;
  /** What changed after `generation`: the ids, the sources of the syncs that changed them ('import' for changes by hand), and the newest generation among them. */
  advisoryChangesSince(generation: number): Promise<{ ids: string[]; sources: string[]; generation: number }>;
}

/** Other names of stored blobs, e.g. ("git-blob", <sha1>) -> sha256 for Hub files verified by git oid. */
export interface AliasStore {
  getAlias(kind: string, key: string): Promise<string | null>;
  putAlias(kind: string, key: string, sha256: string): Promise<void>;
}

/**
 * Who is filling which blob, across replicas sharing one store: a lease row per blob with its
 * owner and heartbeat, so N replicas asked for one cold artefact make one upstream transfer. A
 * lease whose owner stopped renewing it (a dead replica) is taken over.
 */
export interface LeaseStore {
  /**
   * Take the lease on `sha256` for `owner`: true when it is free, already `owner`'s, or its holder's
   * heartbeat is older than `staleMs`. `addr`: where `owner` serves the fill to other replicas (peer-stream.ts).
   */
  takeLease(sha256: string, owner: string, staleMs: number, addr?: string): Promise<boolean>;
  /** Who holds the lease on `sha256` now, and where it serves the fill (null when it gave none), or null when nobody does. */
  leaseHolder(sha256: string): Promise<{ owner: string; addr: string | null } | null>;
  /** Keep `owner`'s lease alive (its heartbeat is now). */
  renewLease(sha256: string, owner: string): Promise<void>;
  /** Give `owner`'s lease up (nothing when another owns it). */
  releaseLease(sha256: string, owner: string): Promise<void>;
  /** Resolves once nobody holds the lease on `sha256`, or after `timeoutMs`, or soon after `signal` aborts (the waiting fill was cancelled). */
  awaitRelease(sha256: string, timeoutMs: number, signal?: AbortSignal): Promise<void>;
}

/**
 * The whole metadata store: one interface per concern, each held to its contract suite in
 * test/contract/ (any backend must pass them all). Callers depend on the narrowest one they use.
 */
export interface MetaStore
  extends
    BlobIndex,
    PageCache,
    PullLog,
    OciStore,
    ScanStore,
    TokenStore,
    ConsoleSessionStore,
    AdvisoryStore,
    AliasStore,
    LeaseStore,
    TrustRootStore,
    SignerStore {
  /** Image inventories (layer facts, per-manifest inventories). */
  readonly inventories: InventoryStore;
  /** The alert outbox (issue 28). */
  readonly alerts: AlertStore;
  close(): Promise<void>;
}
