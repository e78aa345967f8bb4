import type Database from 'better-sqlite3';
import type { InventoryPackageRow, InventoryStore } from './inventory-store.js';

/** The schema step SqliteMetaStore runs for this seam (its tables live in the same database). */
export const INVENTORY_MIGRATION = `CREATE TABLE image_layers (
     sha256 TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     facts TEXT NOT NULL
   );
   CREATE TABLE image_inventories (
     digest TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     inventory TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE image_packages (
     digest TEXT NOT NULL,
     type TEXT NOT NULL,
     name TEXT NOT NULL,
     version TEXT NOT NULL,
     source TEXT
   );
   CREATE INDEX image_packages_name ON image_packages (type, name);
   CREATE INDEX image_packages_source ON image_packages (type, source);
   CREATE INDEX image_packages_digest ON image_packages (digest);`;

export class SqliteInventoryStore implements InventoryStore {
  private readonly s;

  constructor(private readonly db: Database.Database) {
    this.s = {
      getLayer: db.prepare<[string], { version: number; facts: string }>('SELECT version, facts FROM image_layers WHERE sha256 = ?'),
      putLayer: db.prepare('INSERT OR REPLACE INTO image_layers (sha256, version, facts) VALUES (?, ?, ?)'),
      getInv: db.prepare<[string], { version: number; inventory: string; created_at: number }>(
        'SELECT version, inventory, created_at FROM image_inventories WHERE digest = ?',
      ),
      putInv: db.prepare('INSERT OR REPLACE INTO image_inventories (digest, version, inventory, created_at) VALUES (?, ?, ?, ?)'),
      delPkgs: db.prepare('DELETE FROM image_packages WHERE digest = ?'),
      putPkg: db.prepare('INSERT INTO image_packages (digest, type, name, version, source) VALUES (?, ?, ?, ?, ?)'),
      withPkg: db.prepare<[string, string, string, string], { digest: string; name: string; version: string; source: string | null }>(
        `SELECT digest, name, version, source FROM image_packages WHERE type = ? AND name = ?
         UNION SELECT digest, name, version, source FROM image_packages WHERE type = ? AND source = ?
         ORDER BY digest, name`,
      ),
      list: db.prepare<[], { digest: string }>('SELECT digest FROM image_inventories ORDER BY digest'),
    };
  }

  async getLayerFacts(sha256: string): Promise<{ version: number; facts: string } | null> {
    return this.s.getLayer.get(sha256) ?? null;
  }

  async putLayerFacts(sha256: string, version: number, facts: string): Promise<void> {
    this.s.putLayer.run(sha256, version, facts);
  }

  async getInventory(digest: string): Promise<{ version: number; inventory: string; createdAt: number } | null> {
    const r = this.s.getInv.get(digest);
    return r ? { version: r.version, inventory: r.inventory, createdAt: r.created_at } : null;
  }

  async putInventory(digest: string, version: number, inventory: string, packages: InventoryPackageRow[]): Promise<void> {
    this.db
      .transaction(() => {
        this.s.putInv.run(digest, version, inventory, Date.now());
        this.s.delPkgs.run(digest);
        for (const p of packages) this.s.putPkg.run(digest, p.type, p.name, p.version, p.source ?? null);
      })
      .immediate();
  }

  async imagesWithPackage(type: string, name: string): Promise<{ digest: string; name: string; version: string; source: string | null }[]> {
    return this.s.withPkg.all(type, name, type, name);
  }

  async listInventories(): Promise<string[]> {
    return this.s.list.all().map((r) => r.digest);
  }
}
