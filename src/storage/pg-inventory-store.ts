import type pg from 'pg';
import type { InventoryPackageRow, InventoryStore } from './inventory-store.js';

/** Image inventories in the same PostgreSQL database (held to test/contract/inventory-store.ts). */
export class PgInventoryStore implements InventoryStore {
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
