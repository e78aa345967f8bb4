import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compressionOf, decompressor, peek, readsAsTar } from '../scan/archive.js';
import { FACTS_VERSION, parseApkInstalled, parseDpkgStatus, parseOsRelease, parsePythonMetadata, type FileFact, type LayerFacts } from './facts.js';
import { RpmHeaderError, readRpmSqlite } from './rpmdb.js';
import { streamBlocks, walkTarBlocks } from '../scan/tar.js';

/** Entries Go's archive/tar reads no data for. */
const HEADER_ONLY = new Set(['link', 'symlink', 'character-device', 'block-device', 'directory', 'fifo']);

/**
 * Read one image layer as it streams (gzip, zstd or plain tar) and keep only what describes
 * installed software: os-release, the dpkg/apk/rpm databases and Python distribution metadata,
 * plus the layer's whiteouts. Everything else passes through unread; memory stays bounded by the
 * decompressor's window and the size caps below (an rpm database goes to a temporary file).
 */
const CAP = {
  osRelease: 64 << 10,
  dpkgStatus: 128 << 20,
  statusD: 4 << 20,
  apk: 128 << 20,
  rpmdb: 1 << 30,
  pythonMeta: 1 << 20,
};

type Want = 'os-release' | 'dpkg' | 'dpkg-d' | 'apk' | 'rpm-sqlite' | 'rpm-wal' | 'rpm-other' | 'python' | 'python-egg';

/** Which files of a layer describe installed software (paths without "./"). */
export function classify(path: string): Want | null {
  if (path === 'etc/os-release' || path === 'usr/lib/os-release') return 'os-release';
  if (path === 'var/lib/dpkg/status') return 'dpkg';
  if (path.startsWith('var/lib/dpkg/status.d/') && !path.endsWith('.md5sums') && path.split('/').length === 5) return 'dpkg-d';
  if (path === 'lib/apk/db/installed') return 'apk';
  if (path === 'var/lib/rpm/rpmdb.sqlite' || path === 'usr/lib/sysimage/rpm/rpmdb.sqlite') return 'rpm-sqlite';
  if (path === 'var/lib/rpm/rpmdb.sqlite-wal' || path === 'usr/lib/sysimage/rpm/rpmdb.sqlite-wal') return 'rpm-wal';
  if (/^(var\/lib\/rpm|usr\/lib\/sysimage\/rpm)\/(Packages|Packages\.db)$/.test(path)) return 'rpm-other';
  if (/\.dist-info\/METADATA$/.test(path) || /\.egg-info\/PKG-INFO$/.test(path)) return 'python';
  if (/\.egg-info$/.test(path)) return 'python-egg';
  return null;
}

/** A path as layers write it ("./usr/lib", "/usr/lib/") in the one form facts use. */
export function normalizePath(p: string): string {
  return p
    .replace(/^(\.\/)+/, '')
    .replace(/^\/+/, '')
    .replace(/\/+$/, '');
}

