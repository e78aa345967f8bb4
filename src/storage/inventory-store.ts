/**
 * Image inventories (one seam of the metadata store, held to test/contract/inventory-store.ts):
 * what each layer says about installed software, computed once per layer digest, and each image
 * manifest's inventory with its packages indexed for "which images contain X?". Facts and
 * inventories are opaque JSON here; their meaning lives in src/image.
 */
export interface InventoryPackageRow {
  type: string;
  name: string;
  version: string;
  /** Source package, when the ecosystem has one (dpkg, apk origin, rpm source rpm). */
  source?: string | null;
}

export interface InventoryStore {
  /** A layer's facts (JSON) and the format version they were written in. */
  getLayerFacts(sha256: string): Promise<{ version: number; facts: string } | null>;
  putLayerFacts(sha256: string, version: number, facts: string): Promise<void>;
  /** A manifest's inventory (JSON), by manifest digest ("sha256:<hex>"). */
  getInventory(digest: string): Promise<{ version: number; inventory: string; createdAt: number } | null>;
  /** Store (or replace) a manifest's inventory and the packages it lists, atomically. */
  putInventory(digest: string, version: number, inventory: string, packages: InventoryPackageRow[]): Promise<void>;
  /** Manifests whose inventory lists a package of this type named `name` (binary or source name). */
  imagesWithPackage(type: string, name: string): Promise<{ digest: string; name: string; version: string; source: string | null }[]>;
  /** Every manifest digest that has an inventory. */
  listInventories(): Promise<string[]>;
}
