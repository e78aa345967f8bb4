import { normalizeName } from '../names/pypi.js';
import type { LayerFacts, PackageType, Pkg } from './facts.js';

export interface InventoryPackage extends Pkg {
  type: PackageType;
  /** Where it was found (the database file, or the dist-info directory). */
  location: string;
}

export interface ImageOs {
  id: string;
  versionId?: string;
  prettyName?: string;
  /** The OSV ecosystem its packages' advisories are filed under (Debian:12, Alpine:v3.20, Ubuntu:22.04:LTS), when known. */
  ecosystem?: string;
}

export interface Inventory {
  os?: ImageOs;
  packages: InventoryPackage[];
  /** Databases found but not read: an inventory with any is incomplete. */
  unreadable: string[];
  /** How many layers were applied. */
  layers: number;
}

/** The OSV ecosystem name of an os-release (osv.dev's names; null when it has none Airlock matches). */
export function osvEcosystem(fields: Record<string, string>): string | undefined {
  const id = fields.ID;
  const ver = fields.VERSION_ID;
  if (!id || !ver) return undefined;
  switch (id) {
    case 'debian':
      return `Debian:${ver.split('.')[0]}`;
    case 'ubuntu':
      return /\bLTS\b/.test(fields.VERSION ?? '') ? `Ubuntu:${ver}:LTS` : `Ubuntu:${ver}`;
    case 'alpine': {
      const [maj, min] = ver.split('.');
      return min !== undefined ? `Alpine:v${maj}.${min}` : undefined;
    }
    case 'almalinux':
      return `AlmaLinux:${ver.split('.')[0]}`;
    case 'rocky':
      return `Rocky Linux:${ver.split('.')[0]}`;
    default:
      return undefined;
  }
}

const under = (path: string, dir: string) => dir === '' || path === dir || path.startsWith(`${dir}/`);

/**
 * Apply layers bottom to top, as a container runtime does: a layer's opaque directories hide
 * everything below them, its whiteouts delete a path (and what was under it), and its own files
 * replace the lower ones. What describes installed software is then read off the result.
 */
export function applyLayers(layers: LayerFacts[]): Inventory {
  const files = new Map<string, LayerFacts['files'][string]>();
  for (const layer of layers) {
    for (const dir of layer.opaque) for (const p of [...files.keys()]) if (p !== dir && under(p, dir)) files.delete(p);
    for (const wh of layer.whiteouts) for (const p of [...files.keys()]) if (under(p, wh)) files.delete(p);
    for (const [p, f] of Object.entries(layer.files)) files.set(p, f);
  }
  const inv: Inventory = { packages: [], unreadable: [], layers: layers.length };
  // etc/os-release wins over usr/lib/os-release (os-release(5)); a symlink between them is not a file fact.
  const osFile = files.get('etc/os-release') ?? files.get('usr/lib/os-release');
  if (osFile?.kind === 'os-release') {
    const f = osFile.fields;
    inv.os = { id: f.ID ?? 'linux' };
    if (f.VERSION_ID) inv.os.versionId = f.VERSION_ID;
    if (f.PRETTY_NAME) inv.os.prettyName = f.PRETTY_NAME;
    const eco = osvEcosystem(f);
    if (eco) inv.os.ecosystem = eco;
  }
  const seenPy = new Set<string>();
  for (const [path, f] of [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (f.kind === 'unreadable') inv.unreadable.push(f.why);
    if (f.kind === 'dpkg' || f.kind === 'apk' || f.kind === 'rpm') {
      const type: PackageType = f.kind === 'dpkg' ? 'deb' : f.kind;
      for (const p of f.packages) inv.packages.push({ ...p, type, location: path });
    }
    if (f.kind === 'python') {
      for (const p of f.packages) {
        const name = normalizeName(p.name);
        const location = path.replace(/\/(METADATA|PKG-INFO)$/, '');
        const key = `${location}\0${name}`;
        if (seenPy.has(key)) continue;
        seenPy.add(key);
        inv.packages.push({ name, version: p.version, type: 'pypi', location });
      }
    }
  }
  return inv;
}
