import type { Logger } from 'pino';
import { AirlockError } from '../core/errors.js';
import { SingleFlight } from '../core/flight.js';
import type { SpoolFollow, UpstreamBody } from '../core/fill.js';
import type { BlobCache } from '../core/cache.js';
import { LayerReaderPool, type ReadPriority } from '../image/reader-pool.js';
import { FACTS_VERSION, type LayerFacts } from '../image/facts.js';
import { applyLayers, type Inventory } from '../image/inventory.js';
import { readLayer } from '../image/layer.js';
import { sequential } from '../scan/archive.js';
import type { InventoryStore } from '../storage/inventory-store.js';

/** Bumped when what an inventory holds changes: stored inventories of an older version are recomputed. */
export const INVENTORY_VERSION = 2;

/** Layer media types that are filesystem tars (plain, gzip, zstd; OCI and Docker names). */
const LAYER_TYPES = /^application\/vnd\.(oci\.image\.layer\.v1\.tar|docker\.image\.rootfs\.diff\.tar)(\+gzip|\+zstd|\.gzip)?$/;
const IMAGE_CONFIGS = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);

export interface LayerRef {
  digest: string;
  size: number;
}

/** The filesystem layers of an image manifest, in order; null for manifests that are not images (signatures, artifacts). */
export function imageLayers(manifest: Buffer): LayerRef[] | null {
  const doc = JSON.parse(manifest.toString('utf8')) as { config?: { mediaType?: string }; layers?: { mediaType?: string; digest: string; size: number }[] };
  if (!doc.layers || !IMAGE_CONFIGS.has(doc.config?.mediaType ?? '')) return null;
  return doc.layers.filter((l) => LAYER_TYPES.test(l.mediaType ?? '')).map((l) => ({ digest: l.digest, size: l.size }));
}

const LAYER_CONCURRENCY = 3;

/**
 * Image inventories, computed once: each layer's facts are read as the layer passes through the
 * verified fill (a client's pull, or the gate fetching it) and kept only once its digest matched;
 * an image's inventory is its layers' facts applied in order, stored by manifest digest.
 */
export class ImageInventories {
  private readonly layerFlights = new SingleFlight<string, LayerFacts>();
  private readonly imageFlights = new SingleFlight<string, Inventory>();

  constructor(
    private readonly cache: BlobCache,
    private readonly store: InventoryStore,
    private readonly log: Logger,
    private readonly readers: LayerReaderPool = new LayerReaderPool((msg, fields) => log.info(fields, msg)),
  ) {}

  /** Start a reader process ahead of the first layer (the server does, at start). */
  warm(priority: ReadPriority = 'background'): this {
    this.readers.warm(priority);
    return this;
  }

  /** Stop the reader process (server shutdown, the end of a command). */
  close(): void {
    this.readers.close();
  }

  /**
   * For a blob fill: read the layer as it is written (in a reader process); keep its facts if the
   * fill verifies. 'urgent' when a client waits for the facts (the gate's manifest answer), read
   * at normal CPU priority; 'background' (a client's pull) at the lowest (reader-pool.ts).
   */
  observer(hex: string, priority: ReadPriority = 'background'): (spool: SpoolFollow, verified: Promise<boolean>) => Promise<void> | void {
    return (spool, verified) => {
      if (this.layerFlights.has(hex)) return;
      const read = this.readers.read(spool, verified, `sha256:${hex}`, priority);
      const p = this.layerFlights.run(hex, async () => {
        const facts = await read.facts;
        if (!(await verified)) throw new AirlockError('DIGEST_MISMATCH', `sha256:${hex} did not verify; its inventory was discarded`);
        await this.store.putLayerFacts(hex, FACTS_VERSION, JSON.stringify(facts));
        return facts;
      });
      p.catch((e) => this.log.debug({ sha256: hex, err: (e as Error).message }, 'layer not inventoried while filling'));
      return read.opened;
    };
  }

