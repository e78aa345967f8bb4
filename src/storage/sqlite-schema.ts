import { REFUSAL_INDEXES, ROW_BYTES_SQL_V1 } from './pull-rows.js';
import { ALERT_MIGRATION } from './sqlite-alert-store.js';
import { INVENTORY_MIGRATION } from './sqlite-inventory-store.js';

/** The embedded SQLite schema: versioned steps, run in order on open (PRAGMA user_version counts those applied). */
export const SQLITE_MIGRATIONS: string[] = [
  `CREATE TABLE blobs (
     sha256 TEXT PRIMARY KEY,
     size INTEGER NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE pages (
     key TEXT PRIMARY KEY,
     body TEXT NOT NULL,
     fetched_at INTEGER NOT NULL,
     etag TEXT
   );
   CREATE TABLE pulls (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     client TEXT NOT NULL,
     ecosystem TEXT NOT NULL,
     name TEXT NOT NULL,
     version TEXT,
     filename TEXT,
     sha256 TEXT,
     size INTEGER,
     cache TEXT NOT NULL,
     decision TEXT NOT NULL,
     reason TEXT,
     rule TEXT,
     request_id TEXT
   );
   CREATE INDEX pulls_name_ts ON pulls (ecosystem, name, ts);
   CREATE INDEX pulls_ts ON pulls (ts);
   CREATE INDEX pulls_sha256 ON pulls (sha256);`,
  `CREATE TABLE oci_manifests (
     digest TEXT PRIMARY KEY,
     media_type TEXT NOT NULL,
     size INTEGER NOT NULL
   );
   CREATE TABLE oci_links (
     repo TEXT NOT NULL,
     parent TEXT NOT NULL,
     child TEXT NOT NULL,
     size INTEGER NOT NULL,
     kind TEXT NOT NULL,
     PRIMARY KEY (repo, child, parent)
   ) WITHOUT ROWID;`,
  `CREATE TABLE aliases (
     kind TEXT NOT NULL,
     key TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     PRIMARY KEY (kind, key)
   ) WITHOUT ROWID;`,
  `CREATE TABLE scans (
     sha256 TEXT PRIMARY KEY,
     scanner TEXT NOT NULL,
     report TEXT NOT NULL,
     scanned_at INTEGER NOT NULL
   );
   ALTER TABLE pulls ADD COLUMN scan TEXT;`,
  `ALTER TABLE pulls ADD COLUMN prev_hash TEXT;
   ALTER TABLE pulls ADD COLUMN hash TEXT;`,
  `CREATE TABLE tokens (
     name TEXT PRIMARY KEY,
     hash TEXT NOT NULL UNIQUE,
     admin INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     revoked_at INTEGER
   );`,
  `CREATE TABLE advisories (
     id TEXT PRIMARY KEY,
     modified TEXT NOT NULL,
     record TEXT NOT NULL
   );`,
  INVENTORY_MIGRATION,
  // Last use of each blob, for eviction under cache.max_bytes.
  `ALTER TABLE blobs ADD COLUMN used_at INTEGER NOT NULL DEFAULT 0;
   UPDATE blobs SET used_at = created_at;
   CREATE INDEX blobs_by_use ON blobs (used_at, sha256);`,
  `CREATE TABLE fill_leases (sha256 TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat INTEGER NOT NULL) WITHOUT ROWID;`,
  `ALTER TABLE pulls ADD COLUMN code TEXT;
   CREATE INDEX pulls_decision_id ON pulls (decision, id);
   CREATE INDEX pulls_code_id ON pulls (code, id);`,
  // The console's pages on a large record: per-day counts kept as rows are written, and the
  // indexes its searches use (name alone; refusals by ecosystem).
  `CREATE TABLE pull_days (day INTEGER NOT NULL, ecosystem TEXT NOT NULL, decision TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (day, ecosystem, decision)) WITHOUT ROWID;
   INSERT INTO pull_days SELECT (ts / 86400000) * 86400000, ecosystem, decision, COUNT(*) FROM pulls GROUP BY 1, 2, 3;
   CREATE INDEX pulls_name_id ON pulls (name, id);
   CREATE INDEX pulls_decision_eco_id ON pulls (decision, ecosystem, id);`,
  // Tokens keep their history: a revoked token's row stays (its secret stays refused), and its name
  // can be issued again. A name is unique among live tokens only; rows are ordered by id. SQLite
  // cannot drop a primary key, so the table is rebuilt.
  `CREATE TABLE tokens_v2 (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     name TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     admin INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     revoked_at INTEGER
   );
   INSERT INTO tokens_v2 (name, hash, admin, created_at, revoked_at) SELECT name, hash, admin, created_at, revoked_at FROM tokens ORDER BY created_at, name;
   DROP TABLE tokens;
   ALTER TABLE tokens_v2 RENAME TO tokens;
   CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;`,
  // Chunk digests of each blob (core/chunks.ts): ranges are served from verified chunks only. A
  // blob cached before has none until a whole read or the scrub computes them.
  `CREATE TABLE blob_chunks (sha256 TEXT PRIMARY KEY, chunk_size INTEGER NOT NULL, digests BLOB NOT NULL, sum TEXT NOT NULL) WITHOUT ROWID;`,
  // Folded refusals and the record's size budget (issue 25): a row may stand for `count` identical
  // refusals from `ts` to `last_ts`; pull_size keeps the record's rows and estimated bytes
  // (pull-rows.ts ROW_BYTES_SQL) as rows are written and pruned. A self-contained step: it only
  // adds to the pulls table and creates pull_size.
  `ALTER TABLE pulls ADD COLUMN count INTEGER;
   ALTER TABLE pulls ADD COLUMN last_ts INTEGER;
   CREATE TABLE pull_size (id INTEGER PRIMARY KEY CHECK (id = 1), rows INTEGER NOT NULL, bytes INTEGER NOT NULL);
   INSERT INTO pull_size SELECT 1, COUNT(*), COALESCE(SUM(${ROW_BYTES_SQL_V1}), 0) FROM pulls;`,
  // Console sessions held server-side (issue 25), so a logout or a token's revocation ends them on
  // every replica: a row per live session, keyed by a hash of its cookie's id; and the console's
  // secret, which signs the login form's nonce. Self-contained: it only creates its own tables.
  `CREATE TABLE console_sessions (key TEXT PRIMARY KEY, token_hash TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
   CREATE INDEX console_sessions_token ON console_sessions (token_hash);
   CREATE TABLE console_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret TEXT NOT NULL);`,
  // Imported Sigstore trusted roots (issue 26): the newest row wins over the shipped root.
  `CREATE TABLE trust_roots (id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL, root TEXT NOT NULL, imported_at INTEGER NOT NULL);`,
  // What verified each pull's signature (issue 26): compact JSON (signing/record.ts), chained when present.
  `ALTER TABLE pulls ADD COLUMN signature TEXT;`,
  // The signer each project was first verified under (issue 26, continuity). Self-contained.
  `CREATE TABLE signers (ecosystem TEXT NOT NULL, project TEXT NOT NULL, identity TEXT NOT NULL, version TEXT, recorded_at INTEGER NOT NULL, PRIMARY KEY (ecosystem, project)) WITHOUT ROWID;`,
  // When Airlock first saw each manifest digest (issue 27, oci.min_age): the first writer wins. Self-contained.
  `CREATE TABLE oci_first_seen (digest TEXT PRIMARY KEY, first_seen INTEGER NOT NULL) WITHOUT ROWID;`,
  // Advisory feeds (issue 28): each sync recorded; the generation of the advisories, bumped by every import that changed something.
  `ALTER TABLE advisories ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX advisories_by_generation ON advisories (generation);
   CREATE TABLE advisory_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL, told INTEGER NOT NULL DEFAULT 0);
   INSERT INTO advisory_generation (id, generation) VALUES (1, 0);
   CREATE TABLE advisory_syncs (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,
     outcome TEXT NOT NULL, mode TEXT NOT NULL, changed INTEGER NOT NULL, high_water TEXT, error TEXT, generation INTEGER NOT NULL);
   CREATE INDEX advisory_syncs_by_source ON advisory_syncs (source, id);`,
  // The alert outbox, the advisories evaluated for alerts, and alerting's baseline (issue 28). Self-contained.
  ALERT_MIGRATION,
  // Replicas stream a fill under way to each other (issue 29): the lease row says where its filler answers. Self-contained.
  `ALTER TABLE fill_leases ADD COLUMN addr TEXT;`,
  // The record's write path (issue 29): an allowed pull, most of the record, goes into three
  // indexes (time, digest, name) instead of seven. REFUSAL_INDEXES says why.
  REFUSAL_INDEXES,
  // A feed sync writes in batches, each a generation (storage/advisory-pages.ts): the source of each. Self-contained.
  `CREATE TABLE advisory_generation_sources (generation INTEGER PRIMARY KEY, source TEXT NOT NULL);`,
  // What changed since a generation names the syncs behind it (advisoryChangesSince): advisory_syncs,
  // never pruned (a row per sync of every source), was read whole whenever anything changed. Self-contained.
  `CREATE INDEX advisory_syncs_by_generation ON advisory_syncs (generation);`,
  // The ids a change noticed by a server reads (advisoryChangesSince) come from this index alone.
  // Read from the table, each row's generation (its last column, after the record's overflow pages)
  // cost a scan of the whole table: 80-190 ms of the server's event loop at every notice for 20,000
  // records, however few had changed. Self-contained.
  `DROP INDEX advisories_by_generation;
   CREATE INDEX advisories_by_generation ON advisories (generation, id);`,
];
