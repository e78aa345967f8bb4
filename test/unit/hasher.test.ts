import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HashPool } from '../../src/core/hasher.js';

describe('worker-thread spool hashing', () => {
  const pool = new HashPool(2).warm();
  afterAll(() => pool.close());
  const dir = mkdtempSync(join(tmpdir(), 'airlock-hash-'));

  it('hashes files as they grow, several at once', async () => {
    const jobs = [0, 1, 2].map(async (i) => {
      const path = join(dir, `f${i}`);
      writeFileSync(path, '');
      const h = pool.start(path);
      const all: Buffer[] = [];
      let n = 0;
      for (let k = 0; k < 5; k++) {
        const part = randomBytes(100_000 + i);
        appendFileSync(path, part);
        all.push(part);
        n += part.length;
        h.progress(n);
      }
      expect((await h.finish(n)).digest).toBe(createHash('sha256').update(Buffer.concat(all)).digest('hex'));
    });
    await Promise.all(jobs);
  });

  it('reports a file shorter than announced instead of hanging', async () => {
    const path = join(dir, 'short');
    writeFileSync(path, 'abc');
    const h = pool.start(path);
    await expect(h.finish(10)).rejects.toThrow(/shorter than written/);
  });

  it('fails a job whose worker is gone', async () => {
    const solo = new HashPool(1).warm();
    const path = join(dir, 'gone');
    writeFileSync(path, 'abc');
    const h = solo.start(path);
    await solo.close();
    await expect(h.finish(3)).rejects.toThrow(/hash worker exited/);
  });
});