  private async storedFacts(hex: string): Promise<LayerFacts | null> {
    const s = await this.store.getLayerFacts(hex);
    return s && s.version === FACTS_VERSION ? (JSON.parse(s.facts) as LayerFacts) : null;
  }

  /** A layer's facts: stored, being read, read from the cache, or fetched through the verified fill. */
  async layerFacts(layer: LayerRef, open: (signal: AbortSignal) => Promise<UpstreamBody>): Promise<LayerFacts> {
    const hex = layer.digest.slice('sha256:'.length);
    const stored = await this.storedFacts(hex);
    if (stored) return stored;
    const flying = this.layerFlights.get(hex);
    if (flying) {
      try {
        return await flying;
      } catch {
        /* read it below */
      }
    }
    // Read from verified chunks (cache.fileBytes): a copy found rotted is forgotten and fetched again below.
    const cached = await this.cache.fileBytes(hex);
    if (cached) {
      try {
        return await this.fromCache(hex, cached);
      } catch (e) {
        if ((e as AirlockError).code !== 'DIGEST_MISMATCH') throw e;
      }
    }
    // Nobody reads the fill: it goes on to its digest and the observer reads the layer, at normal
    // priority (a client waits for the manifest). Answered once the bytes are verified, not after
    // the commit's fsync (~0.6 s per GiB here): the client's layer request that follows joins the
    // committing fill and reads its spool file (issue 29).
    const filled = await this.cache.ensure({ sha256: hex, size: layer.size, open, observe: this.observer(hex, 'urgent') });
    const observed = this.layerFlights.get(hex);
    if (observed) {
      try {
        return await observed;
      } catch {
        /* read it below */
      }
    }
    const again = await this.storedFacts(hex);
    if (again) return again;
    // A fill that started without an observer (another front-end's): read the blob once it is stored.
    if (!(await filled.stored)) throw new AirlockError('INTERNAL', `sha256:${hex} verified but could not be stored; its inventory could not be read`);
    const bytes = await this.cache.fileBytes(hex);
    if (!bytes) throw new AirlockError('INTERNAL', `sha256:${hex} is not in the cache after its fill`);
    return this.fromCache(hex, bytes);
  }

  private fromCache(hex: string, bytes: NonNullable<Awaited<ReturnType<BlobCache['fileBytes']>>>): Promise<LayerFacts> {
    return this.layerFlights.run(hex, async () => {
      const facts = await readLayer(sequential(bytes), `sha256:${hex}`);
      await this.store.putLayerFacts(hex, FACTS_VERSION, JSON.stringify(facts));
      return facts;
    });
  }

  /** The stored inventory of a manifest, if one was computed. */
  async stored(digest: string): Promise<Inventory | null> {
    const s = await this.store.getInventory(digest);
    return s && s.version === INVENTORY_VERSION ? (JSON.parse(s.inventory) as Inventory) : null;
  }

  /** The inventory of an image manifest: stored, or computed from its layers (fetching those not cached). */
  async inventory(digest: string, layers: LayerRef[], open: (layer: LayerRef) => (signal: AbortSignal) => Promise<UpstreamBody>): Promise<Inventory> {
    const stored = await this.stored(digest);
    if (stored) return stored;
    return this.imageFlights.run(digest, async () => {
      const facts: LayerFacts[] = new Array(layers.length);
      let next = 0;
      const worker = async () => {
        while (next < layers.length) {
          const i = next++;
          facts[i] = await this.layerFacts(layers[i], open(layers[i]));
        }
      };
      await Promise.all(Array.from({ length: Math.min(LAYER_CONCURRENCY, layers.length) }, worker));
      const inv = applyLayers(facts);
      await this.store.putInventory(
        digest,
        INVENTORY_VERSION,
        JSON.stringify(inv),
        inv.packages.map((p) => ({ type: p.type, name: p.name, version: p.version, source: p.source ?? null })),
      );
      return inv;
    });
  }
}
