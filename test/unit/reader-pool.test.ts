import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SpoolFollow } from '../../src/core/fill.js';
import { LayerReaderPool } from '../../src/image/reader-pool.js';
import { debianBase, layerOf } from '../helpers/layers.js';

/**
 * Layers are read in two reader processes: the image gate's (a client waits for its manifest) at
 * normal CPU priority, a client's pull's (nobody waits) at the lowest. Issue 29: at nice 19 on a
 * busy machine the gate's reading fell seconds behind its fill, with the client waiting.
 */
const dir = mkdtempSync(join(tmpdir(), 'airlock-readers-'));
const pools: LayerReaderPool[] = [];
afterAll(() => {
  pools.forEach((p) => p.close());
  rmSync(dir, { recursive: true, force: true });
});

/** A spool file written whole: the follower reads it to its end. */
function spoolOf(bytes: Buffer, name: string): SpoolFollow {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, size: bytes.length, written: () => bytes.length, onProgress: () => () => {} };
}

describe('layer reader processes', () => {
  it("reads the gate's layers at normal priority and the others' at the lowest, with the same facts", async () => {
    const started: { pid: number; nice: number }[] = [];
    const pool = new LayerReaderPool((msg, f) => {
      if (msg === 'layer reader process started') started.push(f as { pid: number; nice: number });
    });
    pools.push(pool);
    const layer = layerOf(debianBase());
    const urgent = pool.read(spoolOf(layer, 'a'), Promise.resolve(true), 'a', 'urgent');
    const background = pool.read(spoolOf(layer, 'b'), Promise.resolve(true), 'b');
    const [u, b] = await Promise.all([urgent.facts, background.facts]);
    expect(u).toEqual(b);
    expect(Object.values(u.files).some((f) => f.kind === 'dpkg')).toBe(true);
    // Two processes: one at this process's priority, one lowered to 19 (always permitted).
    expect(started).toHaveLength(2);
    const [gate, bg] = [started[0], started[1]];
    expect(gate.nice).toBe(0);
    expect(getPriority(gate.pid)).toBe(getPriority());
    expect(bg.nice).toBe(19);
    expect(getPriority(bg.pid)).toBe(19);
  });

  it('a layer the reader cannot read fails (never empty facts), and the fill it follows is not kept waiting', async () => {
    const pool = new LayerReaderPool();
    pools.push(pool);
    const layer = layerOf(debianBase());
    for (const priority of ['urgent', 'background'] as const) {
      // A corrupt gzip layer: refused, not read as a layer without packages.
      const bad = Buffer.from(layer);
      bad.fill(0x55, 2000, 4000);
      const corrupt = pool.read(spoolOf(bad, `bad-${priority}`), Promise.resolve(true), 'bad', priority);
      await expect(corrupt.facts).rejects.toThrow(/bad: the layer could not be read/);
      await corrupt.opened;
      // A spool file the reader cannot open: refused, and the fill waiting to rename it is told at once.
      const gone = pool.read(
        { path: join(dir, `missing-${priority}`), size: 100, written: () => 100, onProgress: () => () => {} },
        Promise.resolve(true),
        'gone',
        priority,
      );
      await expect(gone.facts).rejects.toThrow();
      const opened = await Promise.race([gone.opened.then(() => 'opened'), new Promise((r) => setTimeout(() => r('still waiting'), 2000))]);
      expect(opened).toBe('opened');
    }
  });
});
