import { EventEmitter } from 'node:events';
import pg from 'pg';
import type {
  BlobRecord,
  CachedPage,
  ChainLink,
  MetaStore,
  OciLink,
  OciManifestRecord,
  PullFilter,
  PullRecord,
  StoredPullRecord,
  TokenRecord,
} from './meta-store.js';
import type { InventoryPackageRow, InventoryStore } from './inventory-store.js';
import { dayTally, pullOf, type PullRow } from './pull-rows.js';

/**
 * Versioned schema steps, run in order on start (under an advisory lock, so replicas starting
 * together migrate once). Text that is ordered or compared (digests) uses the "C" collation, so
 * order is byte order whatever the database's locale, as in SQLite.
 */
const MIGRATIONS: string[] = [
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
];

/** Advisory-lock keys: schema migration, and the pull chain's head (one writer at a time across replicas). */
const LOCK_MIGRATE = 0x41697201;
const LOCK_CHAIN = 0x41697202;

/** BIGINT columns come back as numbers (ms timestamps and sizes stay far below 2^53). */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const PULL_COLUMNS = 'ts, client, ecosystem, name, version, filename, sha256, size, cache, decision, reason, rule, request_id, scan, prev_hash, hash, code';

/**
 * PostgreSQL implementation of MetaStore (the `pg` client), for several replicas sharing one
 * database. Held to the same contract suites as SQLite (test/contract/). The pull chain stays one
 * chain under concurrent writers: each append takes a transaction-scoped advisory lock, reads the
 * head and links its rows to it.
 */
