import pg from 'pg';
import { REFUSAL_INDEXES, ROW_BYTES_SQL_V1 } from './pull-rows.js';

/**
 * The PostgreSQL schema: versioned steps, run in order on start by migrate() below. Text that is
 * ordered or compared (digests) uses the "C" collation, so order is byte order whatever the
 * database's locale, as in SQLite.
 */
export const PG_MIGRATIONS: string[] = [
  `CREATE TABLE blobs (
     sha256 TEXT COLLATE "C" PRIMARY KEY,
     size BIGINT NOT NULL,
     created_at BIGINT NOT NULL,
     used_at BIGINT NOT NULL
   );
   CREATE INDEX blobs_by_use ON blobs (used_at, sha256);
   CREATE TABLE pages (key TEXT PRIMARY KEY, body TEXT NOT NULL, fetched_at BIGINT NOT NULL, etag TEXT);
   CREATE TABLE pulls (
     id BIGSERIAL PRIMARY KEY,
     ts BIGINT NOT NULL,
     client TEXT NOT NULL,
     ecosystem TEXT NOT NULL,
     name TEXT NOT NULL,
     version TEXT,
     filename TEXT,
     sha256 TEXT,
     size BIGINT,
     cache TEXT NOT NULL,
     decision TEXT NOT NULL,
     reason TEXT,
     rule TEXT,
     request_id TEXT,
     scan TEXT,
     prev_hash TEXT,
     hash TEXT
   );
   CREATE INDEX pulls_name_ts ON pulls (ecosystem, name, ts);
   CREATE INDEX pulls_ts ON pulls (ts);
   CREATE INDEX pulls_sha256 ON pulls (sha256);
   CREATE TABLE oci_manifests (digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, size BIGINT NOT NULL);
   CREATE TABLE oci_links (
     repo TEXT NOT NULL, parent TEXT NOT NULL, child TEXT NOT NULL, size BIGINT NOT NULL, kind TEXT NOT NULL,
     PRIMARY KEY (repo, child, parent)
   );
   CREATE TABLE aliases (kind TEXT NOT NULL, key TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (kind, key));
   CREATE TABLE scans (sha256 TEXT COLLATE "C" PRIMARY KEY, scanner TEXT NOT NULL, report TEXT NOT NULL, scanned_at BIGINT NOT NULL);
   CREATE TABLE tokens (name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, admin BOOLEAN NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT);
   CREATE TABLE advisories (id TEXT PRIMARY KEY, modified TEXT NOT NULL, record TEXT NOT NULL);
   CREATE TABLE image_layers (sha256 TEXT PRIMARY KEY, version INTEGER NOT NULL, facts TEXT NOT NULL);
   CREATE TABLE image_inventories (digest TEXT COLLATE "C" PRIMARY KEY, version INTEGER NOT NULL, inventory TEXT NOT NULL, created_at BIGINT NOT NULL);
   CREATE TABLE image_packages (digest TEXT COLLATE "C" NOT NULL, type TEXT NOT NULL, name TEXT COLLATE "C" NOT NULL, version TEXT NOT NULL, source TEXT);
   CREATE INDEX image_packages_name ON image_packages (type, name);
   CREATE INDEX image_packages_source ON image_packages (type, source);
   CREATE INDEX image_packages_digest ON image_packages (digest);`,
  `CREATE TABLE fill_leases (sha256 TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat BIGINT NOT NULL);`,
  `ALTER TABLE pulls ADD COLUMN code TEXT;
   CREATE INDEX pulls_decision_id ON pulls (decision, id);
   CREATE INDEX pulls_code_id ON pulls (code, id);`,
  `CREATE TABLE pull_days (day BIGINT NOT NULL, ecosystem TEXT NOT NULL, decision TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (day, ecosystem, decision));
   INSERT INTO pull_days SELECT (ts / 86400000) * 86400000, ecosystem, decision, COUNT(*) FROM pulls GROUP BY 1, 2, 3;
   CREATE INDEX pulls_name_id ON pulls (name, id);
   CREATE INDEX pulls_decision_eco_id ON pulls (decision, ecosystem, id);`,
  // Tokens keep their history: a revoked token's row stays (its secret stays refused), and its name
  // can be issued again. A name is unique among live tokens only; rows get an id (their order).
  `ALTER TABLE tokens DROP CONSTRAINT tokens_pkey;
   ALTER TABLE tokens ADD COLUMN id BIGSERIAL PRIMARY KEY;
   CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;`,
  // Chunk digests of each blob (core/chunks.ts): ranges are served from verified chunks only.
  `CREATE TABLE blob_chunks (sha256 TEXT COLLATE "C" PRIMARY KEY, chunk_size INTEGER NOT NULL, digests BYTEA NOT NULL, sum TEXT NOT NULL);`,
  // Folded refusals and the record's size budget (issue 25): see sqlite-schema.ts's step. Self-contained.
  `ALTER TABLE pulls ADD COLUMN count BIGINT;
   ALTER TABLE pulls ADD COLUMN last_ts BIGINT;
   CREATE TABLE pull_size (id INTEGER PRIMARY KEY CHECK (id = 1), rows BIGINT NOT NULL, bytes BIGINT NOT NULL);
   INSERT INTO pull_size SELECT 1, COUNT(*), COALESCE(SUM(${ROW_BYTES_SQL_V1}), 0) FROM pulls;`,
  // Console sessions held server-side and the console's secret (issue 25): see sqlite-schema.ts's step. Self-contained.
  `CREATE TABLE console_sessions (key TEXT PRIMARY KEY, token_hash TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
   CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
   CREATE INDEX console_sessions_token ON console_sessions (token_hash);
   CREATE TABLE console_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret TEXT NOT NULL);`,
  // Imported Sigstore trusted roots (issue 26): see sqlite-schema.ts's step.
  `CREATE TABLE trust_roots (id BIGSERIAL PRIMARY KEY, sha256 TEXT NOT NULL, root TEXT NOT NULL, imported_at BIGINT NOT NULL);`,
  // What verified each pull's signature (issue 26): see sqlite-schema.ts's step.
  `ALTER TABLE pulls ADD COLUMN signature TEXT;`,
  // The signer each project was first verified under (issue 26, continuity). Self-contained.
  `CREATE TABLE signers (ecosystem TEXT NOT NULL, project TEXT NOT NULL, identity TEXT NOT NULL, version TEXT, recorded_at BIGINT NOT NULL, PRIMARY KEY (ecosystem, project));`,
  // When Airlock first saw each manifest digest (issue 27, oci.min_age): see sqlite-schema.ts's step.
  `CREATE TABLE oci_first_seen (digest TEXT COLLATE "C" PRIMARY KEY, first_seen BIGINT NOT NULL);`,
  // Advisory feeds (issue 28): see sqlite-schema.ts's step.
  `ALTER TABLE advisories ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
   CREATE INDEX advisories_by_generation ON advisories (generation);
   CREATE TABLE advisory_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL, told BIGINT NOT NULL DEFAULT 0);
   INSERT INTO advisory_generation (id, generation) VALUES (1, 0);
   CREATE TABLE advisory_syncs (id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL,
     outcome TEXT NOT NULL, mode TEXT NOT NULL, changed INTEGER NOT NULL, high_water TEXT, error TEXT, generation BIGINT NOT NULL);
   CREATE INDEX advisory_syncs_by_source ON advisory_syncs (source, id);`,
  // The alert outbox, the advisories evaluated for alerts, and alerting's baseline (issue 28): see sqlite-alert-store.ts's step. Self-contained.
  `CREATE TABLE alert_outbox (
     id BIGSERIAL PRIMARY KEY, advisory_id TEXT NOT NULL, modified TEXT NOT NULL, artefact TEXT NOT NULL, channel TEXT NOT NULL, payload TEXT NOT NULL,
     created_at BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at BIGINT NOT NULL, delivered_at BIGINT, last_error TEXT,
     claim_owner TEXT, claim_until BIGINT,
     UNIQUE (advisory_id, modified, artefact, channel)
   );
   CREATE INDEX alert_outbox_due ON alert_outbox (delivered_at, next_at);
   CREATE TABLE alert_evaluated (advisory_id TEXT NOT NULL, modified TEXT NOT NULL, evaluated_at BIGINT NOT NULL, PRIMARY KEY (advisory_id, modified));
   CREATE TABLE alert_baseline (id INTEGER PRIMARY KEY CHECK (id = 1), taken_at BIGINT NOT NULL);`,
  // Replicas stream a fill under way to each other (issue 29): the lease row says where its filler answers. Self-contained.
  `ALTER TABLE fill_leases ADD COLUMN addr TEXT;`,
  // The record's write path (issue 29): an allowed pull goes into three indexes instead of seven (pull-rows.ts).
  REFUSAL_INDEXES,
  // Searches by digest are read a page at a time, newest first (pull-pages.ts): the digest's rows in
  // id order, as SQLite's (sha256) index already holds them (its entries end with the rowid).
  `CREATE INDEX pulls_sha256_id ON pulls (sha256, id);
   DROP INDEX pulls_sha256;`,
  // A feed sync writes in batches, each a generation (storage/advisory-pages.ts): the source of each. Self-contained.
  `CREATE TABLE advisory_generation_sources (generation BIGINT PRIMARY KEY, source TEXT NOT NULL);`,
  // What changed since a generation names the syncs behind it (advisoryChangesSince): advisory_syncs,
  // never pruned (a row per sync of every source), was read whole whenever anything changed. Self-contained.
  `CREATE INDEX advisory_syncs_by_generation ON advisory_syncs (generation);`,
];

