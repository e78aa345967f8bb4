import { describe, expect, it } from 'vitest';
import type { InventoryStore } from '../../src/storage/inventory-store.js';

/**
 * The contract every InventoryStore backend must pass (as distribution's storage-driver suites
 * hold each driver to one behaviour). Call it from a backend's test file with a factory that
 * returns a fresh, empty store.
 */
export function inventoryStoreContract(name: string, fresh: () => Promise<InventoryStore>): void {
  describe(`InventoryStore contract: ${name}`, () => {
    it('keeps layer facts by digest with their format version, and replaces them', async () => {
      const s = await fresh();
      expect(await s.getLayerFacts('a'.repeat(64))).toBeNull();
      await s.putLayerFacts('a'.repeat(64), 1, '{"x":1}');
      expect(await s.getLayerFacts('a'.repeat(64))).toEqual({ version: 1, facts: '{"x":1}' });
      await s.putLayerFacts('a'.repeat(64), 2, '{"x":2}');
      expect(await s.getLayerFacts('a'.repeat(64))).toEqual({ version: 2, facts: '{"x":2}' });
    });

    it('keeps inventories by manifest digest and indexes their packages by binary and source name', async () => {
      const s = await fresh();
      const d1 = `sha256:${'1'.repeat(64)}`;
      const d2 = `sha256:${'2'.repeat(64)}`;
      expect(await s.getInventory(d1)).toBeNull();
      const before = Date.now();
      await s.putInventory(d1, 1, '{"one":1}', [
        { type: 'deb', name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' },
        { type: 'deb', name: 'openssl', version: '3.0.11-1~deb12u2', source: 'openssl' },
        { type: 'pypi', name: 'urllib3', version: '2.8.0' },
      ]);
      await s.putInventory(d2, 1, '{"two":2}', [{ type: 'deb', name: 'libssl3', version: '3.0.15-1~deb12u1', source: 'openssl' }]);
      const got = await s.getInventory(d1);
      expect(got).toMatchObject({ version: 1, inventory: '{"one":1}' });
      expect(got!.createdAt).toBeGreaterThanOrEqual(before - 1000);
      expect(await s.listInventories()).toEqual([d1, d2]);
      expect(await s.imagesWithPackage('deb', 'openssl')).toEqual([
        { digest: d1, name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' },
        { digest: d1, name: 'openssl', version: '3.0.11-1~deb12u2', source: 'openssl' },
        { digest: d2, name: 'libssl3', version: '3.0.15-1~deb12u1', source: 'openssl' },
      ]);
      expect(await s.imagesWithPackage('pypi', 'urllib3')).toEqual([{ digest: d1, name: 'urllib3', version: '2.8.0', source: null }]);
      expect(await s.imagesWithPackage('apk', 'openssl')).toEqual([]);
    });

    it('replaces an inventory and its package rows together', async () => {
      const s = await fresh();
      const d = `sha256:${'3'.repeat(64)}`;
      await s.putInventory(d, 1, '{}', [{ type: 'deb', name: 'a', version: '1', source: 'a' }]);
      await s.putInventory(d, 2, '{"v":2}', [{ type: 'deb', name: 'b', version: '2', source: 'b' }]);
      expect(await s.imagesWithPackage('deb', 'a')).toEqual([]);
      expect(await s.imagesWithPackage('deb', 'b')).toHaveLength(1);
      expect((await s.getInventory(d))!.version).toBe(2);
    });
  });
}
