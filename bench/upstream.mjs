// The benchmark's loopback upstream: a PyPI-shaped index whose files are generated on the fly
// (deterministic bytes, no disk), optionally throttled, with request counters.
// Started by bench/run.mjs as its own process so it does not share an event loop with Airlock
// or the load generator. Prints one JSON line {port, files:{name:{sha256,size}}} when ready.
import { createHash } from 'node:crypto';
import { openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

const spec = JSON.parse(process.argv[2]); // { files: [{ name, size, seed }], bigPageFiles, tls?: { key, cert } (PEM file paths: HTTPS) }
const createServer = spec.tls
  ? (handler) => createHttpsServer({ key: readFileSync(spec.tls.key), cert: readFileSync(spec.tls.cert) }, handler)
  : createHttpServer;
const BLOCK = 1 << 20;

/** Chunk i of file `seed`: a fixed pseudo-random MiB, stamped with (seed, i) so files and positions differ. */
const base = Buffer.alloc(BLOCK);
{
  let x = 0x9e3779b9;
  for (let i = 0; i < BLOCK; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    base.writeUInt32LE(x, i);
  }
}
function chunk(seed, i, len) {
  const b = Buffer.allocUnsafe(len);
  base.copy(b, 0, 0, len);
  if (len >= 16) {
    b.writeUInt32LE(seed, 0);
    b.writeUInt32LE(i, 4);
  }
  return b;
}

/** Chunk i of a file on disk (a real checkpoint written by torch), read as it is served. */
function diskChunk(f, i, len) {
  const b = Buffer.allocUnsafe(len);
  readSync(f.fd, b, 0, len, i * BLOCK);
  return b;
}

const files = new Map();
for (const f of spec.files) {
  const h = createHash('sha256');
  const disk = f.path ? { fd: openSync(f.path, 'r'), size: statSync(f.path).size } : null;
  const size = disk ? disk.size : f.size;
  const read = disk ? (i, len) => diskChunk(disk, i, len) : (i, len) => chunk(f.seed, i, len);
  for (let i = 0, off = 0; off < size; i++, off += BLOCK) h.update(read(i, Math.min(BLOCK, size - off)));
  files.set(f.name, { ...f, size, read, sha256: h.digest('hex') });
}

// A registry view of the same generated files: image bench/img whose config is spec.oci.config
// and whose layers are spec.oci.layers (anonymous, no redirects: the pull API at its simplest).
const bySha = new Map([...files.values()].map((f) => [`sha256:${f.sha256}`, f]));
/** An image manifest over generated files: its bytes and digest. */
function imageManifest(config, layers) {
  const d = (name) => ({ digest: `sha256:${files.get(name).sha256}`, size: files.get(name).size });
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...d(config) },
      layers: layers.map(([name, mediaType]) => ({ mediaType, ...d(name) })),
    }),
  );
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}
const img = spec.oci
  ? imageManifest(
      spec.oci.config,
      spec.oci.layers.map((n) => [n, 'application/vnd.oci.image.layer.v1.tar']),
    )
  : null;
const ociManifest = img?.bytes ?? null;
const ociDigest = img?.digest ?? null;
// A second image, bench/layered: one real gzip'd filesystem layer (bench/make-layer.sh), for the
// image-inventory rows.
const layered = spec.layered ? imageManifest(spec.layered.config, [[spec.layered.layer, 'application/vnd.oci.image.layer.v1.tar+gzip']]) : null;
const layeredManifest = layered?.bytes ?? null;
const layeredDigest = layered?.digest ?? null;

// A Hub view: model bench/model at one commit whose file weights.bin is spec.hf.file stored in
// LFS (its sha256 as lfs.oid); resolve answers with the bytes directly. Named .bin: the generated
// bytes are no safetensors file, and the scanner refuses a misnamed one (it still inspects this
// one: a trial pickle decode, then the verdict before the tail). spec.hf.checkpoint, when given,
// is a real torch.save checkpoint served as pytorch_model.bin; spec.hf.shard a dataset tar.
const HF_COMMIT = 'c0ffee'.padEnd(40, '0');
const hfFile = spec.hf ? files.get(spec.hf.file) : null;
const hfFiles = new Map(hfFile ? [['weights.bin', hfFile]] : []);
if (spec.hf?.checkpoint) hfFiles.set('pytorch_model.bin', files.get(spec.hf.checkpoint));
if (spec.hf?.shard) hfFiles.set(spec.hf.shard, files.get(spec.hf.shard));