export class PgMetaStore implements MetaStore {
  readonly inventories: InventoryStore;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly schema?: string,
  ) {
    this.inventories = new PgInventoryStore(pool, (fn) => this.tx(fn));
  }

  /** Connect and bring the schema up to date. `schema` keeps several stores in one database (tests, tenants). */
  static async open(url: string, opts: { schema?: string; max?: number } = {}): Promise<PgMetaStore> {
    const options = opts.schema ? `-c search_path=${opts.schema}` : undefined;
    const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, types, options });
    pool.on('error', () => {
      /* an idle client lost its connection: the pool replaces it */
    });
    const store = new PgMetaStore(pool, opts.schema);
    try {
      await store.migrate();
    } catch (e) {
      await pool.end();
      throw e;
    }
    return store;
  }

  /** Run the schema steps not yet applied; returns the version reached. */
  async migrate(): Promise<number> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_MIGRATE]);
      // Under the lock: replicas starting together would otherwise race to create the schema.
      if (this.schema) await c.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(this.schema)}`);
      await c.query('CREATE TABLE IF NOT EXISTS airlock_schema (version INTEGER NOT NULL)');
      const r = await c.query<{ version: number }>('SELECT version FROM airlock_schema');
      let v = r.rows[0]?.version ?? 0;
      if (r.rows.length === 0) await c.query('INSERT INTO airlock_schema (version) VALUES (0)');
      for (; v < MIGRATIONS.length; v++) await c.query(MIGRATIONS[v]);
      await c.query('UPDATE airlock_schema SET version = $1', [v]);
      return v;
    });
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      c.release();
    }
  }

  private async rows<T extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<T[]> {
    return (await this.pool.query<T>(sql, args)).rows;
  }

  // BlobIndex
  async getBlob(sha256: string): Promise<BlobRecord | null> {
    const [r] = await this.rows<{ sha256: string; size: number; created_at: number }>('SELECT sha256, size, created_at FROM blobs WHERE sha256 = $1', [sha256]);
    return r ? { sha256: r.sha256, size: r.size, createdAt: r.created_at } : null;
  }

  async putBlob(rec: BlobRecord): Promise<void> {
    await this.pool.query(
      'INSERT INTO blobs (sha256, size, created_at, used_at) VALUES ($1, $2, $3, $3) ON CONFLICT (sha256) DO UPDATE SET size = EXCLUDED.size, created_at = EXCLUDED.created_at, used_at = EXCLUDED.used_at',
      [rec.sha256, rec.size, rec.createdAt],
    );
  }

  async deleteBlob(sha256: string): Promise<void> {
    await this.pool.query('DELETE FROM blobs WHERE sha256 = $1', [sha256]);
  }

  async listBlobs(after: string, limit: number): Promise<BlobRecord[]> {
    const rs = await this.rows<{ sha256: string; size: number; created_at: number }>(
      'SELECT sha256, size, created_at FROM blobs WHERE sha256 > $1 ORDER BY sha256 LIMIT $2',
      [after, limit],
    );
    return rs.map((r) => ({ sha256: r.sha256, size: r.size, createdAt: r.created_at }));
  }

  async touchBlobs(sha256s: string[], at: number): Promise<void> {
    if (sha256s.length) await this.pool.query('UPDATE blobs SET used_at = $1 WHERE sha256 = ANY($2) AND used_at < $1', [at, sha256s]);
  }

  async blobTotals(): Promise<{ count: number; bytes: number }> {
    const [r] = await this.rows<{ count: number; bytes: number | null }>('SELECT COUNT(*)::bigint AS count, SUM(size)::bigint AS bytes FROM blobs');
    return { count: r.count, bytes: r.bytes ?? 0 };
  }

  async leastRecentlyUsed(limit: number): Promise<(BlobRecord & { usedAt: number })[]> {
    const rs = await this.rows<{ sha256: string; size: number; created_at: number; used_at: number }>(
      'SELECT sha256, size, created_at, used_at FROM blobs ORDER BY used_at, sha256 LIMIT $1',
      [limit],
    );
    return rs.map((r) => ({ sha256: r.sha256, size: r.size, createdAt: r.created_at, usedAt: r.used_at }));
  }

  // PageCache
  async getPage(key: string): Promise<CachedPage | null> {
    const [r] = await this.rows<{ key: string; body: string; fetched_at: number; etag: string | null }>(
      'SELECT key, body, fetched_at, etag FROM pages WHERE key = $1',
      [key],
    );
    return r ? { key: r.key, body: r.body, fetchedAt: r.fetched_at, etag: r.etag } : null;
  }

  async putPage(page: CachedPage): Promise<void> {
    await this.pool.query(
      'INSERT INTO pages (key, body, fetched_at, etag) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET body = EXCLUDED.body, fetched_at = EXCLUDED.fetched_at, etag = EXCLUDED.etag',
      [page.key, page.body, page.fetchedAt, page.etag ?? null],
    );
  }

  // PullLog
  async appendPulls(recs: PullRecord[], link: ChainLink): Promise<void> {
    if (recs.length === 0) return;
    await this.tx((c) => this.insertPulls(c, recs, link));
  }

  /** Inside a transaction: lock the chain head (every replica's writers queue here), then link and insert the rows in one statement. */
  private async insertPulls(c: pg.PoolClient, recs: PullRecord[], link: ChainLink): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_CHAIN]);
    let head = (await c.query<{ hash: string | null }>('SELECT hash FROM pulls ORDER BY id DESC LIMIT 1')).rows[0]?.hash ?? null;
    const values: unknown[] = [];
    const tuples: string[] = [];
    for (const rec of recs) {
      const { prevHash, hash } = link(head, rec);
      const base = values.length;
      values.push(
        rec.ts,
        rec.client,
        rec.ecosystem,
        rec.name,
        rec.version ?? null,
        rec.filename ?? null,
        rec.sha256 ?? null,
        rec.size ?? null,
        rec.cache,
        rec.decision,
        rec.reason ?? null,
        rec.rule ?? null,
        rec.requestId ?? null,
        rec.scan ?? null,
        prevHash,
        hash,
        rec.code ?? null,
      );
      tuples.push(`(${Array.from({ length: 17 }, (_, i) => `$${base + i + 1}`).join(', ')})`);
      head = hash;
    }
    await c.query(`INSERT INTO pulls (${PULL_COLUMNS}) VALUES ${tuples.join(', ')}`, values);
    const tally = dayTally(recs);
    await c.query(
      `INSERT INTO pull_days (day, ecosystem, decision, count) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
       ON CONFLICT (day, ecosystem, decision) DO UPDATE SET count = pull_days.count + EXCLUDED.count`,
      [tally.map((t) => t[0]), tally.map((t) => t[1]), tally.map((t) => t[2]), tally.map((t) => t[3])],
    );
  }

  async listPulls(f: PullFilter): Promise<StoredPullRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (col: string, op: string, v: unknown) => {
      args.push(v);
      where.push(`${col} ${op} $${args.length}`);
    };
    if (f.ecosystem) add('ecosystem', '=', f.ecosystem);
    if (f.name) add('name', '=', f.name);
    if (f.version) add('version', '=', f.version);
    if (f.sha256) add('sha256', '=', f.sha256);
    if (f.decision) add('decision', '=', f.decision);
    if (f.code) add('code', '=', f.code);
    if (f.before !== undefined) add('id', '<', f.before);
    if (f.since !== undefined) add('ts', '>=', f.since);
    if (f.until !== undefined) add('ts', '<=', f.until);
    args.push(Math.max(1, Math.min(f.limit ?? 1000, 100_000)));
    const rs = await this.rows<PullRow>(
      `SELECT * FROM pulls ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT $${args.length}`,
      args,
    );
    return rs.map(pullOf);
  }

  async *scanPulls(): AsyncIterable<StoredPullRecord> {
    let after = 0;
    for (;;) {
      const rs = await this.rows<PullRow>('SELECT * FROM pulls WHERE id > $1 ORDER BY id LIMIT 1000', [after]);
      if (rs.length === 0) return;
      for (const r of rs) yield pullOf(r);
      after = rs[rs.length - 1].id;
    }
  }

  async dailyCounts(
    since: number,
  ): Promise<{ day: number; ecosystem: StoredPullRecord['ecosystem']; decision: StoredPullRecord['decision']; count: number }[]> {
    return this.rows('SELECT day, ecosystem, decision, count FROM pull_days WHERE day >= $1 ORDER BY 1, 2, 3', [Math.floor(since / 86_400_000) * 86_400_000]);
  }

  async prunePulls(before: number, anchor: (last: { id: number; hash: string | null }, removed: number) => PullRecord, link: ChainLink): Promise<number> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_CHAIN]);
      const last = (await c.query<{ id: number; hash: string | null }>('SELECT id, hash FROM pulls WHERE ts < $1 ORDER BY id DESC LIMIT 1', [before])).rows[0];
      if (!last) return 0;
      const span = (await c.query<{ lo: number; hi: number }>('SELECT MIN(ts) AS lo, MAX(ts) AS hi FROM pulls WHERE id <= $1', [last.id])).rows[0];
      const n = (await c.query('DELETE FROM pulls WHERE id <= $1', [last.id])).rowCount ?? 0;
      // Recount the days the removed rows were in from what is left of them.
      const lo = Math.floor(span.lo / 86_400_000) * 86_400_000;
      const hi = Math.floor(span.hi / 86_400_000) * 86_400_000;
      await c.query('DELETE FROM pull_days WHERE day BETWEEN $1 AND $2', [lo, hi]);
      await c.query(
        'INSERT INTO pull_days SELECT (ts / 86400000) * 86400000, ecosystem, decision, COUNT(*) FROM pulls WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2, 3',
        [lo, hi + 86_400_000],
      );
      await this.insertPulls(c, [anchor(last, n)], link);
      return n;
    });
  }

  // OciStore
  async getOciManifest(digest: string): Promise<OciManifestRecord | null> {
    const [r] = await this.rows<{ digest: string; media_type: string; size: number }>('SELECT digest, media_type, size FROM oci_manifests WHERE digest = $1', [
      digest,
    ]);
    return r ? { digest: r.digest, mediaType: r.media_type, size: r.size } : null;
  }

  async putOciManifest(repo: string, m: OciManifestRecord, children: OciLink[]): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        'INSERT INTO oci_manifests (digest, media_type, size) VALUES ($1, $2, $3) ON CONFLICT (digest) DO UPDATE SET media_type = EXCLUDED.media_type, size = EXCLUDED.size',
        [m.digest, m.mediaType, m.size],
      );
      await this.links(c, repo, m.digest, children);
    });
  }

  async addOciLinks(repo: string, parent: string, children: OciLink[]): Promise<void> {
    await this.tx((c) => this.links(c, repo, parent, children));
  }

  private async links(c: pg.PoolClient, repo: string, parent: string, children: OciLink[]): Promise<void> {
    for (const ch of children) {
      await c.query('INSERT INTO oci_links (repo, parent, child, size, kind) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [
        repo,
        parent,
        ch.digest,
        ch.size,
        ch.kind,
      ]);
    }
  }

  async getOciParents(repo: string, digest: string): Promise<{ parent: string; size: number; kind: OciLink['kind'] }[]> {
    return this.rows('SELECT parent, size, kind FROM oci_links WHERE repo = $1 AND child = $2', [repo, digest]);
  }

  // ScanStore
  async getScan(sha256: string): Promise<{ scanner: string; report: string } | null> {
    return (await this.rows<{ scanner: string; report: string }>('SELECT scanner, report FROM scans WHERE sha256 = $1', [sha256]))[0] ?? null;
  }

  async putScan(sha256: string, scanner: string, report: string): Promise<void> {
    await this.pool.query(
      'INSERT INTO scans (sha256, scanner, report, scanned_at) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO UPDATE SET scanner = EXCLUDED.scanner, report = EXCLUDED.report, scanned_at = EXCLUDED.scanned_at',
      [sha256, scanner, report, Date.now()],
    );
  }

  async listScans(): Promise<{ sha256: string; scanner: string }[]> {
    return this.rows('SELECT sha256, scanner FROM scans ORDER BY sha256');
  }

  // TokenStore
  async createToken(t: { name: string; hash: string; admin: boolean }): Promise<void> {
    await this.pool.query('INSERT INTO tokens (name, hash, admin, created_at) VALUES ($1, $2, $3, $4)', [t.name, t.hash, t.admin, Date.now()]);
  }

  async findToken(hash: string): Promise<TokenRecord | null> {
    const [r] = await this.rows<TokenRow>('SELECT * FROM tokens WHERE hash = $1', [hash]);
    return r ? tokenOf(r) : null;
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.rows<TokenRow>('SELECT * FROM tokens ORDER BY name')).map(tokenOf);
  }

  async revokeToken(name: string): Promise<boolean> {
    return ((await this.pool.query('UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL', [Date.now(), name])).rowCount ?? 0) > 0;
  }

  // AdvisoryStore
  async putAdvisories(recs: { id: string; modified: string; record: string }[]): Promise<number> {
    return this.tx(async (c) => {
      let changed = 0;
      for (const r of recs) {
        const res = await c.query(
          `INSERT INTO advisories (id, modified, record) VALUES ($1, $2, $3)
           ON CONFLICT (id) DO UPDATE SET modified = EXCLUDED.modified, record = EXCLUDED.record WHERE advisories.record IS DISTINCT FROM EXCLUDED.record`,
          [r.id, r.modified, r.record],
        );
        changed += res.rowCount ?? 0;
      }
      return changed;
    });
  }

  async listAdvisories(): Promise<string[]> {
    return (await this.rows<{ record: string }>('SELECT record FROM advisories')).map((r) => r.record);
  }

  // AliasStore
  async getAlias(kind: string, key: string): Promise<string | null> {
    return (await this.rows<{ sha256: string }>('SELECT sha256 FROM aliases WHERE kind = $1 AND key = $2', [kind, key]))[0]?.sha256 ?? null;
  }

  async putAlias(kind: string, key: string, sha256: string): Promise<void> {
    await this.pool.query('INSERT INTO aliases (kind, key, sha256) VALUES ($1, $2, $3) ON CONFLICT (kind, key) DO UPDATE SET sha256 = EXCLUDED.sha256', [
      kind,
      key,
      sha256,
    ]);
  }

  // LeaseStore: a row per blob being filled; a release is announced (NOTIFY) to wake waiters at once.
  async takeLease(sha256: string, owner: string, staleMs: number): Promise<boolean> {
    const now = Date.now();
    const r = await this.pool.query(
      `INSERT INTO fill_leases (sha256, owner, heartbeat) VALUES ($1, $2, $3)
       ON CONFLICT (sha256) DO UPDATE SET owner = EXCLUDED.owner, heartbeat = EXCLUDED.heartbeat
       WHERE fill_leases.owner = EXCLUDED.owner OR fill_leases.heartbeat < $4`,
      [sha256, owner, now, now - staleMs],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async renewLease(sha256: string, owner: string): Promise<void> {
    await this.pool.query('UPDATE fill_leases SET heartbeat = $1 WHERE sha256 = $2 AND owner = $3', [Date.now(), sha256, owner]);
  }

  async releaseLease(sha256: string, owner: string): Promise<void> {
    const r = await this.pool.query('DELETE FROM fill_leases WHERE sha256 = $1 AND owner = $2', [sha256, owner]);
    if ((r.rowCount ?? 0) > 0) await this.pool.query('SELECT pg_notify($1, $2)', [this.channel, sha256]);
  }

  async awaitRelease(sha256: string, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    const held = async () => (await this.pool.query('SELECT 1 FROM fill_leases WHERE sha256 = $1', [sha256])).rowCount! > 0;
    const listener = await this.listener();
    while ((await held()) && Date.now() < until) {
      // Woken by the holder's NOTIFY; the poll (1 s) covers a holder that died without releasing.
      await new Promise<void>((resolve) => {
        const done = () => (clearTimeout(t), listener.off(sha256, done), resolve());
        const t = setTimeout(done, Math.min(1000, Math.max(1, until - Date.now())));
        listener.on(sha256, done);
      });
    }
  }

  /** The channel NOTIFY uses: per schema, so stores sharing a database do not wake each other. */
  private get channel(): string {
    return `airlock_fills_${this.schema ?? 'public'}`;
  }

  private listening: Promise<EventEmitter> | undefined;

  /** One LISTEN connection per store, shared by every waiter; its notifications are emitted by digest. */
  private listener(): Promise<EventEmitter> {
    this.listening ??= (async () => {
      const em = new EventEmitter();
      em.setMaxListeners(0);
      const c = await this.pool.connect();
      this.listenClient = c;
      c.on('notification', (n) => n.payload && em.emit(n.payload));
      // The database went away (restart, failover): drop this connection; the next waiter listens
      // anew, and waiters meanwhile poll. Unhandled, the error would end the process.
      c.on('error', () => {
        this.listening = undefined;
        this.listenClient = undefined;
        c.release(true);
      });
      await c.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
      return em;
    })();
    return this.listening;
  }

  private listenClient: pg.PoolClient | undefined;

  async close(): Promise<void> {
    this.listenClient?.release();
    await this.pool.end();
  }
}

interface TokenRow {
  name: string;
  hash: string;
  admin: boolean;
  created_at: number;
  revoked_at: number | null;
}

const tokenOf = (r: TokenRow): TokenRecord => ({ name: r.name, hash: r.hash, admin: r.admin, createdAt: r.created_at, revokedAt: r.revoked_at });

/** Image inventories in the same PostgreSQL database (held to test/contract/inventory-store.ts). */
class PgInventoryStore implements InventoryStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly tx: <T>(fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>,
  ) {}

  async getLayerFacts(sha256: string): Promise<{ version: number; facts: string } | null> {
    return (await this.pool.query<{ version: number; facts: string }>('SELECT version, facts FROM image_layers WHERE sha256 = $1', [sha256])).rows[0] ?? null;
  }

  async putLayerFacts(sha256: string, version: number, facts: string): Promise<void> {
    await this.pool.query(
      'INSERT INTO image_layers (sha256, version, facts) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO UPDATE SET version = EXCLUDED.version, facts = EXCLUDED.facts',
      [sha256, version, facts],
    );
  }

  async getInventory(digest: string): Promise<{ version: number; inventory: string; createdAt: number } | null> {
    const r = (
      await this.pool.query<{ version: number; inventory: string; created_at: number }>(
        'SELECT version, inventory, created_at FROM image_inventories WHERE digest = $1',
        [digest],
      )
    ).rows[0];
    return r ? { version: r.version, inventory: r.inventory, createdAt: r.created_at } : null;
  }

  async putInventory(digest: string, version: number, inventory: string, packages: InventoryPackageRow[]): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        'INSERT INTO image_inventories (digest, version, inventory, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO UPDATE SET version = EXCLUDED.version, inventory = EXCLUDED.inventory, created_at = EXCLUDED.created_at',
        [digest, version, inventory, Date.now()],
      );
      await c.query('DELETE FROM image_packages WHERE digest = $1', [digest]);
      // One statement for all the packages (an image lists hundreds): arrays unnested server-side.
      if (packages.length) {
        await c.query(
          'INSERT INTO image_packages (digest, type, name, version, source) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])',
          [digest, packages.map((p) => p.type), packages.map((p) => p.name), packages.map((p) => p.version), packages.map((p) => p.source ?? null)],
        );
      }
    });
  }

  async imagesWithPackage(type: string, name: string): Promise<{ digest: string; name: string; version: string; source: string | null }[]> {
    return (
      await this.pool.query(
        `SELECT digest, name, version, source FROM image_packages WHERE type = $1 AND name = $2
         UNION SELECT digest, name, version, source FROM image_packages WHERE type = $1 AND source = $2
         ORDER BY digest, name`,
        [type, name],
      )
    ).rows;
  }

  async listInventories(): Promise<string[]> {
    return (await this.pool.query<{ digest: string }>('SELECT digest FROM image_inventories ORDER BY digest')).rows.map((r) => r.digest);
  }
}