/** Advisory-lock keys: schema migration, and the pull chain's head (one writer at a time across replicas). */
export const LOCK_MIGRATE = 0x41697201;
export const LOCK_CHAIN = 0x41697202;

/** BIGINT columns come back as numbers (ms timestamps and sizes stay far below 2^53). */
export const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * Inside a transaction: run the schema steps not yet applied; returns the version reached. The
 * whole run holds a transaction-scoped advisory lock, so replicas starting together (they share
 * one database) migrate once: the others wait, then find nothing left to do. A step that fails
 * rolls the whole run back.
 */
export async function migrateSchema(c: pg.PoolClient, schema: string | undefined): Promise<number> {
  await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_MIGRATE]);
  // Under the lock: replicas starting together would otherwise race to create the schema.
  if (schema) await c.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`);
  await c.query('CREATE TABLE IF NOT EXISTS airlock_schema (version INTEGER NOT NULL)');
  const r = await c.query<{ version: number }>('SELECT version FROM airlock_schema');
  let v = r.rows[0]?.version ?? 0;
  if (r.rows.length === 0) await c.query('INSERT INTO airlock_schema (version) VALUES (0)');
  for (; v < PG_MIGRATIONS.length; v++) await c.query(PG_MIGRATIONS[v]);
  await c.query('UPDATE airlock_schema SET version = $1', [v]);
  return v;
}
