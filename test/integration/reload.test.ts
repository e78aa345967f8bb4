import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { startServer } from '../../src/server.js';

/** SIGHUP reloads that tell the truth: a file that would refuse everything is not taken, and what a reload cannot apply is said. */
describe('policy reload', () => {
  it('keeps the previous policy over an empty file, warns on a policy that allows nothing, and names settings it cannot apply', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-reload-'));
    const cfg = join(dir, 'airlock.yaml');
    const pol = join(dir, 'policy.yaml');
    const base = `listen: 127.0.0.1:0\ndata_dir: ${join(dir, 'data')}\nauth:\n  admin: token\npolicy_file: policy.yaml\n`;
    writeFileSync(cfg, base);
    writeFileSync(pol, 'pypi:\n  allow:\n    - { name: requests }\n');
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: 'info' },
      new Writable({
        write(c, _e, cb) {
          lines.push(JSON.parse(String(c)));
          cb();
        },
      }),
    );
    const { airlock, stop } = await startServer(loadConfig(cfg), { log, defaultMetrics: false });
    try {
      // A truncated write: refused, the old policy stays.
      writeFileSync(pol, '# being edited\n');
      expect(airlock.reloadPolicy()).toBe(false);
      expect(lines.at(-1)).toMatchObject({ level: 50, msg: 'policy reload failed; keeping the previous policy' });
      expect(String(lines.at(-1)!.err)).toMatch(/the policy file is empty \(or only comments, or a null document\)/);
      // A document that is only its markers, or null: no value either, refused alike (it was taken as deny-all).
      for (const text of ['---\n', '---\n...\n', 'null\n']) {
        writeFileSync(pol, text);
        expect(airlock.reloadPolicy()).toBe(false);
        expect(String(lines.at(-1)!.err)).toMatch(/the policy file is empty/);
      }

      // Nothing allowed, on purpose: taken, with a warning; and a setting outside the policy changed: said, not applied.
      writeFileSync(pol, '{}\n');
      writeFileSync(cfg, base.replace('admin: token', 'admin: open'));
      expect(airlock.reloadPolicy()).toBe(true);
      const warns = lines.filter((l) => l.level === 40).map((l) => l.msg);
      expect(warns).toContain('the reloaded policy allows nothing: every pull is refused');
      expect(lines.find((l) => l.msg === 'configuration changes outside the policy need a restart; they were not applied')).toMatchObject({
        changed: ['auth.admin'],
      });
    } finally {
      await stop();
    }
  });
});
