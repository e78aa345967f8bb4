import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { SpoolFollow } from '../core/fill.js';
import type { LayerFacts } from './facts.js';
import { FileFollower } from './follow.js';
import { readLayer } from './layer.js';

interface Pending {
  resolve: (f: LayerFacts) => void;
  reject: (e: Error) => void;
  opened: () => void;
}

/**
 * Reads layers as their fills write them, in one child process at the lowest CPU priority
 * (reader-child.ts). Decompressing and walking a GiB layer costs ~1.2 s of CPU; in the server's
 * own threads it slowed unthrottled cold pulls on this 2-core machine by ~38%, at idle priority
 * it takes what the transfers leave (docs/performance.md, "cold OCI layer, inventory"). Where the
 * child cannot run (its compiled file is missing), layers are read in this process instead.
 */
export class LayerReaderPool {
  private child: ChildProcess | undefined;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private unavailable = false;

  constructor(private readonly note: (msg: string, fields: Record<string, unknown>) => void = () => {}) {}

  /** The compiled child script: beside this module, or in dist/ when running from the TypeScript sources (tests). */
  private static childPath(): string | null {
    const here = fileURLToPath(import.meta.url);
    const js = here.endsWith('.ts')
      ? here.replace(/[\\/]src[\\/]image[\\/]reader-pool\.ts$/, '/dist/image/reader-child.js')
      : here.replace(/reader-pool\.js$/, 'reader-child.js');
    return existsSync(js) ? js : null;
  }

  private start(): ChildProcess | undefined {
    if (this.child || this.unavailable) return this.child;
    const path = LayerReaderPool.childPath();
    if (!path) {
      this.unavailable = true;
      this.note('layer reader process unavailable (no compiled reader-child.js); reading layers in the server process', {});
      return undefined;
    }
    const child = fork(path, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [], serialization: 'advanced' });
    let nice = 19;
    try {
      setPriority(child.pid!, 19);
    } catch {
      nice = 0; // not permitted here: it runs at normal priority
    }
    this.note('layer reader process started', { pid: child.pid, nice });
    child.on('message', (m: { type: string; id: number; facts?: LayerFacts; message?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.type === 'opened') return p.opened();
      this.pending.delete(m.id);
      this.idle();
      if (m.type === 'done') p.resolve(m.facts!);
      else p.reject(new Error(m.message));
    });
    child.on('exit', (code) => {
      if (this.child === child) this.child = undefined;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.opened();
        p.reject(new Error(`the layer reader exited (${code})`));
      }
    });
    child.on('error', () => {});
    this.child = child;
    this.idle();
    return child;
  }

  /** The child keeps the process alive only while it has work (commands end when their work does). */
  private idle(): void {
    const c = this.child as (ChildProcess & { channel?: { ref(): void; unref(): void } }) | undefined;
    if (!c) return;
    if (this.pending.size > 0) {
      c.ref();
      c.channel?.ref();
    } else {
      c.unref();
      c.channel?.unref();
    }
  }

  /** Start the reader process now: a first layer fill should not wait for it to boot. */
  warm(): this {
    this.start();
    return this;
  }

  /**
   * Read the layer a fill is writing. `opened` resolves once the reader holds the spool file open
   * (the fill waits for it before renaming the file into the store); `facts` when it is read.
   */
  read(spool: SpoolFollow, committed: Promise<boolean>, label: string): { opened: Promise<void>; facts: Promise<LayerFacts> } {
    const child = this.start();
    if (!child?.connected) return this.inProcess(spool, committed, label);
    const id = ++this.seq;
    let opened!: () => void;
    const openedP = new Promise<void>((r) => (opened = r));
    const facts = new Promise<LayerFacts>((resolve, reject) => this.pending.set(id, { resolve, reject, opened }));
    this.idle();
    const send = (m: object) => {
      if (child.connected) child.send(m);
    };
    send({ type: 'start', id, path: spool.path, size: spool.size, label });
    let sent = 0;
    const progress = () => {
      const w = spool.written();
      if (w > sent) send({ type: 'progress', id, upTo: (sent = w) });
    };
    const off = spool.onProgress(progress);
    progress();
    committed.then((ok) => {
      if (!ok && spool.written() < spool.size) send({ type: 'abort', id });
    });
    facts.then(off, off);
    return { opened: openedP, facts };
  }

  private inProcess(spool: SpoolFollow, committed: Promise<boolean>, label: string): { opened: Promise<void>; facts: Promise<LayerFacts> } {
    const follower = new FileFollower(spool.path, spool.size);
    const off = spool.onProgress(() => follower.progress(spool.written()));
    follower.progress(spool.written());
    committed.then((ok) => {
      if (!ok && spool.written() < spool.size) follower.abort(new Error('the fill failed'));
    });
    const body = follower.stream();
    const facts = body.then((b) => readLayer(b, label));
    facts.then(off, off);
    return {
      opened: body.then(
        () => undefined,
        () => undefined,
      ),
      facts,
    };
  }

  close(): void {
    this.child?.kill();
    this.child = undefined;
  }
}