async function readCapped(body: Readable, cap: number): Promise<Buffer | null> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > cap) {
      body.resume();
      return null;
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

/**
 * The layer's facts. Rejects only when the stream itself fails (a corrupt compressed stream or tar).
 * `gunzipped`: `body` is a gzip'd blob's content, decompressed by the caller (follow.ts).
 */
export async function readLayer(body: Readable, label: string, gunzipped = false): Promise<LayerFacts> {
  try {
    return await walkLayer(body, label, gunzipped);
  } catch (e) {
    throw new Error(`${label}: the layer could not be read (${(e as Error).message})`);
  } finally {
    // Whatever is left unread (a blob that is no layer, the padding after a tar's end) is let go.
    if (!body.readableEnded) body.destroy();
  }
}

async function walkLayer(body: Readable, label: string, gunzipped: boolean): Promise<LayerFacts> {
  const facts: LayerFacts = { v: FACTS_VERSION, tar: false, files: {}, whiteouts: [], opaque: [] };
  const head = gunzipped ? null : await peek(body, 512);
  let stream = head?.stream ?? body;
  const kind = head ? compressionOf(head.bytes) : 'gzip';
  if (kind === 'gzip' || kind === 'zstd') {
    if (head) {
      const d = decompressor(kind);
      stream.on('error', (e) => d.destroy(e));
      stream = stream.pipe(d);
    }
    const inner = await peek(stream, 512);
    stream = inner.stream;
    if (!readsAsTar(inner.bytes) && inner.bytes.length > 0) {
      stream.destroy();
      return facts;
    }
  } else if (!readsAsTar(head!.bytes)) {
    // A config blob, an attestation, an artifact: not a filesystem layer (a tar is what Go's
    // archive/tar reads as one: any first block whose checksum holds, ustar magic or not).
    stream.destroy();
    return facts;
  }
  facts.tar = true;
  let tmp: string | undefined;
  const rpm: { db?: string; wal?: string; path?: string } = {};
  try {
    // The scanner's tar walk (scan/tar.ts): it refuses what readers could read otherwise (number
    // fields, PAX records, sparse entries), where tar-stream read on and hid entries Go's
    // archive/tar (containerd's, Docker's) extracts.
    await walkTarBlocks(streamBlocks(stream), async (h, body) => {
      // Go reads no data for these, whatever the size says: the next header follows at once.
      if (HEADER_ONLY.has(h.type ?? '') && h.size > 0) throw new Error(`${h.name} is a ${h.type} carrying ${h.size} bytes of data`);
      if (h.type === null) throw new Error(`${h.name} is an entry of an unknown type`);
      const path = normalizePath(h.name);
      const slash = path.lastIndexOf('/');
      const base = path.slice(slash + 1);
      const dir = slash >= 0 ? path.slice(0, slash) : '';
      if (base.startsWith('.wh.')) {
        if (base === '.wh..wh..opq') facts.opaque.push(dir);
        else facts.whiteouts.push(dir ? `${dir}/${base.slice(4)}` : base.slice(4));
        return;
      }
      const want = h.type === 'file' || h.type === 'contiguous-file' ? classify(path) : null;
      if (!want) return;
      const fact = await readFact(want, path, body.stream(), async () => (tmp ??= await mkdtemp(join(tmpdir(), 'airlock-layer-'))), rpm);
      if (fact) facts.files[path] = fact;
    });
    if (rpm.db && rpm.path) {
      try {
        facts.files[rpm.path] = { kind: 'rpm', packages: readRpmSqlite(rpm.db) };
      } catch (e) {
        const why = e instanceof RpmHeaderError ? e.message : `not a readable SQLite database (${(e as Error).message})`;
        facts.files[rpm.path] = { kind: 'unreadable', why: `${label}: ${rpm.path}: ${why}` };
      }
    }
  } catch (e) {
    stream.destroy();
    throw e;
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
  return facts;
}

async function readFact(
  want: Want,
  path: string,
  body: Readable,
  tempDir: () => Promise<string>,
  rpm: { db?: string; wal?: string; path?: string },
): Promise<FileFact | null> {
  const text = async (cap: number) => (await readCapped(body, cap))?.toString('utf8') ?? null;
  const tooBig = (cap: number): FileFact => ({ kind: 'unreadable', why: `${path} is larger than ${cap} bytes` });
  switch (want) {
    case 'os-release': {
      const t = await text(CAP.osRelease);
      return t === null ? tooBig(CAP.osRelease) : { kind: 'os-release', fields: parseOsRelease(t) };
    }
    case 'dpkg':
    case 'dpkg-d': {
      const cap = want === 'dpkg' ? CAP.dpkgStatus : CAP.statusD;
      const t = await text(cap);
      return t === null ? tooBig(cap) : { kind: 'dpkg', packages: parseDpkgStatus(t) };
    }
    case 'apk': {
      const t = await text(CAP.apk);
      return t === null ? tooBig(CAP.apk) : { kind: 'apk', packages: parseApkInstalled(t) };
    }
    case 'python':
    case 'python-egg': {
      const t = await text(CAP.pythonMeta);
      const pkg = t === null ? null : parsePythonMetadata(t);
      return pkg ? { kind: 'python', packages: [pkg] } : null;
    }
    case 'rpm-sqlite':
    case 'rpm-wal': {
      const file = join(await tempDir(), want === 'rpm-wal' ? 'rpmdb.sqlite-wal' : 'rpmdb.sqlite');
      let n = 0;
      let over = false;
      await pipeline(
        body,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            n += c.length;
            if (n > CAP.rpmdb) over = true;
            if (!over) yield c;
          }
        },
        createWriteStream(file),
      );
      if (over) return tooBig(CAP.rpmdb);
      if (want === 'rpm-sqlite') {
        rpm.db = file;
        rpm.path = path;
      }
      return null;
    }
    case 'rpm-other':
      return {
        kind: 'unreadable',
        why: `${path} is an rpm database in the BerkeleyDB or ndb format (rpm < 4.16, RHEL/UBI 8 and older), which Airlock does not read yet`,
      };
  }
}
