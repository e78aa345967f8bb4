import Database from 'better-sqlite3';
import type {
  TokenRecord,
  ConsoleSessionRecord,
  ChainLink,
  BlobRecord,
  ChunkList,
  CachedPage,
  MetaStore,
  OciLink,
  OciManifestRecord,
  PullFilter,
  PruneAnchor,
  PullRecord,
  StoredPullRecord,
  SyncQuery,
} from './meta-store.js';
import { SqliteAlertStore } from './sqlite-alert-store.js';
import { SqliteInventoryStore } from './sqlite-inventory-store.js';
import { SqliteConsoleSessions } from './sqlite-console-sessions.js';
import { SqliteRemembered } from './sqlite-remembered.js';
import { SqliteAdvisories } from './sqlite-advisories.js';
import { SQLITE_MIGRATIONS } from './sqlite-schema.js';
import { checkpointInBackground, type Checkpointer } from './sqlite-checkpointer.js';
import {
  PULL_COLUMNS,
  ROW_BYTES_SQL,
  dayTakeBackSql,
  dayTally,
  pullOf,
  pullSearchSql,
  pullValues,
  retentionEndSql,
  sizeEndSql,
  type PullRow,
} from './pull-rows.js';

const DAY_MS = 86_400_000;
interface TokenRow {
  name: string;
  hash: string;
  admin: number;
  created_at: number;
  revoked_at: number | null;
}

const tokenOf = (r: TokenRow): TokenRecord => ({ name: r.name, hash: r.hash, admin: r.admin === 1, createdAt: r.created_at, revokedAt: r.revoked_at });

/** SQLite (better-sqlite3, WAL) implementation of MetaStore: the embedded default. */
export class SqliteMetaStore extends SqliteRemembered implements MetaStore {
  protected readonly db: Database.Database;
  private readonly stmts;
  readonly inventories: SqliteInventoryStore;
  readonly alerts: SqliteAlertStore;
  private readonly sessions: SqliteConsoleSessions;
  private readonly advisories: SqliteAdvisories;

  constructor(path: string) {
    super();
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a committed transaction survives a process crash; an OS crash may lose
    // the last ones, never corrupts. Blob files themselves are fsynced before their row exists.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    this.inventories = new SqliteInventoryStore(this.db);
    this.alerts = new SqliteAlertStore(this.db);
    this.sessions = new SqliteConsoleSessions(this.db);
    this.advisories = new SqliteAdvisories(this.db);
    this.stmts = {
      getBlob: this.db.prepare<[string], { sha256: string; size: number; created_at: number }>('SELECT sha256, size, created_at FROM blobs WHERE sha256 = ?'),
      putBlob: this.db.prepare('INSERT OR REPLACE INTO blobs (sha256, size, created_at, used_at) VALUES (?, ?, ?, ?)'),
      touchBlob: this.db.prepare('UPDATE blobs SET used_at = ? WHERE sha256 = ? AND used_at < ?'),
      deleteBlob: this.db.prepare('DELETE FROM blobs WHERE sha256 = ?'),
      deleteChunks: this.db.prepare('DELETE FROM blob_chunks WHERE sha256 = ?'),
      getChunks: this.db.prepare<[string], { chunk_size: number; digests: Buffer; sum: string }>(
        'SELECT chunk_size, digests, sum FROM blob_chunks WHERE sha256 = ?',
      ),
      putChunks: this.db.prepare('INSERT OR REPLACE INTO blob_chunks (sha256, chunk_size, digests, sum) VALUES (?, ?, ?, ?)'),
      getPage: this.db.prepare<[string], { key: string; body: string; fetched_at: number; etag: string | null }>(
        'SELECT key, body, fetched_at, etag FROM pages WHERE key = ?',
      ),
      putPage: this.db.prepare('INSERT OR REPLACE INTO pages (key, body, fetched_at, etag) VALUES (?, ?, ?, ?)'),
      insertPull: this.db.prepare(
        // Positional parameters: measurably cheaper than named ones on the per-pull path.
        `INSERT INTO pulls (${PULL_COLUMNS.join(', ')}) VALUES (${PULL_COLUMNS.map(() => '?').join(', ')})`,
      ),
      getOciManifest: this.db.prepare<[string], { digest: string; media_type: string; size: number }>(
        'SELECT digest, media_type, size FROM oci_manifests WHERE digest = ?',
      ),
      putOciManifest: this.db.prepare('INSERT OR REPLACE INTO oci_manifests (digest, media_type, size) VALUES (?, ?, ?)'),
      putOciLink: this.db.prepare('INSERT OR IGNORE INTO oci_links (repo, parent, child, size, kind) VALUES (?, ?, ?, ?, ?)'),
      lastHash: this.db.prepare<[], { id: number; hash: string | null }>('SELECT id, hash FROM pulls ORDER BY id DESC LIMIT 1'),
      growSize: this.db.prepare<[number, number]>(
        `UPDATE pull_size SET rows = rows + ?, bytes = bytes + (SELECT COALESCE(SUM(${ROW_BYTES_SQL}), 0) FROM pulls WHERE id > ?)`,
      ),
      tallyDay: this.db.prepare(
        'INSERT INTO pull_days (day, ecosystem, decision, count) VALUES (?, ?, ?, ?) ON CONFLICT (day, ecosystem, decision) DO UPDATE SET count = count + excluded.count',
      ),
      getScan: this.db.prepare<[string], { scanner: string; report: string }>('SELECT scanner, report FROM scans WHERE sha256 = ?'),
      putScan: this.db.prepare('INSERT OR REPLACE INTO scans (sha256, scanner, report, scanned_at) VALUES (?, ?, ?, ?)'),
      listScans: this.db.prepare<[], { sha256: string; scanner: string }>('SELECT sha256, scanner FROM scans ORDER BY sha256'),
      getAlias: this.db.prepare<[string, string], { sha256: string }>('SELECT sha256 FROM aliases WHERE kind = ? AND key = ?'),
      putAlias: this.db.prepare('INSERT OR REPLACE INTO aliases (kind, key, sha256) VALUES (?, ?, ?)'),
      getOciParents: this.db.prepare<[string, string], { parent: string; size: number; kind: OciLink['kind'] }>(
        'SELECT parent, size, kind FROM oci_links WHERE repo = ? AND child = ?',
      ),
    };
  }