let rate = 0; // bytes/s, 0 = unthrottled
const counts = new Map();

function pageFor(project) {
  if (project === 'bigpage') {
    const out = [];
    for (let i = 0; i < spec.bigPageFiles; i++) {
      const v = `${Math.floor(i / 20)}.${i % 20}.0`;
      out.push({
        filename: `bigpage-${v}-cp311-cp311-manylinux_2_17_x86_64.whl`,
        url: `/files/bigpage-${v}-cp311-cp311-manylinux_2_17_x86_64.whl`,
        hashes: { sha256: createHash('sha256').update(String(i)).digest('hex') },
        'requires-python': '>=3.9',
        size: 1000 + i,
        'upload-time': '2024-01-01T00:00:00.000000Z',
        yanked: false,
      });
    }
    return out;
  }
  const f = [...files.values()].find((x) => x.project === project);
  if (!f) return null;
  return [
    { filename: f.name, url: `/files/${f.name}`, hashes: { sha256: f.sha256 }, size: f.size, yanked: false, 'upload-time': '2024-01-01T00:00:00.000000Z' },
  ];
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  counts.set(url.pathname, (counts.get(url.pathname) ?? 0) + 1);
  if (url.pathname === '/-/rate') {
    rate = Number(url.searchParams.get('bps') ?? 0);
    return res.end('ok');
  }
  if (url.pathname === '/-/counts') return res.end(JSON.stringify(Object.fromEntries(counts)));
  if (url.pathname === '/-/reset') {
    counts.clear();
    return res.end('ok');
  }
  const page = /^\/simple\/([^/]+)\/$/.exec(url.pathname);
  if (page) {
    const list = pageFor(page[1]);
    if (!list) return res.writeHead(404).end();
    return res
      .writeHead(200, { 'content-type': 'application/vnd.pypi.simple.v1+json' })
      .end(JSON.stringify({ meta: { 'api-version': '1.1' }, name: page[1], files: list }));
  }
  if (hfFile && url.pathname === `/api/models/bench/model/revision/${HF_COMMIT}`) {
    return res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ id: 'bench/model', sha: HF_COMMIT, siblings: [...hfFiles.keys()].map((p) => ({ rfilename: p })) }));
  }
  if (hfFile && url.pathname === `/api/models/bench/model/tree/${HF_COMMIT}`) {
    const entries = [...hfFiles].map(([path, f]) => ({
      type: 'file',
      path,
      size: f.size,
      oid: '0'.repeat(40),
      lfs: { oid: f.sha256, size: f.size, pointerSize: 134 },
    }));
    return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(entries));
  }
  const hfPrefix = `/bench/model/resolve/${HF_COMMIT}/`;
  const hfm = url.pathname.startsWith(hfPrefix) && hfFiles.get(url.pathname.slice(hfPrefix.length));
  if (url.pathname === '/v2/') return res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  if (ociManifest && url.pathname === `/v2/bench/img/manifests/${ociDigest}`) {
    return res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': ociDigest }).end(ociManifest);
  }
  if (layeredManifest && url.pathname === `/v2/bench/layered/manifests/${layeredDigest}`) {
    return res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': layeredDigest }).end(layeredManifest);
  }
  const bm = /^\/v2\/bench\/(?:img|layered)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
  const fm = /^\/files\/(.+)$/.exec(url.pathname);
  const f = hfm || (bm ? bySha.get(bm[1]) : fm && files.get(fm[1]));
  if (!f) return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(f.size) });
  if (req.method === 'HEAD') return res.end();
  let i = 0;
  let off = 0;
  const started = performance.now();
  const myRate = rate;
  let closed = false;
  res.on('close', () => (closed = true));
  const pump = () => {
    while (!closed && off < f.size) {
      if (myRate) {
        const due = started + (off / myRate) * 1000;
        const wait = due - performance.now();
        if (wait > 1) return void setTimeout(pump, wait);
      }
      const len = Math.min(BLOCK, f.size - off);
      const ok = res.write(f.read(i++, len));
      off += len;
      if (!ok) return void res.once('drain', pump);
    }
    if (!closed) res.end();
  };
  pump();
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const out = {};
  for (const [name, f] of files) out[name] = { sha256: f.sha256, size: f.size, project: f.project };
  process.stdout.write(JSON.stringify({ port: server.address().port, files: out, ociDigest, layeredDigest, hfCommit: HF_COMMIT }) + '\n');
});
