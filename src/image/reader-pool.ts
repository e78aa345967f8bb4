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
 * Who waits for a layer's reading: nobody ('background': a client's pull, read as it passes) or a
 * client ('urgent': the image gate, whose manifest answer waits for the verdict).
 */
export type ReadPriority = 'background' | 'urgent';

/** One reader process and the layers it is reading. */
class Reader {
  child: ChildProcess | undefined;
  readonly pending = new Map<number, Pending>();
  constructor(readonly nice: number) {}
}

/**
 * Reads layers as their fills write them, in child processes (reader-child.ts). Decompressing and
 * walking a GiB layer costs ~1.2 s of CPU on a quiet machine; in the server's own threads it slowed
 * unthrottled cold pulls on this 2-core machine by ~38%. Layers nobody waits for are read by a
 * child at the lowest CPU priority, which takes what the transfers leave (docs/performance.md,
 * "cold OCI layer, inventory"). Layers the image gate reads before answering a manifest are read by
 * a second child at normal priority: there a client waits for the verdict, and at nice 19 on a busy
 * machine the reading fell seconds behind the fill (issue 29; an unprivileged process cannot lower
 * the first child's niceness again, hence two). Where the child cannot run (its compiled file is
 * missing), layers are read in this process instead.
 */
export class LayerReaderPool {
  private readonly readers: Record<ReadPriority, Reader> = { background: new Reader(19), urgent: new Reader(0) };
  private seq = 0;
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

  private start(r: Reader): ChildProcess | undefined {
    if (r.child || this.unavailable) return r.child;
    const path = LayerReaderPool.childPath();
    if (!path) {
      this.unavailable = true;
      this.note('layer reader process unavailable (no compiled reader-child.js); reading layers in the server process', {});
      return undefined;
    }
    const child = fork(path, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [], serialization: 'advanced' });
    let nice = r.nice;
    if (nice !== 0) {
      try {
        setPriority(child.pid!, nice);
      } catch {
        nice = 0; // not permitted here: it runs at normal priority
      }
    }
    this.note('layer reader process started', { pid: child.pid, nice });
    child.on('message', (m: { type: string; id: number; facts?: LayerFacts; message?: string }) => {
      const p = r.pending.get(m.id);
      if (!p) return;
      if (m.type === 'opened') return p.opened();
      // Done or failed: a reader that failed before opening the spool holds nothing the fill must wait for.
      p.opened();
      r.pending.delete(m.id);
      this.idle(r);
      if (m.type === 'done') p.resolve(m.facts!);
      else p.reject(new Error(m.message));
    });
    child.on('exit', (code) => {
      if (r.child === child) r.child = undefined;
      for (const [id, p] of r.pending) {
        r.pending.delete(id);
        p.opened();
        p.reject(new Error(`the layer reader exited (${code})`));
      }
    });
    child.on('error', () => {});
    r.child = child;
    this.idle(r);
    return child;
  }

  /** A child keeps the process alive only while it has work (commands end when their work does). */
  private idle(r: Reader): void {
    const c = r.child as (ChildProcess & { channel?: { ref(): void; unref(): void } }) | undefined;
    if (!c) return;
    if (r.pending.size > 0) {
      c.ref();
      c.channel?.ref();
    } else {
      c.unref();
      c.channel?.unref();
    }
  }

  /** Start a reader process now: a first layer fill should not wait for it to boot (the urgent one starts with the gate's first read). */
  warm(priority: ReadPriority = 'background'): this {
    this.start(this.readers[priority]);
    return this;
  }

  /**
   * Read the layer a fill is writing. `opened` resolves once the reader holds the spool file open
   * (the fill waits for it before renaming the file into the store); `facts` when it is read.
   */
  read(
    spool: SpoolFollow,
    verified: Promise<boolean>,
    label: string,
    priority: ReadPriority = 'background',
  ): { opened: Promise<void>; facts: Promise<LayerFacts> } {
    const r = this.readers[priority];
    const child = this.start(r);
    if (!child?.connected) return this.inProcess(spool, verified, label);
    const id = ++this.seq;
    let opened!: () => void;
    const openedP = new Promise<void>((res) => (opened = res));
    const facts = new Promise<LayerFacts>((resolve, reject) => r.pending.set(id, { resolve, reject, opened }));
    this.idle(r);
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
    verified.then((ok) => {
      if (!ok && spool.written() < spool.size) send({ type: 'abort', id });
    });
    facts.then(off, off);
    return { opened: openedP, facts };
  }

  private inProcess(spool: SpoolFollow, verified: Promise<boolean>, label: string): { opened: Promise<void>; facts: Promise<LayerFacts> } {
    const follower = new FileFollower(spool.path, spool.size);
    const off = spool.onProgress(() => follower.progress(spool.written()));
    follower.progress(spool.written());
    verified.then((ok) => {
      if (!ok && spool.written() < spool.size) follower.abort(new Error('the fill failed'));
    });
    const body = follower.decompressed();
    const facts = body.then((b) => readLayer(b.body, label, b.gunzipped));
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
    for (const r of Object.values(this.readers)) {
      r.child?.kill();
      r.child = undefined;
    }
  }
}