  private migrate(): void {
    const version = () => this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version(); v < SQLITE_MIGRATIONS.length; v = version()) {
      // IMMEDIATE, and the version read again under the write lock: two processes opening one
      // database together apply each step once.
      this.db
        .transaction(() => {
          const now = version();
          if (now >= SQLITE_MIGRATIONS.length) return;
          this.db.exec(SQLITE_MIGRATIONS[now]);
          this.db.pragma(`user_version = ${now + 1}`);
        })
        .immediate();
    }
  }

  async getBlob(sha256: string): Promise<BlobRecord | null> {
    const r = this.stmts.getBlob.get(sha256);
    return r ? { sha256: r.sha256, size: r.size, createdAt: r.created_at } : null;
  }

  async putBlob(rec: BlobRecord): Promise<void> {
    this.stmts.putBlob.run(rec.sha256, rec.size, rec.createdAt, rec.createdAt);
  }

  async touchBlobs(sha256s: string[], at: number): Promise<void> {
    this.db
      .transaction(() => {
        for (const h of sha256s) this.stmts.touchBlob.run(at, h, at);
      })
      .immediate();
  }

  async blobTotals(): Promise<{ count: number; bytes: number }> {
    const r = this.db.prepare<[], { count: number; bytes: number | null }>('SELECT COUNT(*) AS count, SUM(size) AS bytes FROM blobs').get()!;
    return { count: r.count, bytes: r.bytes ?? 0 };
  }

  async leastRecentlyUsed(limit: number): Promise<(BlobRecord & { usedAt: number })[]> {
    return this.db
      .prepare<[number], { sha256: string; size: number; created_at: number; used_at: number }>(
        'SELECT sha256, size, created_at, used_at FROM blobs ORDER BY used_at, sha256 LIMIT ?',
      )
      .all(limit)
      .map((r) => ({ sha256: r.sha256, size: r.size, createdAt: r.created_at, usedAt: r.used_at }));
  }

  async listBlobs(after: string, limit: number): Promise<BlobRecord[]> {
    return this.db
      .prepare<[string, number], { sha256: string; size: number; created_at: number }>(
        'SELECT sha256, size, created_at FROM blobs WHERE sha256 > ? ORDER BY sha256 LIMIT ?',
      )
      .all(after, limit)
      .map((r) => ({ sha256: r.sha256, size: r.size, createdAt: r.created_at }));
  }

  async deleteBlob(sha256: string): Promise<void> {
    this.db
      .transaction(() => {
        this.stmts.deleteBlob.run(sha256);
        this.stmts.deleteChunks.run(sha256);
      })
      .immediate();
  }

  async getChunks(sha256: string): Promise<ChunkList | null> {
    const r = this.stmts.getChunks.get(sha256);
    return r ? { chunkSize: r.chunk_size, digests: r.digests, sum: r.sum } : null;
  }

  async putChunks(sha256: string, list: ChunkList): Promise<void> {
    this.stmts.putChunks.run(sha256, list.chunkSize, list.digests, list.sum);
  }

  async getPage(key: string): Promise<CachedPage | null> {
    const r = this.stmts.getPage.get(key);
    return r ? { key: r.key, body: r.body, fetchedAt: r.fetched_at, etag: r.etag } : null;
  }

  async putPage(page: CachedPage): Promise<void> {
    this.stmts.putPage.run(page.key, page.body, page.fetchedAt, page.etag ?? null);
  }

  async appendPulls(recs: PullRecord[], link: ChainLink): Promise<void> {
    this.insertPulls(recs, link);
  }

  /** One transaction (nested in a prune's: a savepoint); its wrapper built once, not per batch. */
  private readonly insertPulls: (recs: PullRecord[], link: ChainLink) => void = (recs, link) =>
    (this.insertTx ??= this.db.transaction(this.insertRows)).immediate(recs, link);
  private insertTx: Database.Transaction<(recs: PullRecord[], link: ChainLink) => void> | undefined;
  private readonly insertRows = (recs: PullRecord[], link: ChainLink) => {
    // One writer per database (SQLite serialises transactions): each row links to the head it follows.
    const last = this.stmts.lastHash.get();
    let head = last?.hash ?? null;
    for (const rec of recs) {
      const { prevHash, hash } = link(head, rec);
      this.stmts.insertPull.run(...pullValues(rec, prevHash, hash));
      head = hash;
    }
    for (const t of dayTally(recs)) this.stmts.tallyDay.run(...t);
    this.stmts.growSize.run(recs.length, last?.id ?? 0);
  };

  async *scanPulls(): AsyncIterable<StoredPullRecord> {
    // Pages by id, so that no statement stays open across the consumer's awaits; the event loop gets
    // a turn every ten pages (the console verifies in the server: 500,000 rows had stopped it 3.2 s).
    let after = 0;
    const page = this.db.prepare<[number], PullRow>('SELECT * FROM pulls WHERE id > ? ORDER BY id LIMIT 1000');
    for (let n = 1; ; n++) {
      const rows = page.all(after);
      if (rows.length === 0) return;
      for (const r of rows) yield pullOf(r);
      after = rows[rows.length - 1].id;
      if (n % 10 === 0) await new Promise((r) => setImmediate(r));
    }
  }

  async dailyCounts(
    since: number,
  ): Promise<{ day: number; ecosystem: StoredPullRecord['ecosystem']; decision: StoredPullRecord['decision']; count: number }[]> {
    return this.db
      .prepare<[number], { day: number; ecosystem: StoredPullRecord['ecosystem']; decision: StoredPullRecord['decision']; count: number }>(
        'SELECT day, ecosystem, decision, count FROM pull_days WHERE day >= ? ORDER BY day, ecosystem, decision',
      )
      .all(Math.floor(since / DAY_MS) * DAY_MS);
  }

  async prunePulls(before: number, anchor: PruneAnchor, link: ChainLink, maxRows = Number.MAX_SAFE_INTEGER, through?: number): Promise<number> {
    const args: unknown[] = [];
    const sql = retentionEndSql(before, maxRows, (v) => (args.push(v), '?'), through);
    return this.pruneThrough(() => this.db.prepare<unknown[], { id: number; hash: string | null }>(sql).get(...args), anchor, link);
  }

  async pullSize(): Promise<{ rows: number; bytes: number }> {
    return this.db.prepare<[], { rows: number; bytes: number }>('SELECT rows, bytes FROM pull_size WHERE id = 1').get() ?? { rows: 0, bytes: 0 };
  }

  async prunePullsToSize(maxBytes: number, anchor: PruneAnchor, link: ChainLink, maxRows = Number.MAX_SAFE_INTEGER): Promise<number> {
    const find = () => {
      const size = this.db.prepare<[], { bytes: number }>('SELECT bytes FROM pull_size WHERE id = 1').get()?.bytes ?? 0;
      if (size <= maxBytes) return undefined;
      const args: unknown[] = [];
      const sql = sizeEndSql(size - maxBytes, maxRows, (v) => (args.push(v), '?'));
      return this.db.prepare<unknown[], { id: number; hash: string | null }>(sql).get(...args);
    };
    return this.pruneThrough(find, anchor, link);
  }

  /** Delete the rows through the one `find` names (in the transaction) and append the chained anchor; keeps pull_days and pull_size. */
  private pruneThrough(find: () => { id: number; hash: string | null } | undefined, anchor: PruneAnchor, link: ChainLink): number {
    let n = 0;
    this.db
      .transaction(() => {
        const last = find();
        if (!last) return;
        const span = this.db
          .prepare<[number], { lo: number; hi: number; bytes: number }>(
            `SELECT MIN(ts) AS lo, MAX(ts) AS hi, SUM(${ROW_BYTES_SQL}) AS bytes FROM pulls WHERE id <= ?`,
          )
          .get(last.id)!;
        // What the removed rows added to the days they were in is taken back (reading only them).
        this.db.prepare(dayTakeBackSql('?')).run(last.id);
        n = this.db.prepare('DELETE FROM pulls WHERE id <= ?').run(last.id).changes;
        this.db.prepare('UPDATE pull_size SET rows = MAX(0, rows - ?), bytes = MAX(0, bytes - ?)').run(n, span.bytes ?? 0);
        const lo = Math.floor(span.lo / DAY_MS) * DAY_MS;
        const hi = Math.floor(span.hi / DAY_MS) * DAY_MS;
        this.db.prepare('DELETE FROM pull_days WHERE day BETWEEN ? AND ? AND count <= 0').run(lo, hi);
        this.insertPulls([anchor(last, n)], link);
      })
      .immediate();
    return n;
  }

  async listPulls(f: PullFilter): Promise<StoredPullRecord[]> {
    const args: unknown[] = [];
    const rows = this.db.prepare<unknown[], PullRow>(pullSearchSql(f, (v) => (args.push(v), '?'))).all(...args);
    return rows.map(pullOf);
  }

  async getOciManifest(digest: string): Promise<OciManifestRecord | null> {
    const r = this.stmts.getOciManifest.get(digest);
    return r ? { digest: r.digest, mediaType: r.media_type, size: r.size } : null;
  }

  async putOciManifest(repo: string, m: OciManifestRecord, children: OciLink[]): Promise<void> {
    this.db
      .transaction(() => {
        this.stmts.putOciManifest.run(m.digest, m.mediaType, m.size);
        for (const c of children) this.stmts.putOciLink.run(repo, m.digest, c.digest, c.size, c.kind);
      })
      .immediate();
  }

  async addOciLinks(repo: string, parent: string, children: OciLink[]): Promise<void> {
    this.db
      .transaction(() => {
        for (const c of children) this.stmts.putOciLink.run(repo, parent, c.digest, c.size, c.kind);
      })
      .immediate();
  }

  async getOciParents(repo: string, digest: string): Promise<{ parent: string; size: number; kind: OciLink['kind'] }[]> {
    return this.stmts.getOciParents.all(repo, digest);
  }

  async getScan(sha256: string): Promise<{ scanner: string; report: string } | null> {
    return this.stmts.getScan.get(sha256) ?? null;
  }

  async putScan(sha256: string, scanner: string, report: string): Promise<void> {
    this.stmts.putScan.run(sha256, scanner, report, Date.now());
  }

  async listScans(): Promise<{ sha256: string; scanner: string }[]> {
    return this.stmts.listScans.all();
  }

  async createToken(t: { name: string; hash: string; admin: boolean }): Promise<void> {
    this.db.prepare('INSERT INTO tokens (name, hash, admin, created_at) VALUES (?, ?, ?, ?)').run(t.name, t.hash, t.admin ? 1 : 0, Date.now());
  }

  async findToken(hash: string): Promise<TokenRecord | null> {
    const r = this.db.prepare<[string], TokenRow>('SELECT * FROM tokens WHERE hash = ?').get(hash);
    return r ? tokenOf(r) : null;
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.db.prepare<[], TokenRow>('SELECT * FROM tokens ORDER BY name, id').all().map(tokenOf);
  }

  async revokeToken(name: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM console_sessions WHERE token_hash IN (SELECT hash FROM tokens WHERE name = ? AND revoked_at IS NULL)').run(name);
        return this.db.prepare('UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL').run(Date.now(), name).changes > 0;
      })
      .immediate();
  }

  // ConsoleSessionStore (sqlite-console-sessions.ts)
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

  // AdvisoryStore: sqlite-advisories.ts
  readonly putAdvisories: SqliteAdvisories['putAdvisories'] = (recs, source, older) => this.advisories.putAdvisories(recs, source, older);
  readonly listAdvisories = () => this.advisories.listAdvisories();
  readonly advisoryPage = (after: string | null, limit: number, maxChars?: number) => this.advisories.advisoryPage(after, limit, maxChars);
  readonly advisoryRecords = (ids: string[]) => this.advisories.advisoryRecords(ids);
  readonly advisoriesModified = (ids: string[]) => this.advisories.advisoriesModified(ids);
  readonly recordAdvisorySync: SqliteAdvisories['recordAdvisorySync'] = (recs, sync, older) => this.advisories.recordAdvisorySync(recs, sync, older);
  readonly advisorySyncs = (opts: SyncQuery) => this.advisories.advisorySyncs(opts);
  readonly advisoryGeneration = () => this.advisories.advisoryGeneration();
  readonly advisoriesTold = () => this.advisories.advisoriesTold();
  readonly markAdvisoriesTold = (generation: number) => this.advisories.markAdvisoriesTold(generation);
  readonly advisoryChangesSince = (generation: number) => this.advisories.advisoryChangesSince(generation);

  async putTrustRoot(r: { sha256: string; root: string }): Promise<void> {
    this.db.prepare('INSERT INTO trust_roots (sha256, root, imported_at) VALUES (?, ?, ?)').run(r.sha256, r.root, Date.now());
  }

  async latestTrustRoot(): Promise<{ sha256: string; root: string; importedAt: number } | null> {
    const r = this.db
      .prepare<[], { sha256: string; root: string; imported_at: number }>('SELECT sha256, root, imported_at FROM trust_roots ORDER BY id DESC LIMIT 1')
      .get();
    return r ? { sha256: r.sha256, root: r.root, importedAt: r.imported_at } : null;
  }

  async getAlias(kind: string, key: string): Promise<string | null> {
    return this.stmts.getAlias.get(kind, key)?.sha256 ?? null;
  }

  async putAlias(kind: string, key: string, sha256: string): Promise<void> {
    this.stmts.putAlias.run(kind, key, sha256);
  }

  async takeLease(sha256: string, owner: string, staleMs: number, addr?: string): Promise<boolean> {
    const now = Date.now();
    return (
      this.db
        .prepare(
          `INSERT INTO fill_leases (sha256, owner, heartbeat, addr) VALUES (?, ?, ?, ?)
           ON CONFLICT (sha256) DO UPDATE SET owner = excluded.owner, heartbeat = excluded.heartbeat, addr = excluded.addr
           WHERE fill_leases.owner = excluded.owner OR fill_leases.heartbeat < ?`,
        )
        .run(sha256, owner, now, addr ?? null, now - staleMs).changes > 0
    );
  }

  async leaseHolder(sha256: string): Promise<{ owner: string; addr: string | null } | null> {
    return this.db.prepare<[string], { owner: string; addr: string | null }>('SELECT owner, addr FROM fill_leases WHERE sha256 = ?').get(sha256) ?? null;
  }

  async renewLease(sha256: string, owner: string): Promise<void> {
    this.db.prepare('UPDATE fill_leases SET heartbeat = ? WHERE sha256 = ? AND owner = ?').run(Date.now(), sha256, owner);
  }

  async releaseLease(sha256: string, owner: string): Promise<void> {
    this.db.prepare('DELETE FROM fill_leases WHERE sha256 = ? AND owner = ?').run(sha256, owner);
  }

  async awaitRelease(sha256: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const q = this.db.prepare<[string], { owner: string }>('SELECT owner FROM fill_leases WHERE sha256 = ?');
    const until = Date.now() + timeoutMs;
    while (!signal?.aborted && q.get(sha256) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  }

  private checkpoints: Checkpointer | undefined;

  /** While serving: WAL checkpoints on a thread of their own, not in the commit of a pull batch (sqlite-checkpointer.ts). */
  checkpointInBackground(onFailure: (why: string) => void): void {
    this.checkpoints ??= checkpointInBackground(this.db, onFailure);
  }

  async close(): Promise<void> {
    await this.checkpoints?.stop();
    this.db.close();
  }
}
