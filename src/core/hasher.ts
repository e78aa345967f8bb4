import { Worker } from 'node:worker_threads';
import { CHUNK_SIZE } from './chunks.js';

/**
 * SHA-256 of a spool file (and of each of its CHUNK_SIZE chunks, core/chunks.ts), computed on worker threads while the file is being written.
 *
 * Why: on this kind of machine undici delivers an upstream body at ~0.6-1 GiB/s and node:crypto
 * hashes at ~1.4 GiB/s, both on the main thread; together they capped a cold pull-through at
 * ~550 MiB/s before anything was written or served (bench/, and the note in src/core/fill.ts).
 * Reading the spool file back from the page cache on another thread costs far less than copying
 * every chunk into a message, so the main thread only says "written up to N".
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const { createHash } = require('node:crypto');
const jobs = new Map();
const buf = Buffer.allocUnsafe(1 << 20);
// The chunk digests (core/chunks.ts) of the same bytes, beside the whole digest.
function feed(job, part) {
  job.hash.update(part);
  let at = 0;
  while (at < part.length) {
    const n = Math.min(part.length - at, job.chunkSize - job.inChunk);
    job.chunk.update(n === part.length ? part : part.subarray(at, at + n));
    job.inChunk += n;
    at += n;
    if (job.inChunk === job.chunkSize) endChunk(job);
  }
}
function endChunk(job) {
  job.chunks.push(job.chunk.digest());
  job.chunk = createHash('sha256');
  job.inChunk = 0;
}
function catchUp(job, upTo) {
  while (job.pos < upTo) {
    const n = readSync(job.fd, buf, 0, Math.min(buf.length, upTo - job.pos), job.pos);
    if (n === 0) throw new Error('spool file shorter than written');
    feed(job, n === buf.length ? buf : buf.subarray(0, n));
    job.pos += n;
  }
}
parentPort.on('message', (m) => {
  try {
    if (m.type === 'sum') {
      // One chunk of a warm hit (core/hit-body.ts), in memory shared with the main thread: its
      // SHA-256 is written into the 32 bytes after the chunk's slot, where the main thread reads it.
      const digest = createHash('sha256').update(new Uint8Array(m.sab, 0, m.len)).digest();
      digest.copy(new Uint8Array(m.sab, m.at, 32));
      parentPort.postMessage({ id: m.id, sum: true });
      return;
    }
    if (m.type === 'start') {
      jobs.set(m.id, { fd: openSync(m.path, 'r'), pos: 0, hash: createHash('sha256'), chunkSize: m.chunkSize, chunk: createHash('sha256'), inChunk: 0, chunks: [] });
      return;
    }
    const job = jobs.get(m.id);
    if (!job) return;
    if (m.type === 'progress') catchUp(job, m.upTo);
    else if (m.type === 'finish') {
      catchUp(job, m.upTo);
      if (job.inChunk > 0) endChunk(job);
      jobs.delete(m.id);
      closeSync(job.fd);
      parentPort.postMessage({ id: m.id, digest: job.hash.digest('hex'), chunks: Buffer.concat(job.chunks) });
    }
    else if (m.type === 'abort') { jobs.delete(m.id); closeSync(job.fd); }
  } catch (e) {
    const job = jobs.get(m.id);
    if (job) { jobs.delete(m.id); try { closeSync(job.fd); } catch {} }
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e) });
  }
});
`;

export interface SpoolDigest {
  digest: string;
  chunks: Buffer;
}

export interface SpoolHash {
  /** Bytes [0, upTo) are in the spool file. */
  progress(upTo: number): void;
  /** Every byte is written; resolves with the hex digest and the chunk digests (32 bytes each, CHUNK_SIZE chunks). */
  finish(total: number): Promise<SpoolDigest>;
  abort(): void;
}

export class HashPool {
  private workers: Worker[] = [];
  private next = 0;
  private seq = 0;
  private readonly pending = new Map<number, { worker: Worker; resolve: (d: SpoolDigest) => void; reject: (e: Error) => void }>();

  constructor(private readonly size = 2) {}

  private worker(): Worker {
    if (this.workers.length < this.size) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.unref();
      w.on('message', (m: { id: number; digest?: string; chunks?: Uint8Array; error?: string; sum?: true }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.sum) p.resolve(null as unknown as SpoolDigest);
        else if (m.digest) p.resolve({ digest: m.digest, chunks: Buffer.from(m.chunks!.buffer, m.chunks!.byteOffset, m.chunks!.byteLength) });
        else p.reject(new Error(`hashing failed: ${m.error}`));
      });
      const lost = (e: Error) => {
        for (const [id, p] of this.pending) {
          if (p.worker !== w) continue;
          this.pending.delete(id);
          p.reject(e);
        }
        this.workers = this.workers.filter((x) => x !== w);
      };
      w.on('error', lost);
      w.on('exit', (code) => lost(new Error(`hash worker exited with code ${code}`)));
      this.workers.push(w);
      return w;
    }
    return this.workers[this.next++ % this.workers.length];
  }

  /** Start the workers now: a first cold pull should not wait ~10 ms for a thread to boot. */
  warm(): this {
    while (this.workers.length < this.size) this.worker();
    return this;
  }

  start(path: string): SpoolHash {
    const w = this.worker();
    const id = ++this.seq;
    w.postMessage({ type: 'start', id, path, chunkSize: CHUNK_SIZE });
    let done = false;
    return {
      progress: (upTo) => {
        if (!done) w.postMessage({ type: 'progress', id, upTo });
      },
      finish: (total) => {
        done = true;
        return new Promise<SpoolDigest>((resolve, reject) => {
          // A worker that died mid-job can never answer: fail the fill instead of hanging it.
          if (!this.workers.includes(w)) return reject(new Error('hashing failed: hash worker exited'));
          this.pending.set(id, { worker: w, resolve, reject });
          w.postMessage({ type: 'finish', id, upTo: total });
        });
      },
      abort: () => {
        if (done) return;
        done = true;
        w.postMessage({ type: 'abort', id });
      },
    };
  }

  /**
   * SHA-256 of `sab[0, len)` on a worker, written to `sab[at, at + 32)` (core/hit-body.ts): the
   * bytes are not copied, the main thread only reads the 32 bytes back. Chunks alternate between
   * the workers, so a warm hit hashes its next chunks while the current one is sent.
   */
  sum(sab: SharedArrayBuffer, len: number, at: number): Promise<void> {
    const w = this.worker();
    const id = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { worker: w, resolve: () => resolve(), reject });
      w.postMessage({ type: 'sum', id, sab, len, at });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}
