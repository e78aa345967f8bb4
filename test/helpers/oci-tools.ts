import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

const run = promisify(execFile);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Whether a command is on PATH (e2e tests say clearly when a tool is missing instead of failing obscurely). */
export function haveTool(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A real distribution registry (Debian's docker-registry, distribution 2.8) on loopback. */
export class RealRegistry {
  proc?: ChildProcess;
  port = 0;
  readonly dir = mkdtempSync(join(tmpdir(), 'airlock-registry-'));
  log = '';

  get storage(): string {
    return join(this.dir, 'storage');
  }

  async start(): Promise<this> {
    this.port = await freePort();
    const cfg = join(this.dir, 'config.yml');
    writeFileSync(
      cfg,
      `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${this.storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${this.port}\n`,
    );
    this.proc = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d) => (this.log += d));
    this.proc.stderr!.on('data', (d) => (this.log += d));
    for (let i = 0; i < 100; i++) {
      try {
        const res = await fetch(`http://127.0.0.1:${this.port}/v2/`);
        if (res.status === 200) return this;
      } catch {
        /* not up yet */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`docker-registry did not start: ${this.log}`);
  }

  /** The file distribution keeps a blob's bytes in (for tampering with it behind the registry's back). */
  blobPath(digest: string): string {
    const hex = digest.slice('sha256:'.length);
    return join(this.storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  }

  async stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const p = this.proc;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGTERM');
    });
  }
}

export interface BuiltImage {
  /** OCI layout directory holding the image under `ref`. */
  layout: string;
  ref: string;
  /** Digest of what the layout's ref points at (a manifest, or an index for multi-arch). */
  digest: string;
  /** Blob digests (configs and layers) of every platform. */
  blobs: string[];
  /** Per-platform manifest digests (one for single-arch). */
  manifests: string[];
}

function writeBlob(layout: string, bytes: Buffer): { digest: string; size: number } {
  const hex = sha(bytes);
  writeFileSync(join(layout, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** One layer as a registry holds it: the compressed bytes, the digest of the uncompressed tar, its media type. */
export interface LayerBlob {
  bytes: Buffer;
  diffId: string;
  mediaType: string;
}

/**
 * Build an image as an OCI layout, one manifest per platform with the given layers (an index when
 * there are several platforms): what `skopeo copy oci:DIR:REF docker://...` pushes to the real registry.
 */
/** `extra`: more fields of each config blob (e.g. `created`). */
export function buildLayeredImage(platforms: { arch: string; layers: LayerBlob[] }[], ref = 'v1', extra: Record<string, unknown> = {}): BuiltImage {
  const layout = mkdtempSync(join(tmpdir(), 'airlock-layout-'));
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const blobs: string[] = [];
  const manifests: { digest: string; size: number; arch: string }[] = [];
  for (const { arch, layers } of platforms) {
    const written = layers.map((l) => ({ ...writeBlob(layout, l.bytes), mediaType: l.mediaType }));
    const config = writeBlob(
      layout,
      Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, ...extra })),
    );
    blobs.push(config.digest, ...written.map((w) => w.digest));
    const manifest = writeBlob(
      layout,
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: written,
        }),
      ),
    );
    manifests.push({ ...manifest, arch });
  }
  let top: { digest: string; size: number; mediaType: string };
  if (platforms.length === 1) {
    top = { ...manifests[0], mediaType: 'application/vnd.oci.image.manifest.v1+json' };
  } else {
    const index = writeBlob(
      layout,
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: manifests.map((m) => ({
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: m.digest,
            size: m.size,
            platform: { architecture: m.arch, os: 'linux' },
          })),
        }),
      ),
    );
    top = { ...index, mediaType: 'application/vnd.oci.image.index.v1+json' };
  }
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: top.mediaType, digest: top.digest, size: top.size, annotations: { 'org.opencontainers.image.ref.name': ref } }],
    }),
  );
  return { layout, ref, digest: top.digest, blobs, manifests: manifests.map((m) => m.digest) };
}

/**
 * Build a small image as an OCI layout from a generated rootfs (tar via the system tar, gzip via
 * zlib): what `skopeo copy oci:DIR:REF docker://...` pushes to the real registry.
 */
export async function buildImage(archs: string[] = ['amd64'], ref = 'v1', payloadBytes = 64 * 1024, extra: Record<string, unknown> = {}): Promise<BuiltImage> {
  const platforms = [];
  for (const arch of archs) {
    const root = mkdtempSync(join(tmpdir(), 'airlock-rootfs-'));
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc', 'os-release'), `NAME=airlock-test\nARCH=${arch}\n`);
    writeFileSync(join(root, 'payload.bin'), randomBytes(payloadBytes));
    const { stdout } = await run('tar', ['-C', root, '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-cf', '-', '.'], {
      encoding: 'buffer',
      maxBuffer: 1 << 30,
    });
    const tar = stdout as Buffer;
    platforms.push({ arch, layers: [{ bytes: gzipSync(tar), diffId: `sha256:${sha(tar)}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }] });
  }
  return buildLayeredImage(platforms, ref, extra);
}

export interface SkopeoResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the real skopeo (no signature policy file needed; plain HTTP on loopback). */
export function skopeo(args: string[], timeoutMs = 120_000): Promise<SkopeoResult> {
  return new Promise((resolve) => {
    const p = spawn('skopeo', ['--insecure-policy', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, REGISTRY_AUTH_FILE: '/nonexistent-airlock-test-auth.json' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Push a built layout to the real registry as repo:tag (every platform). */
export async function pushImage(img: BuiltImage, registryPort: number, repo: string, tag: string): Promise<void> {
  const r = await skopeo([
    'copy',
    '--all',
    '--preserve-digests',
    '--dest-tls-verify=false',
    `oci:${img.layout}:${img.ref}`,
    `docker://127.0.0.1:${registryPort}/${repo}:${tag}`,
  ]);
  if (r.code !== 0) throw new Error(`skopeo push failed: ${r.stderr}`);
}
