import type { BlobIndex } from '../storage/meta-store.js';

/**
 * Last-use times of cached blobs, written in batches (at most one write a second) rather than one
 * per hit: eviction picks the least recently used, so a second's precision is enough.
 */
export class UseTimes {
  private readonly used = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly meta: Pick<BlobIndex, 'touchBlobs'>,
    private readonly failed: (e: unknown) => void,
  ) {}

  note(sha256: string): void {
    this.used.add(sha256);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush().catch(this.failed), 1000);
      this.timer.unref();
    }
  }

  /** Write the uses noted since the last flush. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.used.size === 0) return;
    const batch = [...this.used];
    this.used.clear();
    await this.meta.touchBlobs(batch, Date.now());
  }
}
