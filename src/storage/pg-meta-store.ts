import { EventEmitter } from 'node:events';
import pg from 'pg';
import type {
  SignerRecord,
  BlobRecord,
  ChunkList,
  CachedPage,
  ChainLink,
  MetaStore,
  OciLink,
  OciManifestRecord,
  PullFilter,
  PruneAnchor,
  PullRecord,
  StoredPullRecord,
  SyncQuery,
  TokenRecord,
  ConsoleSessionRecord,
} from './meta-store.js';
import type { InventoryStore } from './inventory-store.js';
import { PgAdvisories } from './pg-advisories.js';
import { PgAlertStore } from './pg-alert-store.js';
import { PgConsoleSessions } from './pg-console-sessions.js';
import { PgInventoryStore } from './pg-inventory-store.js';
import { PgPullLog } from './pg-pulls.js';
import { migrateSchema, types } from './pg-schema.js';

/**
 * PostgreSQL implementation of MetaStore (the `pg` client), for several replicas sharing one
 * database. Held to the same contract suites as SQLite (test/contract/). Its parts by job: the
 * schema and its migrations (pg-schema.ts), the pull record (pg-pulls.ts), image inventories
 * (pg-inventory-store.ts); the rest is here.
 */
export class PgMetaStore implements MetaStore {
  readonly inventories: InventoryStore;
  readonly alerts: PgAlertStore;
  private readonly pulls: PgPullLog;
  private readonly sessions: PgConsoleSessions;
  private readonly advisories: PgAdvisories;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly schema?: string,
  ) {
    this.inventories = new PgInventoryStore(pool, (fn) => this.tx(fn));
    this.alerts = new PgAlertStore(pool, (fn) => this.tx(fn));
    this.pulls = new PgPullLog(pool, (fn) => this.tx(fn));
    this.sessions = new PgConsoleSessions(pool, (fn) => this.tx(fn));
    this.advisories = new PgAdvisories(pool, (fn) => this.tx(fn));
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
    return this.tx((c) => migrateSchema(c, this.schema));
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
    await this.tx(async (c) => {
      await c.query('DELETE FROM blobs WHERE sha256 = $1', [sha256]);
      await c.query('DELETE FROM blob_chunks WHERE sha256 = $1', [sha256]);
    });
  }

  async getChunks(sha256: string): Promise<ChunkList | null> {
    const [r] = await this.rows<{ chunk_size: number; digests: Buffer; sum: string }>('SELECT chunk_size, digests, sum FROM blob_chunks WHERE sha256 = $1', [
      sha256,
    ]);
    return r ? { chunkSize: r.chunk_size, digests: r.digests, sum: r.sum } : null;
  }

  async putChunks(sha256: string, list: ChunkList): Promise<void> {
    await this.pool.query(
      'INSERT INTO blob_chunks (sha256, chunk_size, digests, sum) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO UPDATE SET chunk_size = EXCLUDED.chunk_size, digests = EXCLUDED.digests, sum = EXCLUDED.sum',
      [sha256, list.chunkSize, list.digests, list.sum],
    );
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

  // PullLog (pg-pulls.ts)
  appendPulls(recs: PullRecord[], link: ChainLink): Promise<void> {
    return this.pulls.appendPulls(recs, link);
  }

  listPulls(f: PullFilter): Promise<StoredPullRecord[]> {
    return this.pulls.listPulls(f);
  }

  scanPulls(): AsyncIterable<StoredPullRecord> {
    return this.pulls.scanPulls();
  }

  dailyCounts(since: number): Promise<{ day: number; ecosystem: StoredPullRecord['ecosystem']; decision: StoredPullRecord['decision']; count: number }[]> {
    return this.pulls.dailyCounts(since);
  }

  prunePulls(before: number, anchor: PruneAnchor, link: ChainLink, maxRows?: number, through?: number): Promise<number> {
    return this.pulls.prunePulls(before, anchor, link, maxRows, through);
  }

  pullSize(): Promise<{ rows: number; bytes: number }> {
    return this.pulls.pullSize();
  }

  prunePullsToSize(maxBytes: number, anchor: PruneAnchor, link: ChainLink, maxRows?: number): Promise<number> {
    return this.pulls.prunePullsToSize(maxBytes, anchor, link, maxRows);
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

  async recordOciFirstSeen(digest: string, at: number): Promise<number> {
    await this.pool.query('INSERT INTO oci_first_seen (digest, first_seen) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING', [digest, at]);
    return (await this.getOciFirstSeen(digest))!;
  }

  async getOciFirstSeen(digest: string): Promise<number | null> {
    return (await this.rows<{ first_seen: number }>('SELECT first_seen FROM oci_first_seen WHERE digest = $1', [digest]))[0]?.first_seen ?? null;
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
    return (await this.rows<TokenRow>('SELECT * FROM tokens ORDER BY name, id')).map(tokenOf);
  }

  async revokeToken(name: string): Promise<boolean> {
    return this.tx(async (c) => {
      await c.query('DELETE FROM console_sessions WHERE token_hash IN (SELECT hash FROM tokens WHERE name = $1 AND revoked_at IS NULL)', [name]);
      return ((await c.query('UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL', [Date.now(), name])).rowCount ?? 0) > 0;
    });
  }

  // ConsoleSessionStore (pg-console-sessions.ts)
  createConsoleSession(s: { key: string; tokenHash: string; expiresAt: number }, now: number): Promise<void> {
    return this.sessions.createConsoleSession(s, now);
  }

  findConsoleSession(key: string): Promise<ConsoleSessionRecord | null> {
    return this.sessions.findConsoleSession(key);
  }

  endConsoleSession(key: string): Promise<boolean> {
    return this.sessions.endConsoleSession(key);
  }

  consoleSecret(): Promise<string> {
    return this.sessions.consoleSecret();
  }

  // AdvisoryStore: pg-advisories.ts
  readonly putAdvisories: PgAdvisories['putAdvisories'] = (recs, source, older) => this.advisories.putAdvisories(recs, source, older);
  readonly listAdvisories = () => this.advisories.listAdvisories();
  readonly advisoryPage = (after: string | null, limit: number, maxChars?: number) => this.advisories.advisoryPage(after, limit, maxChars);
  readonly advisoryRecords = (ids: string[]) => this.advisories.advisoryRecords(ids);
  readonly advisoriesModified = (ids: string[]) => this.advisories.advisoriesModified(ids);
  readonly recordAdvisorySync: PgAdvisories['recordAdvisorySync'] = (recs, sync, older) => this.advisories.recordAdvisorySync(recs, sync, older);
  readonly advisorySyncs = (opts: SyncQuery) => this.advisories.advisorySyncs(opts);
  readonly advisoryGeneration = () => this.advisories.advisoryGeneration();
  readonly advisoriesTold = () => this.advisories.advisoriesTold();
  readonly markAdvisoriesTold = (generation: number) => this.advisories.markAdvisoriesTold(generation);
  readonly advisoryChangesSince = (generation: number) => this.advisories.advisoryChangesSince(generation);

  // TrustRootStore
  async putTrustRoot(r: { sha256: string; root: string }): Promise<void> {
    await this.pool.query('INSERT INTO trust_roots (sha256, root, imported_at) VALUES ($1, $2, $3)', [r.sha256, r.root, Date.now()]);
  }

  async latestTrustRoot(): Promise<{ sha256: string; root: string; importedAt: number } | null> {
    const [r] = await this.rows<{ sha256: string; root: string; imported_at: number }>(
      'SELECT sha256, root, imported_at FROM trust_roots ORDER BY id DESC LIMIT 1',
    );
    return r ? { sha256: r.sha256, root: r.root, importedAt: r.imported_at } : null;
  }

  // SignerStore
  async getSigner(ecosystem: string, project: string): Promise<SignerRecord | null> {
    const [r] = await this.rows<{ identity: string; version: string | null; recorded_at: number }>(
      'SELECT identity, version, recorded_at FROM signers WHERE ecosystem = $1 AND project = $2',
      [ecosystem, project],
    );
    return r ? { identity: r.identity, version: r.version, recordedAt: r.recorded_at } : null;
  }

  async recordSigner(ecosystem: string, project: string, s: { identity: string; version: string | null }): Promise<SignerRecord> {
    // One statement, the row inserted or the one there (a no-op update returns it): an INSERT then a SELECT found none when a forget came between.
    const [r] = await this.rows<{ identity: string; version: string | null; recorded_at: number }>(
      `INSERT INTO signers VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ecosystem, project) DO UPDATE SET identity = signers.identity RETURNING identity, version, recorded_at`,
      [ecosystem, project, s.identity, s.version, Date.now()],
    );
    return { identity: r.identity, version: r.version, recordedAt: r.recorded_at };
  }

  async setSigner(ecosystem: string, project: string, s: { identity: string; version: string | null } | null): Promise<boolean> {
    return this.tx(async (c) => {
      const had = ((await c.query('DELETE FROM signers WHERE ecosystem = $1 AND project = $2', [ecosystem, project])).rowCount ?? 0) > 0;
      if (s) await c.query('INSERT INTO signers VALUES ($1, $2, $3, $4, $5)', [ecosystem, project, s.identity, s.version, Date.now()]);
      return had;
    });
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
  async takeLease(sha256: string, owner: string, staleMs: number, addr?: string): Promise<boolean> {
    const now = Date.now();
    const r = await this.pool.query(
      `INSERT INTO fill_leases (sha256, owner, heartbeat, addr) VALUES ($1, $2, $3, $5)
       ON CONFLICT (sha256) DO UPDATE SET owner = EXCLUDED.owner, heartbeat = EXCLUDED.heartbeat, addr = EXCLUDED.addr
       WHERE fill_leases.owner = EXCLUDED.owner OR fill_leases.heartbeat < $4`,
      [sha256, owner, now, now - staleMs, addr ?? null],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async leaseHolder(sha256: string): Promise<{ owner: string; addr: string | null } | null> {
    const r = await this.pool.query<{ owner: string; addr: string | null }>('SELECT owner, addr FROM fill_leases WHERE sha256 = $1', [sha256]);
    return r.rows[0] ?? null;
  }

  async renewLease(sha256: string, owner: string): Promise<void> {
    await this.pool.query('UPDATE fill_leases SET heartbeat = $1 WHERE sha256 = $2 AND owner = $3', [Date.now(), sha256, owner]);
  }

  async releaseLease(sha256: string, owner: string): Promise<void> {
    const r = await this.pool.query('DELETE FROM fill_leases WHERE sha256 = $1 AND owner = $2', [sha256, owner]);
    if ((r.rowCount ?? 0) > 0) await this.pool.query('SELECT pg_notify($1, $2)', [this.channel, sha256]);
  }

  async awaitRelease(sha256: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const until = Date.now() + timeoutMs;
    const held = async () => (await this.pool.query('SELECT 1 FROM fill_leases WHERE sha256 = $1', [sha256])).rowCount! > 0;
    const listener = await this.listener();
    while (!signal?.aborted && (await held()) && Date.now() < until) {
      // Woken by the holder's NOTIFY, or the waiter's cancel (at once when it came while the store was asked); the poll (1 s) covers a holder that died without releasing.
      await new Promise<void>((resolve) => {
        const done = () => (clearTimeout(t), listener.off(sha256, done), signal?.removeEventListener('abort', done), resolve());
        const t = setTimeout(done, Math.min(1000, Math.max(1, until - Date.now())));
        listener.on(sha256, done);
        if (signal?.aborted) done();
        else signal?.addEventListener('abort', done, { once: true });
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
